"""Report stage: a pipeline run's results in the Prefect UI, as artifacts of its flow run: a table of every
task's test metrics, the promotion decisions in Markdown, and links to each task's MLflow run and to the
registered model version it made (on the MLflow UI at global.tracking.ui_url)."""

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect, model_version_url, run_url, ui_url

RESULTS_KEY = "attnflow-results"  # the table's key: the Prefect UI's Artifacts page keeps its versions, one per run


def results_table(params: Params, results: dict[str, dict], failed: list[str]) -> list[dict]:
    """One row per task: its kind, test metrics (rounded), promotion, and MLflow run."""
    rows = []
    for name, result in results.items():
        metrics = {metric: round(result[metric], 4) for metric in params.kind(name).metrics}
        if result["promotion"]:
            promotion = result["promotion"]["alias"]
        else:  # a sweep's configuration is registered by the sweep, if it wins
            cached = result["cached_from_run_id"]
            promotion = f"cached from {cached}" if cached else "not registered (sweep member)"
        rows.append({"task": name, "kind": params.task(name).kind, **metrics, "promotion": promotion,
                     "mlflow_run": result["run_id"]})  # fmt: skip
    return rows + [{"task": name, "kind": params.task(name).kind, "promotion": "FAILED"} for name in failed]


def promotions_markdown(results: dict[str, dict], ui: str) -> str:
    lines = ["# Promotion decisions", ""]
    for name, result in results.items():
        promotion = result["promotion"]
        if promotion is None and result["cached_from_run_id"] is None:
            lines.append(f"- **{name}**: not registered: its sweep registers the winner only")
            continue
        if promotion is None:
            lines.append(
                f"- **{name}**: nothing trained (every stage cached from run `{result['cached_from_run_id']}`)"
            )
            continue
        link = model_version_url(ui, promotion["registered_model"], promotion["version"])
        lines.append(f"- **{name}**: [{promotion['registered_model']} version {promotion['version']}]({link}) is "
                     f"**{promotion['alias']}**: {promotion['reason']}")  # fmt: skip
    return "\n".join(lines) + "\n"


@task(name="report")
def report_results(params: Params, root: Path, results: dict[str, dict], failed: list[str]) -> None:
    ui = ui_url(root, params)
    create_table_artifact(results_table(params, results, failed), key=RESULTS_KEY,
                          description="Test metrics of each task of this pipeline run")  # fmt: skip
    create_markdown_artifact(promotions_markdown(results, ui), description="Which model each task promoted, and why")
    for name, result in results.items():
        _, experiment_id = connect(root, params, name)
        create_link_artifact(run_url(ui, experiment_id, result["run_id"]), f"{name}: MLflow run {result['run_id']}",
                             description=f"the {name} run in the MLflow UI")  # fmt: skip
        if result["promotion"]:
            promotion = result["promotion"]
            link = model_version_url(ui, promotion["registered_model"], promotion["version"])
            create_link_artifact(link, f"{promotion['registered_model']} version {promotion['version']}",
                                 description=f"the {name} model version in the MLflow registry")  # fmt: skip
