"""Prepare stage: build each modality's built-in dataset into data/<modality>/.

A dataset is rebuilt only when its recipe (generator arguments and seed) changed. It is written
to a scratch folder first and swapped in whole, so a failure never leaves half a dataset in data/.
"""
import json
import shutil
import tempfile
from pathlib import Path

from prefect import get_run_logger, task

from tasks.data.builtin_image import generate_image_dataset
from tasks.data.builtin_speech import generate_speech_dataset
from tasks.data.builtin_text import generate_text_dataset
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
    code = code_fingerprint(f"tasks/data/builtin_{modality}.py")
    recipe = {"source": "builtin", "modality": modality, "arguments": arguments, "code_sha256": code}
    return json.loads(json.dumps(recipe))  # as read back from dataset.json: tuples become lists


GENERATORS = {"text": generate_text_dataset, "image": generate_image_dataset, "speech": generate_speech_dataset}


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
    return "prepare-" + digest(modality, str(root), builtin_recipe(modality, inputs["params"]),
                               code_fingerprint("tasks/data/prepare.py"))


def dataset_matches(root: Path, recipe: dict) -> bool:
    """The data in data/<modality> was built from this recipe (a cached result's output still exists)."""
    return read_recipe(root / "data" / recipe["modality"]) == recipe


@task(name="prepare-data", retries=1, retry_delay_seconds=2, cache_key_fn=prepare_cache_key, persist_result=True)
def prepare_data(modality: str, params: Params, root: Path) -> dict:
    logger = get_run_logger()
    recipe = builtin_recipe(modality, params)
    target = root / "data" / modality
    if dataset_matches(root, recipe):
        logger.info("data/%s is up to date with its recipe", modality)
        return recipe
    scratch_root = root / SCRATCH_DIR
    scratch_root.mkdir(exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f"{modality}-", dir=scratch_root))
    try:
        summary = GENERATORS[modality](built, **recipe["arguments"])
        (built / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        target.parent.mkdir(exist_ok=True)
        swap_in(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    logger.info("built data/%s: %s", modality, summary)
    return recipe
