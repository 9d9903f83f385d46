"""Train stage: fit a task's model on data/<task>/ and save a checkpoint that can rebuild it.

Training saves its whole state after every epoch under outputs/resume/, named after this stage's cache key (its
params, data and code): a run that was stopped goes on from its last finished epoch the next time the same stage
runs, and ends with the metrics an uninterrupted run has (tasks/training/resume.py). The file goes once the
checkpoint is written.

The task's kind (tasks/kinds/) supplies the tokenizer, the data, the model and the loss; the loop
(tasks/training/loop.py) is the same for all. torch and the data loaders are imported inside the task body: a cached
run never enters it, and leaving them out of module scope saves seconds of start-up on every run.
"""

import functools
import math
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.caching import Stage
from tasks.defaults import describe, log_resolved, most_steps
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.checkpoints import checkpoint_path, log_trained, relative_checkpoint
from tasks.tracking.mlflow_tracking import connect, log_metrics
from tasks.training.budget import (
    FIRST_EPOCH_SECONDS,
    PLANNED_EPOCHS,
    PLANNED_STEPS,
    STEP_SECONDS,
    VALIDATION_SECONDS,
    describe_plan,
    schedule_kind,
)

STAGE = Stage(
    "train",
    params=("data", "model", "train", "global.seed", "global.device"),
    upstream=("data_recipe",),
    module=__name__,
    backbone_files=True,
    pretrained=True,
)
SYSTEM_METRICS_SECONDS = 10  # MLflow samples CPU, memory (and GPU) usage this often while a model trains
TRAINING_ENVIRONMENT = ("device", "torch_version")  # returned by train_model; lineage tags of the task run
SHORT_TRAINING_TAG = "short_training"  # the warning of a plan of too few optimizer steps (tasks/defaults.py)


@task(**STAGE.task_options())
def train_model(
    task: str, params: Params, root: Path, run_id: str, data_recipe: dict, pretrained: dict | None = None
) -> dict:
    """Returns the checkpoint's path (relative to the project root), the id of the MLflow run that trained it and
    where it trained (TRAINING_ENVIRONMENT). pretrained: the pretrain stage's result (tasks/stages/pretrain.py),
    whose encoder the model starts from, or None (from random weights). With train.distributed.nproc above 1 the
    training runs in that many processes (tasks/training/distributed.py), whose rank 0 reports here: this process
    alone logs to MLflow and Prefect. The trained files are logged to the run too, for clones that get this result
    from a shared cache."""
    import torch
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from tasks.reproducibility import resolve_device
    from tasks.training import distributed
    from tasks.training.job import train_and_save

    logger = get_run_logger()
    section = params.task(task)
    device = resolve_device(params.global_.device)
    nproc = section.train.distributed.nproc
    distributed.check_devices(nproc, device, f"tasks.{task}.train.distributed.nproc")
    out_dir = ProjectPaths(root).run_outputs(run_id)
    out_dir.mkdir(parents=True, exist_ok=True)

    client, _ = connect(root, params, task)
    epochs, budget = section.train.epochs, section.train.budget_minutes  # epochs: a number once training starts
    planning = f"for {budget:g} minutes" if budget is not None else f"{epochs} epochs"
    progress_artifact = create_progress_artifact(0.0, description=f"{task}: training, {planning}")
    inputs = {"task": task, "params": params, "root": root, "data_recipe": data_recipe, "pretrained": pretrained}
    state_file = ProjectPaths(root).resume / f"{STAGE.cache_key(None, inputs)}.pt"  # this stage's inputs only
    trained = {}

    def started(built: dict) -> None:
        nonlocal epochs
        trained.update(built, started=time.perf_counter())
        epochs = built["epochs"]  # as resolved from the data (train.epochs auto)
        resolved = built.get("resolved") or {}
        logger.info("%s: %s with %.2fM parameters, %d train / %d val samples on %s (%s)%s%s", task,
                    built["model"], built["num_parameters"] / 1e6, built["train"], built["val"], device,
                    built["precision"],
                    f", {nproc} processes" if nproc > 1 else "",
                    f"; auto: {describe(resolved)}" if resolved else "")  # fmt: skip
        log_resolved(client, run_id, resolved)
        client.set_tag(run_id, "train_precision", built["precision"])
        if built["short_training"]:
            logger.warning("%s", built["short_training"])
            client.set_tag(run_id, SHORT_TRAINING_TAG, built["short_training"])
        for name, value in built.get("backbone", {}).items():  # which pretrained files it fine-tuned
            client.set_tag(run_id, name, value)

    def report(epoch: int, metrics: dict) -> None:
        log_metrics(client, run_id, metrics, step=epoch)
        update_progress_artifact(progress_artifact, 100.0 * epoch / epochs,
                                 description=f"{task}: epoch {epoch}/{epochs}, val accuracy "
                                 f"{metrics['val_accuracy']:.3f}")  # fmt: skip
        logger.info(
            "%s epoch %d/%d  train loss %.3f acc %.3f | val loss %.3f acc %.3f | %.0f samples/s",
            task,
            epoch,
            epochs,
            metrics["train_loss"],
            metrics["train_accuracy"],
            metrics["val_loss"],
            metrics["val_accuracy"],
            metrics["train_samples_per_second"],
        )

    def resumed(epoch: int) -> None:
        logger.info("%s: resuming training after epoch %d/%d, saved by an interrupted run (%s)", task, epoch,
                    epochs, state_file.relative_to(root))  # fmt: skip
        client.set_tag(run_id, "resumed_after_epoch", str(epoch))

    def planned(epoch: int, steps: int, steps_per_epoch: int, elapsed: float, pace) -> None:
        nonlocal epochs
        most = most_steps(section.train.model_copy(update={"epochs": trained["epochs"]}), steps_per_epoch)
        epochs = math.ceil(steps / steps_per_epoch)
        plan = describe_plan(budget, schedule_kind(section.train), epoch, elapsed, pace, steps, steps_per_epoch, most)
        logger.info("%s: %s", task, plan)
        client.set_tag(run_id, "train_schedule", plan)
        first = {FIRST_EPOCH_SECONDS: elapsed} if epoch == 1 else {}
        log_metrics(client, run_id, {PLANNED_STEPS: steps, PLANNED_EPOCHS: steps / steps_per_epoch, **first,
                                     STEP_SECONDS: pace.step_seconds, VALIDATION_SECONDS: pace.validation_seconds},
                    step=epoch)  # fmt: skip

    handlers = {"started": started, "planned": planned, "epoch": report, "resumed": resumed, "finished": trained.update}

    def on_event(name: str, *args) -> None:
        handlers[name](*args)

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_SECONDS, tracking_uri=client.tracking_uri)
    monitor.start()  # MLflow's system metrics (system/cpu_utilization_percentage, memory, ...) while it trains
    try:
        start = None if pretrained is None else checkpoint_path(root, pretrained)  # a pretrain stage's checkpoint
        if nproc == 1:
            train_and_save(task, params, root, out_dir, state_file, distributed.Events(handler=on_event), start=start)
        else:  # not resumable yet: each rank's random state would have to be saved with the rest
            target = functools.partial(train_and_save, start=start)
            distributed.launch(nproc, device, target, (task, params, root, out_dir, None), on_event)
    finally:
        monitor.finish()
    log_metrics(
        client,
        run_id,
        {
            "best_val_accuracy": trained["best_val_accuracy"],
            "best_epoch": trained["best_epoch"],
            **{
                name: trained[name]
                for name in ("averaged_val_accuracy", "averaged_epochs", "stopped_epoch")
                if name in trained
            },
            "num_parameters": trained["num_parameters"],
            "train_seconds": time.perf_counter() - trained["started"],
        },
    )
    if "stopped_epoch" in trained:
        logger.info("%s: early stopping after epoch %d: no better validation accuracy since epoch %d "
                    "(train.patience)", task, trained["stopped_epoch"], trained["best_epoch"])  # fmt: skip
    state_file.unlink(missing_ok=True)  # trained: nothing left to resume
    log_trained(client, run_id, out_dir)  # where a clone that gets this result from a shared cache fetches it
    # plain str: a cached result holding torch's TorchVersion would import torch when it is read back (seconds)
    return {
        "checkpoint": relative_checkpoint(root, out_dir),  # valid in any clone (tasks/tracking/checkpoints.py)
        "run_id": run_id,
        "device": str(device),
        "torch_version": str(torch.__version__),
    }
