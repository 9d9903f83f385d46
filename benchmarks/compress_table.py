"""The compress stage's variants of the last pipeline run in a project, as a Markdown table: one row per task and
variant, with size on disk, p50/p95 latency at batch 1 and 32 (ms, CPU, global.compress.threads threads), the validation
metric the stage scores and chooses by (classifiers: accuracy; translation: BLEU of greedy decoding; asr: WER of greedy
decoding), its change from float, how many times smaller and faster (batch 32) than float the variant is, and which
variant the run registered as `compact`.

    usage: python benchmarks/compress_table.py [PROJECT]     (default: this checkout; run `make run` first)

It reads the task runs of the newest "pipeline" run in the project's MLflow store (mlflow.db): the table each
compress stage logged (compress/variants.json) and the tag compact_variant.
"""

import json
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks.explain_table import last_pipeline_runs

HEADER = ("task", "variant", "size MB", "p50 b1 ms", "p95 b1 ms", "p50 b32 ms", "p95 b32 ms", "metric", "value",
          "change", "x smaller", "x faster b32", "compact")  # fmt: skip


def variants(client: MlflowClient, run) -> dict:
    """The run's compress/variants.json (its own, or the run's that made it when the stage was cached)."""
    source = run.data.tags.get("compressed_in_run_id", run.info.run_id)
    return json.loads(Path(client.download_artifacts(source, "compress/variants.json")).read_text())


def table(client: MlflowClient, runs: list) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
    for run in runs:
        logged = variants(client, run)
        reference = logged["variants"][0]
        for row in logged["variants"]:
            cells = [
                run.data.tags["task"],
                row["variant"],
                f"{row['size_mb']:.3f}",
                *(f"{row[key]:.2f}" for key in ("p50_ms_b1", "p95_ms_b1", "p50_ms_b32", "p95_ms_b32")),
                logged["metric"],
                f"{row['metric']:.4f}",
                f"{row['change']:+.4f}",
                f"{reference['size_mb'] / row['size_mb']:.2f}",
                f"{reference['p50_ms_b32'] / row['p50_ms_b32']:.2f}",
                "yes" if run.data.tags.get("compact_variant") == row["variant"] else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(project: Path) -> None:
    client = MlflowClient(f"sqlite:///{(project / 'mlflow.db').resolve()}")
    runs = last_pipeline_runs(client, "compress_metric.float")
    if not runs:
        raise SystemExit("the last pipeline run has no compressed task: is global.compress.enabled false?")
    print(table(client, runs))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
