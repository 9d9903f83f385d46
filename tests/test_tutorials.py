"""The own-CSV tutorial (docs/tutorials/own-text-csv.md) as a user follows it: its CSV layout, its params snippet and
its commands, run in a fresh process on a tiny CSV made here. The snippet is added to a tiny project's params.yaml
as written, with only the training cut short (as tiny_params cuts every built-in task's)."""

import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, make_tiny_project, write_params

pytestmark = pytest.mark.integration  # the command line, run in its own process as a user runs it

TUTORIAL = REPO / "docs" / "tutorials" / "own-text-csv.md"
WORDS = {
    "positive": ["great", "lovely", "works", "happy", "excellent", "sturdy", "bright", "fast"],
    "negative": ["broke", "awful", "slow", "refund", "cracked", "useless", "dull", "late"],
}


def tutorial_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL.read_text(), re.S)


def attnflow_commands() -> list[list[str]]:
    """The tutorial's commands, each as its arguments after `.venv/bin/attnflow`."""
    lines = [line for block in tutorial_blocks("bash") for line in block.splitlines() if line.strip()]
    assert all(line.startswith(".venv/bin/attnflow ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def test_the_own_csv_tutorial_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = make_tiny_project(tmp_path / "project")
    header = tutorial_blocks("text")[0].splitlines()[0]
    assert header == "text,label"
    rows = [
        f"{' '.join(words[(n + k) % len(words)] for k in range(4))} item {n},{label}"
        for label, words in WORDS.items()
        for n in range(24)
    ]
    (project / "reviews.csv").write_text("\n".join([header, *rows]) + "\n")

    [snippet] = [yaml.safe_load(block) for block in tutorial_blocks("yaml") if block.startswith("tasks:")]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tasks"].update(snippet["tasks"])
    params["tasks"]["reviews"]["train"].update(max_steps=4, warmup_epochs=0)  # a short training, as tiny_params'
    write_params(project, params)

    own = ("PREFECT_API", "PREFECT_LOGGING", "MLFLOW_")  # as a user's shell has it: none of the test session's own
    env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
    env.update(PREFECT_HOME=str(project / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO))
    outputs = []
    for arguments in attnflow_commands():
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", *arguments],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"attnflow {' '.join(arguments)}:\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    assert (project / "data" / "reviews" / "train.csv").is_file()
    assert "reviews" in outputs[0] and "eval_val_accuracy" in outputs[-1]
