"""The MLflow runs of a pipeline, as the flows (flows/pipeline.py) see them: one "pipeline" run per flow run, and
one run per task in the task's experiment, linked to it (tags ``pipeline_run_id`` and ``mlflow.parentRunId``; the
pipeline run holds ``run_id.<task>`` back). The flows say when a run opens, adopts a cached result and closes; how
that is written to MLflow is here, so that flows/ only composes.

Whatever happens, a run is closed: FINISHED, or FAILED / KILLED with the error (``fail``), never left RUNNING.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tasks.params import Params, public_dump
from tasks.paths import ProjectPaths
from tasks.tracking.datasets import split_inputs
from tasks.tracking.mlflow_tracking import (
    close_stale_runs,
    connect,
    fail_run,
    log_metrics,
    log_params,
    process_tags,
    run_kind,
    run_name,
)

NOT_REGISTERED = "not registered here: its sweep registers the winner only"


@dataclass
class TrackedRun:
    """An MLflow run of the pipeline's, and the client that writes to it."""

    client: MlflowClient
    run_id: str

    def failing(self):
        """A context in which any error (an interruption too) closes the run with it, then goes on up."""
        return closing_on_error(self.client, self.run_id)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)


@dataclass
class TaskRun(TrackedRun):
    """One task's MLflow run in the task's experiment."""

    tags: dict[str, str]
    name: str  # model, size and training settings (run_name); the run's kind is added when it closes

    @classmethod
    def open(cls, root: Path, params: Params, task: str, parent_run_id: str, lineage: dict, tags: dict) -> TaskRun:
        """The task's run, opened under the pipeline run, with what it is made from: the split inputs, the task's
        section as params, and the effective params.yaml and data.dvc as files (what ``reproduce`` reads back)."""
        client, experiment_id = connect(root, params, task)
        spec, section = params.kind(task), params.task(task)
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            "pipeline_run_id": parent_run_id,
            "task": task,
            "kind": section.kind,
            **process_tags(root),
            **lineage,
            **tags,
        }
        name = run_name(spec, section)
        run = cls(client, client.create_run(experiment_id, run_name=name, tags=tags).info.run_id, tags, name)
        client.set_tag(parent_run_id, f"run_id.{task}", run.run_id)
        with run.failing():
            client.log_inputs(run.run_id, datasets=split_inputs(root, task, spec, lineage["data_md5"]))
            log_params(client, run.run_id, section.model_dump())
            client.log_text(run.run_id, yaml.safe_dump(public_dump(params), sort_keys=False), "params.yaml")
            client.log_text(run.run_id, ProjectPaths(root).data_dvc.read_text(), "data.dvc")
        return run

    def adopt(self, result: dict, metrics: dict[str, float], tags: dict[str, str]) -> bool:
        """A stage's result made by another run (the stage cache, tasks/caching.py): its figures and the tags that
        point at that run are put on this one, so that each run shows what it stands on. Returns whether the result
        was another run's."""
        if result["run_id"] == self.run_id:
            return False
        log_metrics(self.client, self.run_id, metrics)
        self.set_tags(tags)
        return True

    def name_as(self, cached_from: str | None) -> None:
        """Name the run for what it was: trained, cached from a run, a reproduction (``run_kind``)."""
        self.client.update_run(self.run_id, name=f"{self.name} ({run_kind(self.tags, cached_from)})")

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


@dataclass
class PipelineRun(TrackedRun):
    """The pipeline's run in the project's experiment (``tracking.experiment``)."""

    @classmethod
    def open(cls, root: Path, params: Params, selected: list[str], tags: dict, logger) -> PipelineRun:
        """The pipeline run, opened (and the experiments its task runs go to made, before they run at once), after
        closing the runs a dead process of this project left RUNNING."""
        client, experiment_id = connect(root, params)
        for name in selected:
            connect(root, params, name)
        for run_id in close_stale_runs(client, root):
            logger.warning("closed run %s as KILLED: the process that ran it died without closing it", run_id)
        tags = {"tasks": ",".join(selected), **process_tags(root), **tags}
        run = cls(client, client.create_run(experiment_id, run_name="pipeline", tags=tags).info.run_id)
        with run.failing():
            log_params(client, run.run_id, public_dump(params)["global"])
        return run

    def fail(self, error: BaseException) -> None:
        """Close the run and its task runs still RUNNING (their process was interrupted, or their worker lost)."""
        self.close_open_task_runs(error)
        fail_run(self.client, self.run_id, error)

    def close_open_task_runs(self, error: BaseException, task: str | None = None) -> None:
        """Close as FAILED the task runs of this pipeline run (or only the task's) that were left RUNNING: by a
        lost worker, or by an interruption while the tasks ran elsewhere."""
        experiments = [experiment.experiment_id for experiment in self.client.search_experiments()]
        query = f"attributes.status = 'RUNNING' and tags.pipeline_run_id = '{self.run_id}'"
        if task is not None:
            query += f" and tags.task = '{task}'"
        for run in self.client.search_runs(experiments, query):
            fail_run(self.client, run.info.run_id, error)

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


@contextmanager
def closing_on_error(client: MlflowClient, run_id: str):
    """Close the run with the error that leaves the block (an interruption as KILLED, see ``fail_run``), then raise
    it on."""
    try:
        yield
    except BaseException as error:
        fail_run(client, run_id, error)
        raise
