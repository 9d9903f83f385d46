"""Generated malformed inputs, seeded: params files, every importer layout, and serving request values of every
task. Each must end in the project's own clear error, one line naming the input (ParamsError: the file and the
key; DataImportError: the file; BadRequest: the row and what is wrong with it), never another exception; a broken
import, run through the prepare stage, leaves data/ and data.dvc as they were and no scratch folder behind.

FUZZ_CASES per generator (200 cases in all) run in `make test`; set ATTNFLOW_FUZZ_CASES higher for a longer run
(`ATTNFLOW_FUZZ_CASES=200 make test-fast`). docs/robustness.md lists the categories and counts.
"""

import base64
import os
import random

import numpy as np
import pytest
import yaml
from prefect.logging import disable_run_logger

from tasks.data.importers import DataImportError
from tasks.data.requests import BadRequest, each_row
from tasks.kinds import get
from tasks.params import ParamsError, load_params
from tasks.paths import ProjectPaths
from tasks.schema import ServingLimits
from tasks.stages.prepare import data_recipe, prepare_data
from tests.conftest import IMAGE, REPO, SPEECH, TEXT, TRANSLATION, tiny_params, write_params
from tests.test_import import make_png, make_wav, write_lines, write_rows

pytestmark = pytest.mark.fuzz  # hundreds of cases: in `make test`, not in the quick `make test-fast`

FUZZ_CASES = int(os.environ.get("ATTNFLOW_FUZZ_CASES", "8"))
LIMITS = ServingLimits().model_dump()


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


# ---- params files ---------------------------------------------------------------------------------------------
def leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every leaf of the params tree."""
    found = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        found += leaves(value, dotted + ".") if isinstance(value, dict) and value else [(dotted, value)]
    return found


def set_key(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for parent in parents:
        tree = tree[parent]
    tree[leaf] = value


def wrong_value(value, rng: random.Random):
    """A value the key cannot take, whatever its type: another type, or a number out of any range."""
    if isinstance(value, bool):
        return rng.choice([[True], {"on": 1}, 2.5])
    if isinstance(value, (int, float)):
        return rng.choice(["many", [value], {"value": value}, float("nan"), float("inf"), True, 2**70, -(2**40)])
    if isinstance(value, str):
        return rng.choice([[value], {"name": value}])
    if isinstance(value, list):
        return rng.choice([{"items": value}, [[[]]] if value and not isinstance(value[0], list) else "x"])
    return rng.choice([[1, 2], "x"]) if value is None else ["x"]


KEEPS_NONE_VALID = {"global.tracking.uri", "global.tracking.ui_url"}  # None and strings: only lists/dicts are wrong


def params_cases() -> list:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    keys = leaves(base)
    rng = random.Random(0)
    for case in range(3 * FUZZ_CASES):
        kind = ("value", "unknown key", "bytes")[case % 3]
        yield pytest.param(kind, rng.randrange(2**32), keys[rng.randrange(len(keys))][0], id=f"params-{kind}-{case}")


@pytest.mark.parametrize(("kind", "seed", "key"), list(params_cases()))
def test_a_malformed_params_file_is_one_error_naming_the_file_and_key(tmp_path, kind, seed, key):
    rng = random.Random(seed)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    if kind == "value":
        value = dict(leaves(params))[key]
        bad = wrong_value(value, rng) if key not in KEEPS_NONE_VALID else {"not": "a string"}
        set_key(params, key, bad)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        expected = key.removeprefix("global.") if key.startswith("global.") else key
    elif kind == "unknown key":
        section = key.rsplit(".", 1)[0] if "." in key else ""
        set_key(params, f"{section}.surprise_{seed % 1000}" if section else f"surprise_{seed % 1000}", 1)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        expected = f"surprise_{seed % 1000}"
    else:  # bytes: the file itself is broken: not UTF-8, a NUL, a duplicate key, an unclosed bracket, a tab indent
        text = (REPO / "params.yaml").read_bytes()
        at = rng.randrange(len(text))
        breakage = rng.choice([b"\xff\xfe", b"\x00", b"\nglobal:\n  seed: 1\n", b"\n  [unclosed", b"\n\tbad: 1\n"])
        path.write_bytes(text[:at] + breakage + text[at:])
        expected = None
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert one_line(message) and message.startswith(str(path)), message
    if expected:
        assert expected.split(".")[-1] in message, message


# ---- importers ------------------------------------------------------------------------------------------------
def text_dataset(root):
    rows = [["text", "label"]] + [[f"words {label} {i}", label] for label in "abc" for i in range(8)]
    return write_rows(root / "all.csv", rows), {"path": "all.csv"}


def tsv_dataset(root):
    rows = [["text", "label"]] + [[f"words {label} {i}", label] for label in "abc" for i in range(8)]
    return write_rows(root / "all.tsv", rows, "\t"), {"path": "all.tsv", "layout": "tsv"}


def image_folders(root):
    for label in "ab":
        for i in range(6):
            make_png(root / "pictures" / label / f"{i}.png", seed=i)
    return root / "pictures" / "a" / "3.png", {"path": "pictures"}


def image_manifest(root):
    rows = [["image", "label"]]
    for label in "ab":
        for i in range(6):
            make_png(root / "set" / f"{label}{i}.png", seed=i)
            rows.append([f"{label}{i}.png", label])
    return write_rows(root / "set" / "labels.csv", rows), {"path": "set/labels.csv", "layout": "csv"}


def speech_folders(root):
    for label in ("yes", "no"):
        for i in range(6):
            make_wav(root / "clips" / label / f"spk{i}_nohash_0.wav", seed=i, seconds=0.2)
    return root / "clips" / "no" / "spk2_nohash_0.wav", {"path": "clips"}


def translation_files(root):
    (root / "pairs").mkdir()
    write_lines(root / "pairs" / "train.de", [f"Satz {i}" for i in range(20)])
    write_lines(root / "pairs" / "train.en", [f"sentence {i}" for i in range(20)])
    return root / "pairs" / "train.en", {"path": "pairs", "source_lang": "de", "target_lang": "en",
                                               "splits": {"train": "train"}}  # fmt: skip


# the built-in task of the kind, a tiny valid dataset (returns the file to break and the import_from settings)
LAYOUTS = {
    "text-csv": (TEXT, text_dataset),
    "text-tsv": (TEXT, tsv_dataset),
    "image-folders": (IMAGE, image_folders),
    "image-csv": (IMAGE, image_manifest),
    "speech-folders": (SPEECH, speech_folders),
    "translation-files": (TRANSLATION, translation_files),
}


def corrupt(path, rng: random.Random) -> str:
    """Break the file so that no importer can take it; returns how."""
    data = path.read_bytes()
    how = rng.choice(["empty", "garbage", "truncated", "not utf-8", "nul"] if path.suffix in (".csv", ".tsv", ".en")
                     else ["empty", "garbage", "truncated"])  # fmt: skip
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
    elif how == "truncated":  # a table cut inside its header; other files cut to less than half
        end = data.index(b"\n") if path.suffix in (".csv", ".tsv") else len(data) // 2
        path.write_bytes(data[: rng.randrange(1, max(2, end))])
    elif how == "not utf-8":
        at = rng.randrange(len(data))
        path.write_bytes(data[:at] + b"\xff\xfe\xfa" + data[at:])
    else:
        at = rng.randrange(len(data))
        path.write_bytes(data[:at] + b"\x00" + data[at:])
    return how


def importer_cases() -> list:
    rng = random.Random(1)
    for layout in LAYOUTS:
        for case in range(2 * FUZZ_CASES):
            yield pytest.param(layout, rng.randrange(2**32), id=f"import-{layout}-{case}")


@pytest.mark.parametrize(("layout", "seed"), list(importer_cases()))
def test_a_broken_file_in_any_import_layout_is_one_error_naming_it(tmp_path, layout, seed):
    task, make = LAYOUTS[layout]
    broken, import_from = make(tmp_path)
    how = corrupt(broken, random.Random(seed))
    params = tiny_params()
    params["tasks"][task]["data"]["import_from"] = {"val_fraction": 0.2, "test_fraction": 0.2, **import_from}
    loaded = load_params(write_params(tmp_path, params))
    kept = tmp_path / "data" / task / "kept.txt"  # the last good version, as a run before left it
    kept.parent.mkdir(parents=True)
    kept.write_text("the last good version")
    (tmp_path / "data.dvc").write_text("outs: []\n")
    before = snapshot(tmp_path / "data", tmp_path / "data.dvc")
    try:
        with disable_run_logger():  # the prepare stage's own work, outside a flow run
            prepare_data.fn(task, loaded, tmp_path, data_recipe(task, loaded, tmp_path))
    except DataImportError as error:
        assert one_line(str(error)) and broken.name in str(error), (how, str(error))
    else:
        pytest.fail(f"{layout}: a {how} {broken.name} was imported")
    assert snapshot(tmp_path / "data", tmp_path / "data.dvc") == before  # nothing lost, nothing half-written
    assert not any(ProjectPaths(tmp_path).scratch.iterdir())


def snapshot(*paths) -> dict:
    """Every file under the paths, with its bytes."""
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()]
    return {str(p): p.read_bytes() for p in files}


# ---- serving request values -----------------------------------------------------------------------------------
MODEL_ARGS = {
    "in_channels": 1,
    "image_size": 16,
    "patch_size": 4,
    "sample_rate": 16000,
    "clip_seconds": 1.0,
    "max_len": 8,
}


def request_value(kind: str):
    """The function a served model of the kind applies to one raw request value."""
    spec = get(kind)
    if hasattr(spec, "request_input"):
        return lambda value: spec.request_input(value, MODEL_ARGS, None, LIMITS)
    return lambda value: spec.request_source(value, {"model_args": MODEL_ARGS}, None, LIMITS)


def malformed_value(kind: str, rng: random.Random):
    """A value no model of the kind can take."""
    if kind in ("text", "translation"):
        return rng.choice([None, 3, 2.5, True, ["a", "b"], {"text": "a"}, "", "   ", "x" * (17 * 2**20)])
    garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    size = rng.randrange(2, 40)
    with_nan = np.zeros(size, dtype=np.float32).tolist()
    with_nan[rng.randrange(size)] = rng.choice([float("nan"), float("inf"), -float("inf")])
    ragged = [[0.0] * rng.randrange(1, 5), [0.0] * rng.randrange(5, 9)]
    choices = [
        base64.b64encode(garbage).decode(),  # not a file of the kind
        "".join(rng.choice("!@#$%^&*()") for _ in range(rng.randrange(1, 30))),  # not base64
        [with_nan, with_nan] if kind == "image" else with_nan,
        ragged,
        [["a", "b"], ["c", "d"]],
        [],
        {"pixels": [1, 2]},
    ]
    if kind == "image":
        choices += [7, [[[0.0] * 5] * 4] * 4]  # a scalar; 5 channels
    else:
        choices.append(np.zeros(16000 * 61).tolist() if rng.random() < 0.2 else [[[[]]]])  # over 60 s; no samples
    return rng.choice(choices)


def serving_cases() -> list:
    rng = random.Random(2)
    for kind in ("text", "image", "speech", "translation", "asr"):
        for case in range(2 * FUZZ_CASES):
            yield pytest.param(kind, rng.randrange(2**32), id=f"serve-{kind}-{case}")


@pytest.mark.parametrize(("kind", "seed"), list(serving_cases()))
def test_a_malformed_request_value_is_refused_with_its_row_named(kind, seed):
    value = malformed_value(kind, random.Random(seed))
    decode = request_value(kind)
    with pytest.raises(BadRequest) as error:
        each_row([value], decode)
    assert one_line(str(error.value)) and str(error.value).startswith("row 0: "), str(error.value)


def test_the_suite_has_its_count():
    """What docs/robustness.md says: 3 x FUZZ_CASES params files, 12 x FUZZ_CASES imports, 10 x FUZZ_CASES requests."""
    assert len(list(params_cases())) + len(list(importer_cases())) + len(list(serving_cases())) == 25 * FUZZ_CASES
