"""Pretrain stage: a task with a `pretrain` section first trains its encoder on its unlabelled data (copied into
data/<task>/ by the prepare stage), self-supervised; the train stage starts its classifier's encoder from the result.

It is tracked as an MLflow run of its own in the task's experiment, nested under the task run that asked for it: its
params (the pretrain and model sections), the loss and masked-prediction accuracy curves (metrics by step), the
checkpoint and tokenizer as artifacts, and the data it read as tags: ``data_md5`` (the DVC version of data/, which
holds the unlabelled data) and ``unlabelled_sha256`` (the prepared unlabelled file's content). Cached like the other
stages, by its params, the data recipe (which fingerprints the unlabelled source) and its code: an unchanged pretrain
stage is skipped, and the task runs that follow point at the run that pretrained (``lineage_tags``).
"""

import hashlib
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from prefect import get_run_logger, task

from tasks.caching import Stage
from tasks.defaults import describe, log_resolved
from tasks.names import CHECKPOINT, UNLABELLED_TEXTS
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.checkpoints import log_trained, relative_checkpoint
from tasks.tracking.mlflow_tracking import connect, log_metrics, log_params, process_tags
from tasks.tracking.pipeline_runs import closing_on_error

STAGE = Stage(
    "pretrain",
    params=("data", "model", "pretrain", "global.seed", "global.device"),
    upstream=("data_recipe",),
    module=__name__,
)
STAGE_TAG = "stage"  # on the pretrain run: which stage's run it is (the task runs have none)
# The task run's tags naming what its encoder started from: the pretrain run, its checkpoint's sha256 (also in the
# train stage's cache key) and the unlabelled data's content and DVC version.
LINEAGE_TAGS = {
    "run_id": "pretrain_run_id",
    "checkpoint_sha256": "pretrain_checkpoint_sha256",
    "unlabelled_sha256": "pretrain_unlabelled_sha256",
    "data_md5": "pretrain_data_md5",
}


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def lineage_tags(pretrained: dict) -> dict[str, str]:
    """The tags of a task run whose encoder started from this pretrain result."""
    return {tag: str(pretrained[key]) for key, tag in LINEAGE_TAGS.items()}


@task(**STAGE.task_options())
def pretrain_model(task: str, params: Params, root: Path, run_id: str, data_recipe: dict) -> dict:
    """Pretrain the task's encoder in a new MLflow run under the task run run_id; returns the checkpoint's path
    (relative to the project root), the pretrain run's id, the checkpoint's sha256 and the data it read
    (LINEAGE_TAGS' keys). The files are logged to the run too, for clones that get this result from a shared cache."""
    from tasks.training.pretraining import pretrain_and_save

    logger = get_run_logger()
    section = params.task(task)
    client, experiment_id = connect(root, params, task)
    unlabelled = file_sha256(ProjectPaths(root).task_data(task) / UNLABELLED_TEXTS)
    data_md5 = client.get_run(run_id).data.tags.get("data_md5", "")  # the task run's lineage: data/ as versioned
    tags = {MLFLOW_PARENT_RUN_ID: run_id, STAGE_TAG: STAGE.name, "task": task, "kind": section.kind,
            "data_md5": data_md5, "unlabelled_sha256": unlabelled, **process_tags(root)}  # fmt: skip
    pretrain_run = client.create_run(experiment_id, run_name=f"pretrain-{task}", tags=tags).info.run_id
    with closing_on_error(client, pretrain_run):
        log_params(
            client, pretrain_run, {"pretrain": section.pretrain.model_dump(), "model": section.model.model_dump()}
        )
        out_dir = ProjectPaths(root).run_outputs(pretrain_run)
        out_dir.mkdir(parents=True, exist_ok=True)

        def on_point(step: int, metrics: dict) -> None:
            log_metrics(client, pretrain_run, metrics, step=step)
            logger.info("%s pretrain step %d: %s", task, step, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

        done = pretrain_and_save(task, params, root, out_dir, on_point)
        if done["resolved"]:
            logger.info("%s: pretrained with auto: %s", task, describe(done["resolved"]))
        log_resolved(client, pretrain_run, done["resolved"])
        log_metrics(client, pretrain_run, {"pretrain_steps": done["steps"], "pretrain_seconds": done["seconds"]})
        log_trained(client, pretrain_run, out_dir)  # where a clone that gets this result from a shared cache fetches it
        client.set_terminated(pretrain_run, "FINISHED")
    return {
        "checkpoint": relative_checkpoint(root, out_dir),
        "run_id": pretrain_run,
        "checkpoint_sha256": file_sha256(out_dir / CHECKPOINT),
        "unlabelled_sha256": unlabelled,
        "data_md5": data_md5,
    }
