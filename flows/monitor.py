"""The monitor: compares what the served classifiers answered since the last check with each model's reference (the
test split's answers, logged when it was evaluated), per registered model and served run (tasks/monitoring/).

Each check is an MLflow run of `<tracking.experiment>-monitoring` (figures per feature, drift.png). When a feature
drifted, the notification block of global.monitor.notify_block (if any) is told, and the flow run ends Failed with
the reason naming the drifted features: red in the Prefect UI and in `attnflow schedule status`. Fewer answers than
global.monitor.min_requests since the last check pass, saying so.
"""

from prefect import flow
from prefect.artifacts import create_table_artifact

from tasks.kinds.classification import Classifier
from tasks.monitoring.check import check_requests, notify
from tasks.monitoring.drift import DRIFT
from tasks.params import Params, load_params, project_root
from tasks.tracking.registry import registered_model_name

RESULTS_KEY = "attnflow-monitoring"  # the Prefect UI keeps one version of the table per run


class DriftDetected(RuntimeError):
    """A served model's answers drifted from its reference; the message names the model and the features."""


def monitored(params: Params, task: str | None = None) -> list[str]:
    """The registered models to check: those of the classifier tasks in params (their answers carry an input summary),
    or of the one task asked for; an unknown one is a ValueError naming the choices."""
    classifiers = [name for name in params.tasks if isinstance(params.kind(name), Classifier)]
    chosen = [name for name in classifiers if task in (None, name)]
    if not chosen:
        raise ValueError(f"unknown task {task!r} to monitor; choose from {', '.join(classifiers)}")
    return [registered_model_name(params, name) for name in chosen]


@flow(name="monitor")
def monitor(params_path: str = "params.yaml", task: str | None = None) -> dict:
    """Check every monitored model's request log; fail naming the drifted features."""
    params = load_params(params_path)
    root = project_root(params_path)
    results = [result for name in monitored(params, task) for result in check_requests(params, root, name)]
    create_table_artifact(
        [{key: result.get(key, "") for key in ("model", "version", "alias", "requests", "status", "reason")}
         for result in results],
        key=RESULTS_KEY, description="Served models against their references",
    )  # fmt: skip
    drifted = [result for result in results if result["status"] == DRIFT]
    if drifted:
        reason = "; ".join(f"{r['model']} v{r['version']} ({r['alias']}): {r['reason']}" for r in drifted)
        if params.global_.monitor.notify_block:
            notify(params.global_.monitor.notify_block, reason)
        raise DriftDetected(reason)
    return {"models": results}
