"""`attnflow compare` ranks the runs of a task by their validation accuracy (eval_val_accuracy), and says so."""

import csv

from flows.cli import main
from tests.conftest import IMAGE


def test_compare_ranks_the_two_runs(pipeline_runs, tmp_path, capsys):
    project, first, second = pipeline_runs
    markdown, table = tmp_path / "runs.md", tmp_path / "runs.csv"
    assert (
        main(
            [
                "compare",
                "--task",
                "digit-classification",
                "--params",
                str(project / "params.yaml"),
                "--sweep",
                "s1",
                "--markdown",
                str(markdown),
                "--csv",
                str(table),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2
    assert "decided on: validation (eval_val_accuracy)" in printed
    accuracies = [float(row["eval_val_accuracy"]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True) and all(row["test_accuracy"] for row in rows)
    ids = {first["tasks"][IMAGE]["run_id"][:8], second["tasks"][IMAGE]["run_id"][:8]}
    assert {row["run_id"] for row in rows} == ids
    assert "train.lr" in rows[0] and {row["train.lr"] for row in rows} == {"0.005", "1e-06"}  # what differs
    assert {row["model.pool"] for row in rows} == {"cls", "attention"}
    assert "model.depth" not in rows[0]  # what does not differ is left out
    for run_id in ids:
        assert run_id in printed and run_id in markdown.read_text()
    assert printed.index(rows[0]["run_id"]) < printed.index(rows[1]["run_id"])


def test_compare_names_the_tasks_when_unknown(pipeline_runs, capsys):
    project = pipeline_runs[0]
    assert main(["compare", "--task", "nope", "--params", str(project / "params.yaml")]) == 2
    assert "language-id" in capsys.readouterr().err
