"""The documentation says what the code does: the generated reference lists every flag and params key, the JSON
Schema is the params models' own, every params file and tutorial snippet is valid, the README stays short, and the
test-tier table names the modules that carry each marker."""

import importlib.util
import json
import re
import tomllib

import pytest
import yaml
from jsonschema import Draft202012Validator

from tasks.kinds import REGISTRY
from tasks.params import GlobalParams, Params
from tests.conftest import REPO

SCHEMA = REPO / "docs" / "reference" / "params.schema.json"
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("*.md"))
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def reference_hook():
    """docs/hooks/reference.py, the mkdocs hook that writes the reference pages (a file, not a package module)."""
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, params: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in validator.iter_errors(params)
    ]


def test_the_json_schema_is_current():
    assert SCHEMA.read_text() == reference_hook().schema_text(), (
        "docs/reference/params.schema.json is stale: make schema"
    )


def test_params_yaml_names_its_schema():
    first = (REPO / "params.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=docs/reference/params.schema.json"


@pytest.mark.parametrize(
    "path",
    ["params.yaml", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "benchmarks" / "configs").glob("*.yaml"))],
)
def test_every_params_file_validates_against_the_schema(validator, path):
    """A benchmark config is a params file with a `benchmark` block beside it, which benchmarks/real_data.py takes
    out before it validates the rest (load_config); the same is done here."""
    params = yaml.safe_load((REPO / path).read_text())
    params.pop("benchmark", None)
    assert not schema_errors(validator, params)
    Params.model_validate(params)  # the schema and the models agree on this file


@pytest.mark.parametrize(
    "key, value",
    [
        ("model.embed_dim", 4),  # an auto-or-number below its bounds
        ("model.embed_dim", "big"),
        ("model.depht", 2),  # a typo
        ("train.batch_size", 0),
        ("kind", "video"),
    ],
)
def test_the_schema_refuses_what_the_models_refuse(validator, key, value):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, leaf = key.split(".")
    node = params["tasks"]["language-id"]
    for part in parents:
        node = node[part]
    node[leaf] = value
    assert schema_errors(validator, params)
    with pytest.raises(ValueError):
        Params.model_validate(params)


def tutorial_snippets() -> list[tuple[str, str]]:
    return [
        (path.name, block)
        for path in [*TUTORIALS, REPO / "README.md"]
        for block in YAML_BLOCK.findall(path.read_text())
        if block.startswith(("tasks:", "global:"))
    ]


def test_the_tutorials_have_params_snippets():
    names = {name for name, _ in tutorial_snippets()}
    assert {"own-text-csv.md", "own-image-folder.md", "own-audio.md", "schedule.md", "README.md"} <= names


@pytest.mark.parametrize("name, snippet", tutorial_snippets(), ids=[name for name, _ in tutorial_snippets()])
def test_each_tutorial_snippet_is_valid_in_params_yaml(validator, name, snippet):
    """A tutorial's snippet is added to params.yaml as the tutorial says: its tasks beside the built-in ones, or
    its global keys merged into params.yaml's."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    added = yaml.safe_load(snippet)
    params["tasks"].update(added.get("tasks") or {})
    for section, values in (added.get("global") or {}).items():
        merged = params["global"].get(section)
        params["global"][section] = {**merged, **values} if isinstance(merged, dict) else values
    assert not schema_errors(validator, params)
    Params.model_validate(params)


def test_the_readme_is_short_and_links_into_the_site():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    targets = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert targets, "the README links into the site"
    missing = [target for target in targets if not (REPO / target).is_file()]
    assert not missing, missing


# ---- the built site -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `make docs` builds it (strict: a warning fails the build), in a temporary folder."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    folder = tmp_path_factory.mktemp("site")
    build(load_config(str(REPO / "mkdocs.yml"), site_dir=str(folder), strict=True))
    return folder


def all_flags() -> set[str]:
    """Every option string of every command, by a walk of the parser written apart from the generator's."""
    from flows.cli import parser

    flags, todo = set(), [parser()]
    while todo:
        command = todo.pop()
        for action in command._actions:
            flags.update(action.option_strings)
            if isinstance(action.choices, dict):  # a command's subcommands
                todo.extend(action.choices.values())
    return flags - {"-h", "--help"}


def keys(model, prefix: str = "") -> list[str]:
    """Every dotted key of a params section, sub-sections included (optional ones too)."""
    found = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        found.append(key)
        for inner in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(inner, type) and hasattr(inner, "model_fields"):
                found += keys(inner, key + ".")
    return found


def test_the_built_site_lists_every_flag(site):
    page = (site / "reference" / "cli" / "index.html").read_text()
    missing = sorted(flag for flag in all_flags() if f"<code>{flag}</code>" not in page)
    assert not missing, f"flags missing from the command-line reference: {missing}"


def test_the_built_site_lists_every_params_key(site):
    page = (site / "reference" / "params" / "index.html").read_text()
    starts = {"global": page.index('id="global"')} | {name: page.index(f'id="kind-{name}"') for name in REGISTRY}
    ends = sorted(starts.values())[1:] + [len(page)]
    sections = {name: page[start : ends[sorted(starts.values()).index(start)]] for name, start in starts.items()}
    missing = [f"global.{key}" for key in keys(GlobalParams) if f"<code>global.{key}</code>" not in sections["global"]]
    for name, spec in REGISTRY.items():
        missing += [
            f"tasks.<{name} task>.{key}" for key in keys(spec.params) if f"<code>{key}</code>" not in sections[name]
        ]
    assert not missing, f"params keys missing from the params reference: {missing}"


def test_the_built_site_lists_every_exit_code(site):
    from tasks.errors import EXIT_CODES

    page = (site / "reference" / "exit-codes" / "index.html").read_text()
    assert all(f"<td>{code}</td>" in page for code in EXIT_CODES)


# ---- the test tiers ---------------------------------------------------------------------------------------------
def marker_table() -> dict[str, set[str]]:
    """docs/reference/tests.md's marker table: marker -> the test modules it names."""
    text = (REPO / "docs" / "reference" / "tests.md").read_text()
    table = text[text.index("| marker |") :].split("\n\n")[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return {row[0].strip("| `"): {name.strip(" |") for name in row[2].split(",")} for row in rows}


def modules_marked(marker: str) -> set[str]:
    return {
        path.stem for path in (REPO / "tests").glob("test_*.py") if re.search(rf"\bmark\.{marker}\b", path.read_text())
    }


def test_the_marker_table_names_the_modules_that_carry_each_marker():
    pytest_config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = [line.split(":")[0] for line in pytest_config["markers"]]
    table = marker_table()
    assert sorted(table) == sorted(declared), "every declared marker has a row, and every row a declared marker"
    for marker, named in table.items():
        assert named == modules_marked(marker), f"{marker}: the table names {sorted(named)}"


def test_the_tier_table_names_the_markers_each_make_target_selects():
    """Each tier's row names every marker its make target's -m expression names (the Makefile is what runs)."""
    makefile = (REPO / "Makefile").read_text()
    tiers = (REPO / "docs" / "reference" / "tests.md").read_text().split("## Tiers")[1].split("##")[0]
    for target in ("test-fast", "test", "test-slow"):
        expression = re.search(rf"^{target}:.*\n(?:\t.*\n)*?\t.*pytest.* -m (\"[^\"]+\"|\S+)", makefile, re.M).group(1)
        row = next(line for line in tiers.splitlines() if line.startswith(f"| `make {target}` |"))
        named = set(re.findall(r"\w+", expression)) - {"not", "and", "or"}
        assert named and all(f"`{marker}`" in row for marker in named), (target, expression, row)
