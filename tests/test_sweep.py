"""Sweeps: a grid of parameters, each configuration a tracked run with the sweep tag, ranked on validation; only the
winner is registered."""

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from flows.experiments import rank_configurations
from tasks.kinds import get
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


def test_configurations_rank_on_validation_in_the_metric_direction_never_on_test():
    """The test figures run the other way on purpose: they must not move a configuration."""
    rows = [{"depth": d, "eval_val_accuracy": v, "test_accuracy": 1 - v} for d, v in ((1, 0.7), (2, 0.9), (3, 0.8))]
    assert [row["depth"] for row in rank_configurations(rows, get("image"))] == [2, 3, 1]
    rows = [{"depth": d, "eval_val_wer": v, "test_wer": 1 - v} for d, v in ((1, 0.3), (2, 0.1), (3, 0.2))]
    assert [row["depth"] for row in rank_configurations(rows, get("asr"))] == [2, 3, 1]  # lower is better


def sweep(project, *flags: str) -> int:
    params = str(project / "params.yaml")
    grid = ["--grid", "model.depth=1,2", "--grid", "model.num_heads=1,2"]
    return main(["sweep", "--params", params, "--task", IMAGE, *grid, *flags])


@pytest.mark.slow  # four pipeline runs, then the same four from the cache: about two and a half minutes on 2 cores
def test_sweep_runs_every_configuration_ranks_on_validation_and_registers_the_winner_only(
    tiny_project, prefect_server, capsys
):
    assert sweep(tiny_project, "--no-register") == 0
    out = capsys.readouterr().out
    assert "ranked by eval_val_accuracy (validation)" in out and "no model registered (--no-register)" in out

    uri = f"sqlite:///{tiny_project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("attnflow-digit-classification").experiment_id],
        f"tags.sweep_id != '' and tags.task = '{IMAGE}'",
    )
    assert len(runs) == 4
    assert len({run.data.tags["sweep_id"] for run in runs}) == 1
    assert {run.data.tags["sweep_config"] for run in runs} == {
        f"model.depth={d},model.num_heads={h}" for d in (1, 2) for h in (1, 2)
    }
    assert not client.search_registered_models()  # --no-register: no configuration's model
    assert all(run.data.tags["registration"].startswith("not registered here") for run in runs)
    table = out.splitlines()[-5:-1]  # the four configurations, then the registration line
    accuracies = [float(line.split()[2]) for line in table]  # model.depth, model.num_heads, eval_val_accuracy
    assert accuracies == sorted(accuracies, reverse=True)
    by_id = {run.info.run_id: run for run in runs}
    logged = [by_id[line.split()[-1]].data.metrics["eval_val_accuracy"] for line in table]
    assert logged == pytest.approx(accuracies, abs=5e-5)  # the table prints 4 decimals

    assert sweep(tiny_project) == 0  # again, every stage from the cache: the winner is the run that made its model
    out = capsys.readouterr().out
    winner = out.splitlines()[-5].split()[-1]
    made_by = client.get_run(winner).data.tags["cached_from_run_id"]
    assert "winner: attnflow-digit-classification v1 -> champion: first model" in out
    assert client.get_model_version_by_alias("attnflow-digit-classification", "champion").run_id == made_by
    registered = {v.run_id for v in client.search_model_versions("name = 'attnflow-digit-classification'")}
    assert registered == {made_by}  # the winner's model, and its compact form; no other configuration's
    assert by_id[made_by].data.metrics["eval_val_accuracy"] == max(logged)
