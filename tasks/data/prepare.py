"""Prepare stage: build each modality's dataset into data/<modality>/: generated (``data.builtin``) or imported
from the user's own files (``data.import_from``, which wins when both are set; see importers.py).

A dataset is rebuilt only when its recipe changed: for built-in data the generator's arguments, seed and code;
for imported data the import arguments, seed, a fingerprint of the source files (relative paths, sizes and
modification times, see ``source_fingerprint``) and the importer's code. It is written to a scratch folder first
and swapped in whole, so a failure (a ``DataImportError`` naming the bad file) never leaves half a dataset in
data/ and never changes what is there.
"""
import importlib
import json
import shutil
import tempfile
from pathlib import Path

from prefect import get_run_logger, task

from tasks.data.importers import DataImportError, import_dataset, source_fingerprint
from tasks.caching import code_fingerprint, digest
from tasks.params import Params

RECIPE_FILE = "dataset.json"
SCRATCH_DIR = ".attnflow-tmp"  # beside data/, same file system, never versioned


def builtin_recipe(modality: str, params: Params) -> dict:
    """Everything a modality's built-in data depends on: the generator's arguments and its code."""
    section = params.section(modality)
    arguments = section.data.builtin.model_dump() | {"seed": params.global_.seed}
    if modality == "speech":
        arguments |= {"sample_rate": section.data.sample_rate, "clip_seconds": section.data.clip_seconds}
    if modality == "image":
        arguments |= {"image_size": section.data.image_size}
    code = code_fingerprint(f"tasks/data/builtin_{modality}.py")
    recipe = {"source": "builtin", "modality": modality, "arguments": arguments, "code_sha256": code}
    return json.loads(json.dumps(recipe))  # as read back from dataset.json: tuples become lists


def resolve(path: str, root: Path) -> Path:
    """A path from params.yaml: a relative one is read from the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def import_source(import_from, root: Path) -> Path:
    """The folder or file to import."""
    return resolve(import_from.path, root)


SPLIT_FILES = ("val", "test")  # text imports may name a separate file for these splits


def split_files(import_from, root: Path) -> dict[str, Path]:
    return {split: resolve(getattr(import_from, split).path, root) for split in SPLIT_FILES
            if getattr(import_from, split, None) is not None}


def import_recipe(modality: str, params: Params, root: Path) -> dict:
    """Everything imported data depends on: the import arguments, the seed (splits the source lacks), the
    target sample rate (speech), a fingerprint of the source files and the importer's code."""
    section = params.section(modality)
    arguments = section.data.import_from.model_dump(mode="json") | {"seed": params.global_.seed}
    if modality == "speech":
        arguments |= {"sample_rate": section.data.sample_rate}
    content = source_fingerprint(import_source(section.data.import_from, root),
                                 manifest=modality in ("image", "speech") and arguments["layout"] == "csv")
    extra = split_files(section.data.import_from, root)
    if extra:
        content = digest(content, {split: source_fingerprint(path) for split, path in extra.items()})
    recipe = {"source": "import", "modality": modality, "arguments": arguments, "content_sha256": content,
              "code_sha256": code_fingerprint("tasks/data/importers.py")}
    return json.loads(json.dumps(recipe))


def data_recipe(modality: str, params: Params, root: Path) -> dict:
    """The recipe of the modality's data: imported when data.import_from is set, else built-in."""
    if params.section(modality).data.import_from is not None:
        return import_recipe(modality, params, root)
    return builtin_recipe(modality, params)


def import_data(modality: str, params: Params, root: Path, out_dir: Path, recipe: dict | None = None) -> dict:
    """Import the modality's data.import_from into out_dir with the arguments its recipe records; returns the
    importer's summary (examples per split)."""
    import_from = params.section(modality).data.import_from
    arguments = dict((recipe or import_recipe(modality, params, root))["arguments"])
    for split, path in split_files(import_from, root).items():  # absolute, like the source
        arguments[split] = {**arguments[split], "path": str(path)}
    return import_dataset(modality, import_source(import_from, root), out_dir, arguments)


def generator(modality: str):
    """The modality's built-in generator, imported only when data is built (a cached run never needs it)."""
    module = importlib.import_module(f"tasks.data.builtin_{modality}")
    return getattr(module, f"generate_{modality}_dataset")


def read_recipe(dataset_dir: Path) -> dict | None:
    path = dataset_dir / RECIPE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def swap_in(built: Path, target: Path) -> None:
    """Replace target with built in two renames (the old copy is removed only after the swap)."""
    retired = built.with_name(built.name + "-old")
    if target.exists():
        target.rename(retired)
    built.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def prepare_cache_key(_context, inputs: dict) -> str:
    modality, root = inputs["modality"], inputs["root"]
    return "prepare-" + digest(modality, str(root), data_recipe(modality, inputs["params"], root),
                               code_fingerprint("tasks/data/prepare.py"))


def dataset_matches(root: Path, recipe: dict) -> bool:
    """The data in data/<modality> was built from this recipe (a cached result's output still exists)."""
    return read_recipe(root / "data" / recipe["modality"]) == recipe


def retry_unless_bad_data(_task, _task_run, state) -> bool:
    """Retry a failed prepare, except when the user's data is at fault (a retry would fail the same way)."""
    try:
        state.result()
    except DataImportError:
        return False
    except BaseException:
        return True
    return True


@task(name="prepare-data", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_unless_bad_data,
      cache_key_fn=prepare_cache_key, persist_result=True)
def prepare_data(modality: str, params: Params, root: Path) -> dict:
    logger = get_run_logger()
    recipe = data_recipe(modality, params, root)
    target = root / "data" / modality
    if dataset_matches(root, recipe):
        logger.info("data/%s is up to date with its recipe", modality)
        return recipe
    scratch_root = root / SCRATCH_DIR
    scratch_root.mkdir(exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f"{modality}-", dir=scratch_root))
    try:
        if recipe["source"] == "import":
            summary = import_data(modality, params, root, built, recipe)
        else:
            summary = generator(modality)(built, **recipe["arguments"])
        (built / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(exist_ok=True)
        swap_in(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    logger.info("%s data/%s: %s", "imported" if recipe["source"] == "import" else "built", modality, summary)
    return recipe
