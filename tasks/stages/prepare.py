"""Prepare stage: build each task's dataset into data/<task>/: generated (``data.builtin``) or imported
from the user's own files (``data.import_from``, which wins when both are set; see tasks/data/importers.py).

A dataset is rebuilt only when its recipe changed (``data_recipe``): for built-in data the generator's arguments, seed
and code; for imported data the import arguments, seed, a fingerprint of the source files (relative paths, sizes and
modification times, see ``source_fingerprint``) and the importer's code; with a pretrain stage, the unlabelled
data's fingerprint and copying code too (``unlabelled_recipe``). It is written to a scratch folder first
and swapped in whole, so a failure (a ``DataImportError`` naming the bad file) never leaves half a dataset in
data/ and never changes what is there.
"""

import json
import shutil
import tempfile
from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import Stage, code_fingerprint, digest
from tasks.data.importers import DataImportError, source_fingerprint
from tasks.kinds.base import load_object, resolve
from tasks.names import RECIPE_FILE
from tasks.params import Params
from tasks.paths import ProjectPaths

# The recipe holds all the data depends on, its generator's or importer's code included.
STAGE = Stage("prepare-data", params=(), upstream=("recipe",), module=__name__, kind_code=False)


def as_json(recipe: dict) -> dict:
    return json.loads(json.dumps(recipe))  # as read back from dataset.json: tuples become lists


def builtin_recipe(task: str, params: Params) -> dict:
    """Everything a task's built-in data depends on: the generator's arguments and its code."""
    spec = params.kind(task)
    arguments = spec.builtin_arguments(params.task(task), params.global_.seed)
    code = code_fingerprint(spec.generator.partition(":")[0])
    return as_json({"source": "builtin", "task": task, "arguments": arguments, "code_sha256": code})


def import_recipe(task: str, params: Params, root: Path) -> dict:
    """Everything imported data depends on: the import arguments, the seed (splits the source lacks), what else the
    task records (a target sample rate), a fingerprint of the files it reads and the importer's code."""
    spec, import_from = params.kind(task), params.task(task).data.import_from
    arguments = spec.import_arguments(params.task(task), params.global_.seed)
    paths = spec.import_paths(import_from, root)
    content = source_fingerprint(
        paths.pop("path"), manifest=getattr(import_from, "layout", None) in spec.manifest_layouts
    )
    if paths:  # split files named beside the source
        content = digest(content, {split: source_fingerprint(path) for split, path in paths.items()})
    return as_json(
        {
            "source": "import",
            "task": task,
            "arguments": arguments,
            "content_sha256": content,
            "code_sha256": code_fingerprint(spec.importer.partition(":")[0]),
        }
    )


def unlabelled_recipe(task: str, params: Params, root: Path) -> dict:
    """What the unlabelled data of a task's pretrain stage depends on: a fingerprint of pretrain.source's files and
    the code that copies them. Empty without a pretrain section, so such a task's recipe is what it was."""
    pretrain = getattr(params.task(task), "pretrain", None)
    if pretrain is None:
        return {}
    spec = params.kind(task)
    content = source_fingerprint(resolve(pretrain.source, root))
    code = code_fingerprint(spec.unlabelled_importer.partition(":")[0])
    return as_json({"unlabelled": {"content_sha256": content, "code_sha256": code}})


def data_recipe(task: str, params: Params, root: Path) -> dict:
    """The recipe of the task's data: imported when data.import_from is set, else built-in; with the unlabelled data
    of its pretrain stage, when it has one."""
    if params.task(task).data.import_from is not None:
        return import_recipe(task, params, root) | unlabelled_recipe(task, params, root)
    return builtin_recipe(task, params) | unlabelled_recipe(task, params, root)


def import_unlabelled(task: str, params: Params, root: Path, out_dir: Path) -> dict:
    """Copy the task's pretrain.source into out_dir (the kind's unlabelled_importer); returns its summary."""
    source = resolve(params.task(task).pretrain.source, root)
    return load_object(params.kind(task).unlabelled_importer)(source, out_dir)


def import_data(task: str, params: Params, root: Path, out_dir: Path, recipe: dict | None = None) -> dict:
    """Import the task's data.import_from into out_dir with the arguments its recipe records (paths resolved
    against the project root); returns the importer's summary (examples per split)."""
    spec = params.kind(task)
    arguments = dict((recipe or import_recipe(task, params, root))["arguments"])
    paths = spec.import_paths(params.task(task).data.import_from, root)
    source = paths.pop("path")
    for split, path in paths.items():  # absolute, like the source
        arguments[split] = {**arguments[split], "path": str(path)}
    return load_object(spec.importer)(source, out_dir, **arguments)


def read_recipe(dataset_dir: Path) -> dict | None:
    path = dataset_dir / RECIPE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def dataset_matches(root: Path, recipe: dict) -> bool:
    """The data in data/<task> was built from this recipe (a cached result's output still exists)."""
    return read_recipe(ProjectPaths(root).task_data(recipe["task"])) == recipe


def swap_in(built: Path, target: Path) -> None:
    """Replace target with built in two renames (the old copy is removed only after the swap)."""
    retired = built.with_name(built.name + "-old")
    if target.exists():
        target.rename(retired)
    built.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def retry_unless_bad_data(_task, _task_run, state) -> bool:
    """Retry a failed prepare, except when the user's data is at fault (a retry would fail the same way)."""
    try:
        state.result()
    except DataImportError:
        return False
    except BaseException:
        return True
    return True


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_unless_bad_data, **STAGE.task_options())
def prepare_data(task: str, params: Params, root: Path, recipe: dict) -> dict:
    """Build data/<task> from its recipe (``data_recipe``, which the caller computes) unless it is built already;
    returns the recipe."""
    logger = get_run_logger()
    target = ProjectPaths(root).task_data(task)
    if dataset_matches(root, recipe):
        logger.info("data/%s is up to date with its recipe", task)
        return recipe
    scratch_root = ProjectPaths(root).scratch
    scratch_root.mkdir(exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f"{task}-", dir=scratch_root))
    try:
        if recipe["source"] == "import":
            summary = import_data(task, params, root, built, recipe)
        else:
            summary = load_object(params.kind(task).generator)(built, **recipe["arguments"])
        if "unlabelled" in recipe:  # in data/<task>/ with the labelled data: DVC versions them together
            summary = {**summary, **import_unlabelled(task, params, root, built)}
        (built / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(exist_ok=True)
        swap_in(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    logger.info("%s data/%s: %s", "imported" if recipe["source"] == "import" else "built", task, summary)
    return recipe
