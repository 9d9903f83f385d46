"""A stage re-runs when code it uses changes, and only then: each stage's cache key follows the imports of its
module, its task's kind's module and that kind's model (tasks/caching.py), and the data's code through the data
recipe.

The edits are made to a copy of the code that the cache keys are computed from (`tasks.caching.CODE_ROOT` points at
it): the code that runs is unchanged, so the edit is a comment, and what is tested is which stages see it.
"""

import shutil

import pytest
import yaml

from flows.pipeline import attention_pipeline
from tasks import caching
from tests.conftest import IMAGE, REPO, TEXT, make_tiny_project, stage_states, tiny_params, write_params

TASKS = (TEXT, IMAGE)
STAGES = ("prepare-data", "train", "evaluate", "explain", "compress")


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    """A tiny text + image project, run once; the code the cache keys read is a copy, edited by the tests."""
    code = tmp_path_factory.mktemp("code")
    for package in caching.PROJECT_PACKAGES:
        shutil.copytree(REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setattr(caching, "CODE_ROOT", code)
        project = make_tiny_project(tmp_path_factory.mktemp("cache") / "project")
        params = tiny_params()
        params["global"]["tasks"] = list(TASKS)
        write_params(project, params)
        first = attention_pipeline(params_path=str(project / "params.yaml"))
        assert set(stage_states(project, first).values()) == {"Completed"}
        yield project, code


def rerun_after_editing(project, code, *modules: str) -> dict[str, str]:
    """Append a comment to modules of the copied code, run the pipeline again; the state of each stage."""
    for module in modules:
        with (code / module).open("a") as file:
            file.write("\n# edited by tests/test_stage_cache.py\n")
    result = attention_pipeline(params_path=str(project / "params.yaml"))
    return stage_states(project, result)


def expected(rerun: dict[str, set[str]]) -> dict[str, str]:
    """Completed for the stages named per task, Cached for every other."""
    return {f"{stage}-{m}": "Completed" if stage in rerun.get(m, ()) else "Cached" for m in TASKS for stage in STAGES}


# Each run edits modules whose stages do not overlap, so one run checks several edits.
def test_a_generator_reruns_its_data_and_what_follows_and_a_model_its_training(project):
    """The text generator: text's data (its recipe), so text's training, evaluation, explanation and compression; the
    image model: image's training, evaluation, explanation and compression. Nothing else."""
    states = rerun_after_editing(*project, "tasks/data/builtin_text.py", "attn_models/vit.py")
    everything_after_data = {"train", "evaluate", "explain", "compress"}
    assert states == expected({TEXT: {"prepare-data", *everything_after_data}, IMAGE: everything_after_data})


def test_the_training_loop_reruns_every_training(project):
    states = rerun_after_editing(*project, "tasks/training/loop.py")
    assert states == expected({m: {"train", "evaluate", "explain", "compress"} for m in TASKS})


def test_the_prepare_stage_and_the_serving_wrapper_rerun_their_stages_only(project):
    """The prepare stage's code re-runs every prepare (which finds its data up to date: same recipe, so training is
    cached); the serving wrapper, which the evaluate and compress stages log, re-runs every evaluation and
    compression."""
    states = rerun_after_editing(*project, "tasks/stages/prepare.py", "tasks/serving/pyfunc_model.py")
    assert states == expected({m: {"prepare-data", "evaluate", "compress"} for m in TASKS})


def test_the_scoring_of_attention_maps_reruns_the_explanations_only(project):
    """The explainer (named by the spec, not imported by it): the explain stages re-run, the evaluations (which log
    the models) stay cached. (The attribution methods themselves are also served: they re-run both.)"""
    states = rerun_after_editing(*project, "tasks/evaluation/explain.py")
    assert states == expected({m: {"explain"} for m in TASKS})


def test_the_compression_code_and_its_params_rerun_the_compressions_only(project):
    """The variants' measuring code re-runs every compression; so does a change to global.compress (the rule's
    allowed drop), and nothing else."""
    states = rerun_after_editing(*project, "tasks/evaluation/compress.py")
    assert states == expected({m: {"compress"} for m in TASKS})
    project_dir, _ = project
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    params["global"]["compress"]["max_metric_drop"] = 0.5
    write_params(project_dir, params)
    assert stage_states(project_dir, attention_pipeline(params_path=str(project_dir / "params.yaml"))) == expected(
        {m: {"compress"} for m in TASKS}
    )
