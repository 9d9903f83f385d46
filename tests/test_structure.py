"""The shape of the code, checked: what differs between kinds of task lives in tasks/kinds/, packages import each
other without cycles, attn_models/ stays pure PyTorch, and shared names are defined once (tasks/names.py)."""

import ast
import re
from pathlib import Path

import pytest

from tasks.caching import PROJECT_PACKAGES
from tests.conftest import REPO

SOURCES = sorted(path for package in PROJECT_PACKAGES for path in (REPO / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def node(module: str) -> str:
    """The package a module belongs to (tasks.data.importers -> tasks.data); a module at the top of `tasks` is its own
    node (tasks.params), and attn_models and flows are one node each."""
    parts = module.split(".")
    if parts[0] != "tasks" or len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and (REPO / "tasks" / f"{parts[1]}.py").is_file():
        return module
    return ".".join(parts[:2])


def package_graph() -> dict[str, set[str]]:
    graph = {}
    for path in SOURCES:
        source = node(module_name(path))
        targets = {node(name) for name in imported_modules(path) if name.split(".")[0] in PROJECT_PACKAGES}
        graph.setdefault(source, set()).update(targets - {source})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of nodes, or None (depth-first search with an explicit path)."""
    state = {}

    def visit(current, path):
        state[current] = "open"
        for target in sorted(graph.get(current, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [current, target] if target in path else [current, target]
            if target not in state:
                found = visit(target, path + [current])
                if found:
                    return found
        state[current] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def test_no_package_import_cycles():
    graph = package_graph()
    assert {"tasks.kinds", "tasks.stages", "tasks.data", "tasks.params", "flows"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# A branch on a kind's name: a comparison with one (`== "text"`, `in ("image", ...)`), or with a spec's name.
KIND_NAME = r"""["'](?:text|image|speech|translation|asr)["']"""
BRANCH = re.compile(
    rf"""[!=]=\s*{KIND_NAME}|{KIND_NAME}\s*[!=]=|\bin\s*[(\[{{]\s*{KIND_NAME}|spec\.name\s*[!=]=|\bmodality\b"""
)


def test_the_branch_finder_finds_branches_on_a_kinds_name():
    for line in ('if kind == "text":', "if 'asr' != name:", 'if name in ("image", "speech"):', "spec.name == k",
                 "modality = 1"):  # fmt: skip
        assert BRANCH.search(line), line
    assert not BRANCH.search('if executor.kind == "dask":') and not BRANCH.search('row["text"]')


def test_no_kind_branches_outside_the_kind_modules():
    offending = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in SOURCES
        if path.parts[-2] != "kinds"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert not offending, "\n".join(offending)


def test_attn_models_import_only_torch():
    for path in (REPO / "attn_models").glob("*.py"):
        roots = {name.split(".")[0] for name in imported_modules(path)}
        allowed = {"attn_models", "torch", "torchaudio", "math", "__future__", "typing", "dataclasses", "contextlib",
                   "io", "warnings"}  # fmt: skip
        if path.name == "pretrained.py":  # the one model fine-tuned from a Hugging Face backbone
            allowed.add("transformers")
        assert roots <= allowed, path


@pytest.mark.parametrize(
    "literal",
    [
        '"checkpoint.pt"',
        '"tokenizer.json"',
        '"labels.json"',
        '"dataset.json"',
        'name="serving"',
        "'serving'",
        'name="model"',
    ],
)
def test_shared_names_are_defined_once(literal):
    holders = [path.relative_to(REPO).as_posix() for path in SOURCES if literal in path.read_text()]
    assert holders in ([], ["tasks/names.py"]), holders


@pytest.mark.parametrize("kind", ["generator", "importer"])
def test_the_data_code_stays_apart_from_the_model_and_serving_code(kind):
    """The data recipe fingerprints the generator's and importer's modules with all they import: if one imported a
    kind's module, an edit to a model, the training loop or the serving wrapper would rebuild that data and change
    data.dvc. Data code lives in tasks/data and imports nothing outside it but tasks/progress.py."""
    from tasks.caching import code_closure
    from tasks.kinds import discover

    for name, spec in discover().items():
        files = code_closure(getattr(spec, kind).partition(":")[0])
        outside = [str(f.relative_to(REPO)) for f in files if f.parent.name not in ("data", "tasks")]
        assert not outside, f"{name}'s {kind} imports {outside}"


def tracking_calls(source: str) -> list[str]:
    """What a module does to MLflow itself: its mlflow imports and its calls of a client's methods."""
    found = []
    for item in ast.walk(ast.parse(source)):
        if isinstance(item, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in item.names] + ([item.module] if isinstance(item, ast.ImportFrom) else [])
            found += [f"import {name}" for name in names if name and name.split(".")[0] == "mlflow"]
        elif isinstance(item, ast.Call) and isinstance(item.func, ast.Attribute):
            owner = item.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in {"client", "mlflow"}:
                found.append(f"{name}.{item.func.attr}(...)")
    return found


def test_the_pipeline_flow_only_composes():
    """flows/pipeline.py says what runs when; how runs are opened, tagged, adopt a cached result and close is in
    tasks/tracking/pipeline_runs.py."""
    assert tracking_calls((REPO / "flows" / "pipeline.py").read_text()) == []
    planted = "from mlflow import MlflowClient\nrun.client.set_tag(run_id, 'a', 'b')\nclient.log_metric(1)\n"
    assert tracking_calls(planted) == ["import mlflow", "client.set_tag(...)", "client.log_metric(...)"]
