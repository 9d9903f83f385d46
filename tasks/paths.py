"""Where a project keeps its files, named once. A project is the folder that holds params.yaml (``project_root``);
everything the pipeline writes is under it:

    params.yaml
    data/<task>/            each task's prepared data, versioned by DVC as one folder (data.dvc)
    data.dvc                the data version: DVC's pointer file, committed with the code
    .attnflow-tmp/          where a preparation writes before it replaces data/<task>/ (same file system)
    outputs/<run id>/       a run's checkpoint, tokenizer and compact model
    outputs/resume/         an interrupted training's state, by stage cache key
    mlflow.db, mlartifacts/ the default MLflow store (sqlite) and its artifacts
    .prefect/               the Prefect server that `attnflow schedule serve` starts
    .attnflow.lock          held while a pipeline runs: one at a time per project
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def task_data(self, task: str) -> Path:
        return self.data / task

    @property
    def data_dvc(self) -> Path:
        return self.root / "data.dvc"

    @property
    def scratch(self) -> Path:
        return self.root / ".attnflow-tmp"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def run_outputs(self, run_id: str) -> Path:
        return self.outputs / run_id

    @property
    def resume(self) -> Path:
        return self.outputs / "resume"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / ".prefect"

    @property
    def lock(self) -> Path:
        return self.root / ".attnflow.lock"
