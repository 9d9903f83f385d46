"""The team's MLflow setup: a real `mlflow server` with its artifact proxy (docs/how-to/tracking-server.md). The
pipeline logs to it over HTTP; its runs, artifacts and registered models are read back through the server, and the
artifact files are found under the server's --artifacts-destination, not in the project that ran the pipeline."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tasks.kinds import get
from tasks.params import load_params
from tasks.tracking.registry import CHAMPION, registered_model_name
from tests.conftest import TEXT, mlflow_command, tiny_params, write_params

TASK = TEXT  # the quickest to train


@pytest.fixture
def tracking_server(tmp_path):
    """`mlflow server` on a free loopback port: runs in a sqlite database, artifacts proxied to a folder (runs'
    artifact URIs are mlflow-artifacts:/...). Yields (its URL, the artifact folder); stopped after."""
    home = tmp_path / "mlflow-server"
    home.mkdir()
    artifacts = home / "artifacts"
    with mlflow_command(
        home,
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(artifacts),
    ) as url:
        yield url, artifacts


@pytest.mark.integration
@pytest.mark.slow  # an mlflow server and a pipeline run: about 40 s
def test_the_pipeline_logs_runs_artifacts_and_models_to_a_tracking_server(
    tracking_server, tiny_project, prefect_server, monkeypatch
):
    from flows.pipeline import attention_pipeline
    from tasks.serving.server import load_registered

    url, artifact_root = tracking_server
    params = tiny_params()
    params["global"]["tasks"] = [TASK]
    params_path = write_params(tiny_project, params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)

    result = attention_pipeline(params_path=str(params_path))

    client = MlflowClient(url, registry_uri=url)
    run_id = result["tasks"][TASK]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and client.get_run(result["parent_run_id"]).info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri  # the proxy, not a path
    for name in get("text").metrics:
        assert run.data.metrics[name] == result["tasks"][TASK][name]

    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"params.yaml", "attention"} <= listed, listed
    attention = {a.path for a in client.list_artifacts(run_id, "attention")}
    assert {"attention/sample_00.png", "attention/attention_maps.json"} <= attention, attention
    downloaded = Path(client.download_artifacts(run_id, "params.yaml", str(tiny_project.parent / "downloads")))
    assert yaml.safe_load(downloaded.read_text())["global"]["tasks"] == [TASK]
    maps = json.loads(Path(client.download_artifacts(run_id, "attention/attention_maps.json")).read_text())
    assert maps

    # The files are on the server's side, under its artifact destination; nothing in the project.
    landed = {path.relative_to(artifact_root).as_posix() for path in artifact_root.rglob("*") if path.is_file()}
    assert any(path.endswith(f"{run_id}/artifacts/params.yaml") for path in landed), sorted(landed)[:20]
    assert any(path.endswith(f"{run_id}/artifacts/attention/sample_00.png") for path in landed)
    assert not (tiny_project / "mlartifacts").exists() and not (tiny_project / "mlflow.db").exists()

    # The model: registered through the server (champion of a first run) and loaded back from it, as serve-model does.
    name = registered_model_name(load_params(params_path), TASK)
    assert result["tasks"][TASK]["promotion"]["alias"] == CHAMPION
    assert any(path.endswith("MLmodel") for path in landed)  # the logged model's files went through the proxy
    model, info = load_registered(url, name, CHAMPION)
    assert info["run_id"] == run_id and info["task"] == TASK and info["kind"] == "text"
    assert len(model.predict(pd.DataFrame({"text": ["hello world", "bonjour le monde"]}))) == 2


@pytest.mark.parametrize("command", [["run"], ["sweep", "--task", TEXT, "--grid", "train.lr=0.001"],
                                     ["compare", "--task", TEXT], ["model", "serve", "--task", TEXT]])  # fmt: skip
def test_a_tracking_server_that_does_not_answer_is_named_at_once(command, tiny_project, monkeypatch, capsys):
    """Before anything starts: MLflow itself would retry for minutes, then end in a traceback."""
    from flows.cli import main
    from tasks.errors import EXIT_INVALID
    from tasks.scheduling.server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    assert main([*command, "--params", str(tiny_project / "params.yaml")]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert f"no MLflow tracking server answers at {url}" in err and "MLFLOW_TRACKING_URI" in err, err
    assert "Traceback" not in err and not (tiny_project / "mlflow.db").exists()
