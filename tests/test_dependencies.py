"""Every package the code imports is declared in pyproject.toml (a transitive dependency that happens to be
installed today may not be tomorrow), and every declared bound says why."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

import pytest

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OWN = {"attn_models", "flows", "tasks", "tests", "benchmarks"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalize(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]) for requirement in requirements}


def imported_packages(folders: list[str]) -> dict[str, set[str]]:
    """Top-level names of third-party modules imported anywhere in the folders' files -> the files importing them."""
    found = {}
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names} - OWN - set(sys.stdlib_module_names):
                    found.setdefault(top, set()).add(path.relative_to(REPO).as_posix())
    return found


@pytest.mark.parametrize(
    "folders, allowed",
    [
        (["attn_models", "flows", "tasks", "benchmarks"], declared(PROJECT["dependencies"])),
        (["tests"], declared(PROJECT["dependencies"]) | declared(PROJECT["optional-dependencies"]["dev"])),
    ],
    ids=["code", "tests"],
)
def test_every_import_is_declared(folders, allowed):
    distributions = packages_distributions()
    undeclared = {
        name: sorted(files)
        for name, files in imported_packages(folders).items()
        if not {normalize(d) for d in distributions.get(name, [name])} & allowed
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def explained(lines: list[str], number: int) -> bool:
    """The requirement on line `number` has a comment on its line, or it is one of a group of requirement lines
    (none of them commented) right below a comment block."""
    if "#" in lines[number]:
        return True
    above = number - 1
    while above >= 0 and lines[above].strip().startswith('"') and "#" not in lines[above]:
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def test_every_bound_has_its_reason():
    """Each pin (==) and upper bound (<) in the dependencies says why, on its line or in the comment above its group."""
    text = (REPO / "pyproject.toml").read_text()
    lines = text[text.index("dependencies = [") : text.index("[project.optional-dependencies]")].splitlines()
    unexplained = [
        line.strip() for n, line in enumerate(lines) if ("==" in line or "<" in line) and not explained(lines, n)
    ]
    assert not unexplained, unexplained
    assert not explained(['"a==1",', '"b==2",  # why b', '"c==3",'], 2)  # b's comment is b's, not c's
