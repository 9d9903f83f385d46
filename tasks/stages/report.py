"""Report stage: a pipeline run's results in the Prefect UI, as artifacts of its flow run: a table of every
modality's test metrics, the promotion decisions in Markdown, and links to each modality's MLflow run and to the
registered model version it made (on the MLflow UI at global.tracking.ui_url)."""

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.modalities import get
from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect, model_version_url, run_url, ui_url

RESULTS_KEY = "attnflow-results"  # the table's key: the Prefect UI's Artifacts page keeps its versions, one per run


def results_table(params: Params, results: dict[str, dict], failed: list[str]) -> list[dict]:
    """One row per modality: its task, test metrics (rounded), promotion, and MLflow run."""
    rows = []
    for modality, result in results.items():
        metrics = {name: round(result[name], 4) for name in get(modality).metrics}
        if result["promotion"]:
            promotion = result["promotion"]["alias"]
        else:  # a sweep's configuration is registered by the sweep, if it wins
            cached = result["cached_from_run_id"]
            promotion = f"cached from {cached}" if cached else "not registered (sweep member)"
        rows.append({"modality": modality, "task": params.section(modality).task, **metrics, "promotion": promotion,
                     "mlflow_run": result["run_id"]})  # fmt: skip
    return rows + [{"modality": m, "task": params.section(m).task, "promotion": "FAILED"} for m in failed]


def promotions_markdown(results: dict[str, dict], ui: str) -> str:
    lines = ["# Promotion decisions", ""]
    for modality, result in results.items():
        promotion = result["promotion"]
        if promotion is None and result["cached_from_run_id"] is None:
            lines.append(f"- **{modality}**: not registered: its sweep registers the winner only")
            continue
        if promotion is None:
            lines.append(
                f"- **{modality}**: nothing trained (every stage cached from run `{result['cached_from_run_id']}`)"
            )
            continue
        link = model_version_url(ui, promotion["registered_model"], promotion["version"])
        lines.append(f"- **{modality}**: [{promotion['registered_model']} version {promotion['version']}]({link}) is "
                     f"**{promotion['alias']}**: {promotion['reason']}")  # fmt: skip
    return "\n".join(lines) + "\n"


@task(name="report")
def report_results(params: Params, root: Path, results: dict[str, dict], failed: list[str]) -> None:
    ui = ui_url(root, params)
    create_table_artifact(results_table(params, results, failed), key=RESULTS_KEY,
                          description="Test metrics of each modality of this pipeline run")  # fmt: skip
    create_markdown_artifact(promotions_markdown(results, ui), description="Which model each task promoted, and why")
    for modality, result in results.items():
        _, experiment_id = connect(root, params, modality)
        create_link_artifact(run_url(ui, experiment_id, result["run_id"]), f"{modality}: MLflow run {result['run_id']}",
                             description=f"the {modality} run in the MLflow UI")  # fmt: skip
        if result["promotion"]:
            promotion = result["promotion"]
            link = model_version_url(ui, promotion["registered_model"], promotion["version"])
            create_link_artifact(link, f"{promotion['registered_model']} version {promotion['version']}",
                                 description=f"the {modality} model version in the MLflow registry")  # fmt: skip
