"""Compare the runs of one task: key params (those that differ between the runs) and metrics, best first by the
primary metric on the validation split (what promotion decides on); the test metrics are shown, never ranked by."""

import csv
import io

from mlflow.tracking import MlflowClient

from tasks.tracking.model_card import decided_on

TRAINING_METRICS = ("best_val_accuracy", "num_parameters")


def explain_metrics(spec) -> tuple[str, ...]:
    """How much better than a random map the attention explains the model (the explain stage), where it has one:
    the deletion gaps of the spec's two headline methods (classifiers: the gradient-weighted map and rollout;
    sequence tasks: the gradient-weighted and the plain cross-attention)."""
    return tuple(f"attn_deletion_gap.{method}" for method in spec.explain_headline) if spec.explainer else ()


def compare_runs(client: MlflowClient, experiment_id: str, spec, sweep: str | None = None) -> list[dict]:
    """One row per finished run of a task (spec: its kind), sorted by the kind's primary metric on the validation
    split (best first, in its direction; runs from before it was logged last)."""
    metrics = (spec.val_metric, *spec.metrics, *TRAINING_METRICS, *explain_metrics(spec))  # the first ranks
    query = "attributes.status = 'FINISHED'" + (f" AND tags.sweep_id = '{sweep}'" if sweep else "")
    runs = client.search_runs([experiment_id], query, max_results=1000)
    differing = sorted(
        {key for run in runs for key in run.data.params if len({r.data.params.get(key) for r in runs}) > 1}
    )
    rows = [
        {
            "run": run.info.run_name,
            "run_id": run.info.run_id[:8],
            "promotion": run.data.tags.get("promotion", ""),
            **{key: run.data.params.get(key, "") for key in differing},
            **{key: run.data.metrics.get(key) for key in metrics},
        }
        for run in runs
    ]
    return sorted(rows, key=lambda row: spec.rank_key(row[metrics[0]]))


def ranking(spec) -> str:
    """The line above the table: which split and figure ranked it (spec: the task's kind)."""
    return f"best first; decided on: {decided_on(spec)}"


def cell(value) -> str:
    if value is None:
        return "-"
    return (
        f"{value:.4f}"
        if isinstance(value, float) and not value.is_integer()
        else (f"{value:.0f}" if isinstance(value, float) else str(value))
    )


def as_table(rows: list[dict]) -> str:
    """A plain aligned table for the terminal."""
    if not rows:
        return "(no finished runs)"
    columns = list(rows[0])
    cells = [columns] + [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells)


def as_markdown(rows: list[dict]) -> str:
    columns = list(rows[0]) if rows else ["run"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]) + "\n"


def as_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["run"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
