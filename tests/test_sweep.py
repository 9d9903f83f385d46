"""Sweeps: a grid of parameters, each configuration a tracked run with the sweep tag, ranked."""

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from tasks.params import ParamsError, load_params, parse_grid, with_overrides
from tests.conftest import IMAGE, REPO


def test_grid_parsing_and_overrides_are_validated():
    assert parse_grid(["model.depth=1,2", "train.lr=0.001"]) == {"model.depth": [1, 2], "train.lr": [0.001]}
    params = load_params(REPO / "params.yaml")
    assert with_overrides(params, IMAGE, {"model.depth": 1}).task(IMAGE).model.depth == 1
    with pytest.raises(ParamsError, match=f"tasks.{IMAGE}.model.dept: no such key"):
        with_overrides(params, IMAGE, {"model.dept": 1})
    with pytest.raises(ParamsError, match="depth"):
        with_overrides(params, IMAGE, {"model.depth": 0})
    with pytest.raises(ParamsError, match="must look like"):
        parse_grid(["model.depth"])


@pytest.mark.slow  # four pipeline runs: about two minutes on 2 cores
def test_sweep_runs_every_configuration_and_ranks_them(tiny_project, prefect_server, capsys):
    params = str(tiny_project / "params.yaml")
    code = main(
        [
            "sweep",
            "--params",
            params,
            "--task",
            IMAGE,
            "--grid",
            "model.depth=1,2",
            "--grid",
            "model.num_heads=1,2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ranked by test_accuracy" in out

    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("attnflow-digit-classification").experiment_id],
        f"tags.sweep_id != '' and tags.task = '{IMAGE}'",
    )
    assert len(runs) == 4
    assert len({run.data.tags["sweep_id"] for run in runs}) == 1
    assert {run.data.tags["sweep_config"] for run in runs} == {
        f"model.depth={d},model.num_heads={h}" for d in (1, 2) for h in (1, 2)
    }
    accuracies = [float(line.split()[2]) for line in out.splitlines()[-4:]]
    assert accuracies == sorted(accuracies, reverse=True)
