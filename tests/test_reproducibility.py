"""Stage caching across flow runs, lineage tags, and `reproduce` (match, mismatch, old data, changed code).

The tests share one tiny project (text and image) and run in order: each step changes it a little.
"""

import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.cli import main
from flows.experiments import reproduce
from flows.pipeline import attention_pipeline
from tasks.errors import EXIT_CODE_CHANGED, EXIT_FAILED
from tasks.lineage import data_md5
from tests.conftest import CACHED_STAGES, IMAGE, TEXT, make_tiny_project, stage_states

LINEAGE_TAGS = {
    "git_sha",
    "git_dirty",
    "data_md5",
    "params_hash",
    "lock_hash",
    "python_version",
    "torch_version",
    "device",
    "prefect_flow_run_id",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = make_tiny_project(tmp_path_factory.mktemp("repro") / "project")
        edit_params(project, lambda p: p["global"].update(tasks=[TEXT, IMAGE]))
        commit(project, "two tasks")
        first = attention_pipeline(params_path=str(project / "params.yaml"))
        yield project, first


def edit_params(project, edit) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def commit(project, message: str) -> None:
    subprocess.run(["git", "add", "params.yaml"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=project, check=True)


def mlflow_client(project) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def logged_models(client: MlflowClient, run_id: str) -> list:
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")


def run_pipeline(project) -> dict:
    return attention_pipeline(params_path=str(project / "params.yaml"))


@pytest.fixture(scope="module")
def second(project):
    """The same pipeline again, nothing changed."""
    project, _ = project
    return run_pipeline(project)


def test_second_run_with_nothing_changed_is_cached(project, second):
    project, first = project
    client = mlflow_client(project)
    for name, result in second["tasks"].items():
        original = first["tasks"][name]
        assert result["cached_from_run_id"] == original["run_id"]
        assert result["test_accuracy"] == original["test_accuracy"]
        run = client.get_run(result["run_id"])
        assert run.data.tags["cached_from_run_id"] == original["run_id"]
        assert run.data.metrics["test_accuracy"] == original["test_accuracy"]
        assert run.data.metrics["eval_val_accuracy"] == result["eval_val_accuracy"] == original["eval_val_accuracy"]
        assert not logged_models(client, result["run_id"])  # nothing was trained or logged again


def test_cached_stages_show_as_cached_in_prefect(project, second):
    """Every stage of the second run (and only of that run) is Cached on the Prefect server."""
    project, first = project
    assert stage_states(project, second) == {f"{stage}{m}": "Cached" for stage in CACHED_STAGES for m in (TEXT, IMAGE)}
    assert set(stage_states(project, first).values()) == {"Completed"}


def test_every_run_carries_its_lineage(project):
    project, first = project
    client = mlflow_client(project)
    for result in first["tasks"].values():
        tags = client.get_run(result["run_id"]).data.tags
        assert set(tags) >= LINEAGE_TAGS
        assert tags["data_md5"] == data_md5(project) and tags["git_dirty"] == "false" and tags["device"] == "cpu"
        assert {"params.yaml", "data.dvc"} <= {a.path for a in client.list_artifacts(result["run_id"])}
        assert logged_models(client, result["run_id"])


def test_reproduce_matches_exactly(project):
    project, first = project
    original = first["tasks"][IMAGE]["run_id"]
    result = reproduce(original, params_path=str(project / "params.yaml"))
    assert result["match"], result["metrics"]
    assert result["run_id"] != original
    tags = mlflow_client(project).get_run(result["run_id"]).data.tags
    assert tags["reproduced_from_run_id"] == original
    assert "cached_from_run_id" not in tags  # reproduce trains again


def test_changing_one_task_reruns_only_that_task(project):
    project, first = project
    edit_params(project, lambda p: p["tasks"][IMAGE]["train"].update(lr=0.01))
    commit(project, "image lr")
    result = run_pipeline(project)
    assert result["tasks"][IMAGE]["cached_from_run_id"] is None
    assert result["tasks"][TEXT]["cached_from_run_id"] == first["tasks"][TEXT]["run_id"]


def test_reproduce_restores_an_old_data_version(project):
    project, first = project
    old_md5 = first["data_md5"]
    edit_params(project, lambda p: p["tasks"][TEXT]["data"]["builtin"].update(samples_per_class=25))
    commit(project, "more text data")
    regenerated = run_pipeline(project)
    assert regenerated["data_md5"] != old_md5

    result = reproduce(first["tasks"][TEXT]["run_id"], params_path=str(project / "params.yaml"))
    assert result["data_md5"] == result["restored_data_md5"] == old_md5
    assert result["match"], result["metrics"]
    assert data_md5(project) == regenerated["data_md5"]  # the workspace is back on the current version


def test_reproduce_reports_a_mismatch(project, capsys):
    project, first = project
    original = first["tasks"][IMAGE]["run_id"]
    mlflow_client(project).log_metric(original, "test_macro_f1", 0.123456)  # the record now disagrees
    assert main(["reproduce", original, "--params", str(project / "params.yaml")]) == EXIT_FAILED
    assert "MISMATCH" in capsys.readouterr().out


def test_reproduce_stops_when_torch_differs_from_the_runs(project, capsys):
    """Exact results need the same torch build: why pyproject pins torch."""
    project, first = project
    run_id, client = first["tasks"][TEXT]["run_id"], mlflow_client(project)
    recorded = client.get_run(run_id).data.tags["torch_version"]
    client.set_tag(run_id, "torch_version", "2.10.0+cpu")
    try:
        assert main(["reproduce", run_id, "--params", str(project / "params.yaml")]) == EXIT_CODE_CHANGED
    finally:
        client.set_tag(run_id, "torch_version", recorded)
    error = capsys.readouterr().err
    assert f"torch 2.10.0+cpu (the run) vs {recorded} (here)" in error and "--allow-code-change" in error


def test_reproduce_stops_when_the_code_changed(project, capsys):
    project, first = project
    (project / "NOTES.md").write_text("a change after the run\n")
    code = main(["reproduce", first["tasks"][TEXT]["run_id"], "--params", str(project / "params.yaml")])
    assert code == EXIT_CODE_CHANGED
    assert "--allow-code-change" in capsys.readouterr().err
