"""The explain stage's scores of the last pipeline run in a project, as a Markdown table: one row per task and
attribution method, with deletion AUC (lower is better), its gap to the random map (higher is better), insertion
AUC (higher is better), the log-probability drop (sequence tasks; higher is better), localization and pointing game
(where the evidence is known: docs/explain.md).

    usage: python benchmarks/explain_table.py [PROJECT]     (default: this checkout; run `make run` first)

It reads the task runs of the newest "pipeline" run in the project's MLflow store (mlflow.db), the metrics
attn_<score>.<method> that tasks/evaluation/explain.py and explain_sequence.py log.
"""

import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from attn_models.attribution import METHODS
from attn_models.sequence_attribution import SEQUENCE_METHODS

COLUMNS = ("deletion_auc", "deletion_gap", "insertion_auc", "logprob_drop", "localization", "pointing")


def last_pipeline_runs(client: MlflowClient, metric: str = "attn_deletion_auc.random") -> list:
    """The task runs of the newest pipeline run that logged metric (default: the explain stage's)."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    parents = client.search_runs(experiments, "tags.mlflow.runName = 'pipeline'", order_by=["start_time DESC"],
                                 max_results=1)  # fmt: skip
    if not parents:
        raise SystemExit("no pipeline run in this project: run `make run` first")
    children = client.search_runs(experiments, f"tags.pipeline_run_id = '{parents[0].info.run_id}'")
    return sorted((run for run in children if metric in run.data.metrics),
                  key=lambda run: run.data.tags["task"])  # fmt: skip


def methods_of(metrics: dict) -> tuple[str, ...]:
    """The classifiers' methods or the sequence tasks', whichever the run's metrics hold, in their order."""
    return next(methods for methods in (METHODS, SEQUENCE_METHODS)
                if all(f"attn_deletion_auc.{method}" in metrics for method in methods))  # fmt: skip


def table(runs: list) -> str:
    lines = ["| task | method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for run in runs:
        metrics = run.data.metrics
        for method in methods_of(metrics):
            cells = [metrics.get(f"attn_{score}.{method}") for score in COLUMNS]
            shown = ["" if value is None else f"{value:.3f}" for value in cells]
            lines.append(f"| {run.data.tags['task']} | {method} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main(project: Path) -> None:
    client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').resolve()}")
    print(table(last_pipeline_runs(client)))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
