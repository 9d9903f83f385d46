"""The monitor's tasks (flows/monitor.py composes them): check a registered model's request log against the reference
of each run it served, recording each check as an MLflow run of ``<tracking.experiment>-monitoring``, and tell a
Prefect notification block of drift.

A check reads the answers each run served since its last check (the log's watermark), and compares them with the
reference its evaluation logged (tasks/evaluation/monitoring.py) by the rule in tasks/monitoring/drift.py. The
watermark moves once the answers were compared: answers too few to tell stay for the next check, with the ones that
come after them.
"""

import json
import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.monitoring import drift
from tasks.monitoring.request_log import RequestLog, request_log_for
from tasks.names import MONITOR_REFERENCE
from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect, log_metrics

NO_LOG, NO_REFERENCE = "no request log", "no reference"  # statuses besides drift's: nothing to compare


def monitoring_experiment(params: Params) -> str:
    """Where the checks go: beside the task experiments, `<tracking.experiment>-monitoring`."""
    return f"{params.global_.tracking.experiment}-monitoring"


def thresholds(params: Params) -> drift.Thresholds:
    settings = params.global_.monitor
    return drift.Thresholds(settings.psi_threshold, settings.ks_pvalue, settings.min_requests)


@task(name="check-requests", task_run_name="check-{model_name}", cache_policy=NO_CACHE)
def check_requests(params: Params, root: Path, model_name: str) -> list[dict]:
    """Check the request log of registered model model_name: one result per run it served (registered model, version,
    alias, run id, requests, status, drifted features, reason, the monitoring run's id)."""
    store = request_log_for(params, root, model_name)
    if not store.path.exists():
        return [{"model": model_name, "status": NO_LOG, "requests": 0, "reason": f"no request log at {store.path}"}]
    rows = store.unchecked()
    if not rows:
        verdict = drift.decide(0, [], thresholds(params))
        return [{"model": model_name, "status": verdict.status, "requests": 0, "reason": verdict.reason}]
    by_run = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    client, experiment_id = connect(root, params, experiment=monitoring_experiment(params))
    return [check_run(client, experiment_id, store, run_rows, thresholds(params)) for run_rows in by_run.values()]


def check_run(client, experiment_id: str, store: RequestLog, rows: list[dict], limits: drift.Thresholds) -> dict:
    """Compare one served run's unchecked answers with its reference, record the check, move the watermark."""
    last = rows[-1]
    served = {"model": last["model"], "version": last["version"], "alias": last["alias"], "run_id": last["run_id"]}
    reference, drifts = None, []
    if len(rows) < limits.min_requests:
        verdict = drift.decide(len(rows), [], limits)
    elif (reference := load_reference(client, last["run_id"])) is None:
        verdict = drift.Verdict(NO_REFERENCE, (), f"run {last['run_id']} has no {MONITOR_REFERENCE} (evaluated before "
                                "the monitor existed): evaluate it again to monitor it")  # fmt: skip
    else:
        drifts = drift.compare(reference, [row["features"] for row in rows], [row["prediction"] for row in rows])
        verdict = drift.decide(len(rows), drifts, limits)
    monitoring_run_id = record(client, experiment_id, served, rows, reference, drifts, verdict)
    if verdict.status != drift.TOO_FEW:
        store.mark_checked(last["run_id"], last["id"])
    get_run_logger().info("%s v%s (%s): %s: %s", served["model"], served["version"], served["alias"],
                          verdict.status, verdict.reason)  # fmt: skip
    return {**served, "requests": len(rows), "status": verdict.status, "drifted": list(verdict.drifted),
            "reason": verdict.reason, "monitoring_run_id": monitoring_run_id}  # fmt: skip


def load_reference(client, run_id: str) -> dict | None:
    """The reference a classifier run's evaluation logged, or None when it has none."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            return json.loads(Path(client.download_artifacts(run_id, MONITOR_REFERENCE, folder)).read_text())
        except (MlflowException, OSError):
            return None


def record(client, experiment_id, served: dict, rows: list[dict], reference, drifts, verdict) -> str:
    """One MLflow run per check: tags name the served version and the verdict; metrics `requests`, `psi.<feature>`,
    `ks_pvalue.<feature>`, `ks_statistic.<feature>`; drift.json with every figure and drift.png, the reference's
    histograms against the current answers'."""
    import matplotlib.pyplot as plt

    from tasks.monitoring.figures import drift_figure

    tags = {
        "registered_model": served["model"],
        "registered_version": served["version"],
        "alias": served["alias"] or "",
        "reference_run_id": served["run_id"],
        "status": verdict.status,
        "reason": verdict.reason[:5000],
        "drifted": ",".join(verdict.drifted),
        "prefect_flow_run_id": flow_run.get_id() or "",
    }
    run_id = client.create_run(experiment_id, run_name=f"{served['model']} v{served['version']}", tags=tags).info.run_id
    figures = {"requests": len(rows)}
    for item in drifts:
        figures[f"psi.{item.name}"] = item.psi
        if item.ks_pvalue is not None:
            figures |= {f"ks_pvalue.{item.name}": item.ks_pvalue, f"ks_statistic.{item.name}": item.ks_statistic}
    log_metrics(client, run_id, figures)
    window = {"first_id": rows[0]["id"], "last_id": rows[-1]["id"], "from": rows[0]["time"], "to": rows[-1]["time"]}
    client.log_dict(run_id, {"verdict": verdict.__dict__, "window": window, "figures": figures}, "drift.json")
    if reference is not None and drifts:
        figure = drift_figure(reference, rows)
        client.log_figure(run_id, figure, "drift.png")
        plt.close(figure)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@task(name="notify-drift", cache_policy=NO_CACHE)
def notify(block_name: str, message: str) -> None:
    """Send message to the Prefect notification block named "<block type>/<name>" (global.monitor.notify_block), e.g. a
    custom-webhook or slack-webhook block saved on the Prefect server."""
    from prefect.blocks.core import Block

    Block.load(block_name).notify(body=message, subject="attnflow monitor: drift in served models")
