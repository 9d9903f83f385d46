"""MLflow: where runs go, and how a pipeline run and its task runs are opened, tagged and closed.

Run ids are passed explicitly everywhere (MLflow's active run is per thread, and Prefect may run
work on other threads); only ``log_pytorch_model`` activates a run, because ``log_model`` needs it.
"""

import os
import signal
import socket
import time
import traceback
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tasks.names import MODEL_ARTIFACT
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.store import tracking_uri

# The UI opens an experiment of this kind in its model-training view (not the GenAI one).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def ui_url(root: Path, params: Params) -> str:
    """The MLflow UI of the project's store (global.tracking.ui_url; see TrackingParams)."""
    uri = tracking_uri(root, params)
    configured = params.global_.tracking.ui_url or (uri if uri.startswith(("http://", "https://")) else None)
    return (configured or "http://127.0.0.1:5000").rstrip("/")


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(ui: str, name: str, version: str) -> str:
    return f"{ui}/#/models/{name}/versions/{version}"


def experiment_name(params: Params, task: str | None = None) -> str:
    """The pipeline runs go to `tracking.experiment`; each task's runs to `<tracking.experiment>-<task>`."""
    base = params.global_.tracking.experiment
    return f"{base}-{task}" if task else base


def run_name(spec, section) -> str:
    """What tells runs of one task apart (they share its experiment): model, size and training settings, e.g.
    VisionTransformer-d4-w64-h4-lr0.002-ep30 (spec: the task's kind)."""
    t = section.train
    return f"{spec.describe_model(section)}-lr{t.lr:g}-ep{t.epochs}"


def connect(
    root: Path, params: Params, task: str | None = None, experiment: str | None = None
) -> tuple[MlflowClient, str]:
    """Point MLflow at the project's store; return a client and the id of the pipeline's (or a task's, or the named)
    experiment."""
    uri = tracking_uri(root, params)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    name = experiment or experiment_name(params, task)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag was set
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return client, experiment.experiment_id
    # Artifacts of a local store sit beside it, at an absolute path (never relative to the cwd).
    artifact_location = ProjectPaths(root).artifacts.resolve().as_uri() if uri.startswith("sqlite:") else None
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    return client, client.create_experiment(name, artifact_location=artifact_location, tags=tags)


def run_kind(tags: dict, cached_from: str | None) -> str:
    """What a task run is, for its name: trained, cached (from which run), a reproduction, a sweep member."""
    if cached_from:
        kind = f"cached from {cached_from[:8]}"
    elif "reproduced_from_run_id" in tags:
        kind = f"reproduces {tags['reproduced_from_run_id'][:8]}"
    else:
        kind = "trained"
    if "sweep_id" in tags and "sweep_config" in tags:
        kind += f", sweep {tags['sweep_id']} {tags['sweep_config']}"
    return kind


def flatten(section: dict, prefix: str = "") -> dict[str, str]:
    """{'model': {'depth': 2}} -> {'model.depth': '2'}; lists are written out whole."""
    flat = {}
    for key, value in section.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def log_params(client: MlflowClient, run_id: str, section: dict) -> None:
    params = [Param(key, value[:6000]) for key, value in flatten(section).items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, step or 0) for key, value in metrics.items()])


def interruption(error: BaseException) -> str | None:
    """'SIGTERM', 'SIGINT' (Ctrl-C) when the error is the process being stopped, else None."""
    from prefect.exceptions import TerminationSignal

    if isinstance(error, TerminationSignal):
        return signal.Signals(error.signal).name
    if isinstance(error, KeyboardInterrupt):
        return "SIGTERM" if "SIGTERM" in str(error) else "SIGINT"
    return None


def fail_run(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Close a run so that nothing is left RUNNING: KILLED when the process was stopped (SIGTERM, Ctrl-C), else FAILED
    with the error and its traceback."""
    stopped = interruption(error)
    try:
        client.set_tag(
            run_id, "error", f"interrupted by {stopped}" if stopped else f"{type(error).__name__}: {error}"[:5000]
        )
        client.log_text(run_id, "".join(traceback.format_exception(error)), "error_traceback.txt")
    finally:  # even when recording the error fails
        client.set_terminated(run_id, "KILLED" if stopped else "FAILED")


def process_tags(root: Path) -> dict[str, str]:
    """Which process of which project a run belongs to, so that a later run can close it if that process died."""
    return {"attnflow_pid": str(os.getpid()), "attnflow_host": socket.gethostname(), "attnflow_project": str(root)}


def close_stale_runs(client: MlflowClient, root: Path) -> list[str]:
    """Close as KILLED the runs of this project that a process on this host left RUNNING and that is gone (killed
    with SIGKILL, or the machine went down); returns their ids. Called under the project lock, when no other pipeline
    of the project can be running."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    query = (f"attributes.status = 'RUNNING' and tags.attnflow_host = '{socket.gethostname()}' "
             f"and tags.attnflow_project = '{root}'")  # fmt: skip
    closed = []
    for run in client.search_runs(experiments, query, max_results=1000) if experiments else []:
        pid = int(run.data.tags["attnflow_pid"])
        if pid != os.getpid() and not alive(pid):
            client.set_tag(run.info.run_id, "error", f"killed: its process {pid} ended without closing it")
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def log_pytorch_model(run_id: str, model, *, input_example, signature, code_paths, extra_files, pip_requirements):
    """Log a model with mlflow.pytorch (which needs the run active in this thread).

    Pickled with its code (code_paths) rather than exported as pt2: torch.export would fix the batch
    size and sequence length to the input example's.
    """
    import mlflow.pytorch  # here: it loads torch, which a cached pipeline run never needs

    with mlflow.start_run(run_id=run_id, nested=True):
        return mlflow.pytorch.log_model(
            model,
            name=MODEL_ARTIFACT,
            input_example=input_example,
            signature=signature,
            code_paths=code_paths,
            extra_files=extra_files,
            pip_requirements=pip_requirements,
            serialization_format="pickle",
        )
