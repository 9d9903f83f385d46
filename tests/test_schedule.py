"""Scheduled runs on a real Prefect server: `attnflow schedule serve` registers the deployment with params.yaml's
schedule, a run triggered through the deployment is the same pipeline (same MLflow runs and lineage tags),
and `attnflow schedule status` shows it."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.cli import main
from flows.schedule import deployments
from tasks.scheduling.server import start_server, stop_server, wait_until_up
from tests.conftest import BUILTIN_TASKS, IMAGE, REPO, TEXT, stop_process_group, tiny_params, write_params

DEPLOYMENT = "attention-pipeline/scheduled"
MONITOR_DEPLOYMENT = "monitor/scheduled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`prefect server start` on a free port with its own PREFECT_HOME; scheduler loop shortened for the tests."""
    home, port = tmp_path_factory.mktemp("server-home"), free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")
        process = start_server(home, port)
    try:
        wait_until_up(api_url, process, home / "server.log")
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        stop_server(process)


@pytest.fixture
def serving(tiny_project, real_server, tmp_path):
    """`attnflow schedule serve --params <tiny>/params.yaml` in a subprocess against the test server."""
    params = tiny_params()
    params["global"]["tasks"] = [TEXT, IMAGE]
    params["global"]["schedule"] = {"cron": "30 4 * * *", "timezone": "Europe/Berlin", "per_task": False}
    params_path = write_params(tiny_project, params)
    env = {
        **os.environ,
        "PREFECT_API_URL": real_server,
        "PREFECT_HOME": str(tmp_path / "serve-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "schedule", "serve", "--params", str(params_path)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield params_path, process, log
    finally:
        stop_process_group(process)  # the serve process and the flow runs it started


def wait_for_deployment(process, log: Path, timeout: float = 180):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"attnflow schedule serve exited:\n{log.read_text()[-3000:]}"
            try:
                return client.read_deployment_by_name(DEPLOYMENT)
            except ObjectNotFound:
                time.sleep(1)
    raise AssertionError(f"no deployment after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow  # about 70 s: a served deployment's run of the pipeline (make test keeps its headroom)
def test_served_deployment_has_the_schedule_and_its_run_is_the_pipeline(serving, tiny_project, capsys):
    params_path, process, log = serving
    deployment = wait_for_deployment(process, log)
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "30 4 * * *",
        "Europe/Berlin",
        True,
    )
    assert deployment.parameters == {"params_path": str(params_path), "tasks": None}

    flow_run = run_deployment(DEPLOYMENT, timeout=300)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{log.read_text()[-3000:]}"

    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("attnflow")
    [parent] = client.search_runs([experiment.experiment_id], f"tags.prefect_flow_run_id = '{flow_run.id}'")
    assert parent.info.status == "FINISHED" and parent.data.tags["tasks"] == f"{TEXT},{IMAGE}"
    task_experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith("attnflow-")]
    children = client.search_runs(task_experiments, f"tags.pipeline_run_id = '{parent.info.run_id}'")
    assert sorted(run.data.tags["kind"] for run in children) == ["image", "text"]
    for run in children:
        assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
        assert run.data.tags["data_md5"] == parent.data.tags["data_md5"]
        assert len(run.data.tags["git_sha"]) == 40

    with get_client(sync_client=True) as prefect:
        monitoring = prefect.read_deployment_by_name(MONITOR_DEPLOYMENT)  # served beside the pipeline
    assert monitoring.parameters == {"params_path": str(params_path)}
    assert [s.schedule.cron for s in monitoring.schedules] == ["0 * * * *"]

    assert main(["schedule", "status", "--params", str(params_path)]) == 0
    out = capsys.readouterr().out
    assert DEPLOYMENT in out and "30 4 * * * (Europe/Berlin)" in out and "next run:" in out
    assert "monitor/scheduled" in out and "0 * * * * (Europe/Berlin)" in out
    assert "Completed" in out and flow_run.name in out


def test_the_server_schedules_runs_per_task(real_server, tiny_project):
    params = tiny_params()
    params["global"]["schedule"] = {"cron": "0 * * * *", "timezone": "UTC", "per_task": True}
    params_path = write_params(tiny_project, params)
    ids = {f"{deployment.flow_name}/{deployment.name}": deployment.apply() for deployment in deployments(params_path)}
    assert sorted(ids) == sorted([*(f"{DEPLOYMENT}-{m}" for m in BUILTIN_TASKS.values()), MONITOR_DEPLOYMENT])
    with get_client(sync_client=True) as client:
        assert client.read_deployment(ids[f"{DEPLOYMENT}-{IMAGE}"]).parameters["tasks"] == [IMAGE]
        [schedule] = client.read_deployment(ids[MONITOR_DEPLOYMENT]).schedules  # global.monitor.cron, the default
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 * * * *", "UTC")
        deadline = time.monotonic() + 30
        while (
            not (
                runs := client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(ids.values()))),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                    limit=10,
                )
            )
            and time.monotonic() < deadline
        ):
            time.sleep(1)
    assert runs and all(run.state.is_scheduled() and run.expected_start_time.minute == 0 for run in runs)


def test_the_server_takes_a_query_without_a_limit(real_server, tiny_project):
    """Prefect's clients send `limit: null` when no limit is given (`prefect deploy` and `flow.deploy` do); FastAPI
    0.151 to 0.154 reject it with HTTP 422, which is why pyproject keeps fastapi below 0.151."""
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(limit=None)
        flow_runs = client.read_flow_runs(limit=None)
    assert isinstance(deployments, list) and isinstance(flow_runs, list)
