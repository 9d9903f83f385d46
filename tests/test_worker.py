"""A worker on a work pool (docs/how-to/work-pools.md): `attnflow schedule deploy --pool` puts the pipeline's
deployments on a `process` work pool of a real Prefect server, a real `prefect worker start --pool` process picks up
a triggered run and executes it in its own process, and the run is the pipeline (its MLflow runs, in the project's
store)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import get_current_settings

from flows.cli import main
from flows.schedule import CODE_ROOT
from tasks.errors import EXIT_INVALID
from tests.conftest import TEXT, stop_process_group, tiny_params, write_params

POOL = "attnflow-test-pool"
DEPLOYMENT = "attention-pipeline/scheduled"
RUN_TIMEOUT_S = 300
NEVER = "0 0 1 1 *"  # the deployments' schedules: no scheduled run competes with the triggered one during the test


@pytest.fixture
def worker(prefect_server, tmp_path):
    """A `process` work pool on the session's Prefect server and `prefect worker start --pool` on it, in its own
    session (stopped with the flow-run processes it started); yields the worker's log file."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    env = {**os.environ, "PREFECT_API_URL": get_current_settings().api.url, "PREFECT_HOME": str(tmp_path / "worker"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # the runs go to the project's own store
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=tmp_path,  # not the code's folder: the deployment says where the code is
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process, log
    finally:
        stop_process_group(process)  # the worker and the flow runs it started


def wait_until_final(flow_run_id, process, log: Path):
    """The flow run once it is in a final state (bounded); fails early if the worker died."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state.is_final():
                return flow_run
            time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} not done after {RUN_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_a_worker_on_a_process_pool_executes_a_deployment_run(worker, tiny_project, capsys):
    process, log = worker
    params = tiny_params()
    params["global"]["tasks"] = [TEXT]
    params["global"]["schedule"] = {"cron": NEVER, "timezone": "UTC", "per_task": False}
    params["global"]["monitor"]["cron"] = NEVER
    params_path = write_params(tiny_project, params)

    assert main(["schedule", "deploy", "--params", str(params_path), "--pool", POOL]) == 0
    assert f"deployed {DEPLOYMENT} to the work pool {POOL!r}" in capsys.readouterr().out
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        assert deployment.work_pool_name == POOL and deployment.parameters["params_path"] == str(params_path)
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(CODE_ROOT)}}
        ]
        assert client.read_deployment_by_name("monitor/scheduled").work_pool_name == POOL
        triggered = client.create_flow_run_from_deployment(deployment.id)

    flow_run = wait_until_final(triggered.id, process, log)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{log.read_text()[-3000:]}"
    assert flow_run.work_pool_name == POOL and flow_run.infrastructure_pid  # a worker of the pool started it

    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    [parent] = client.search_runs(experiments, f"tags.prefect_flow_run_id = '{flow_run.id}'")
    [child] = client.search_runs(experiments, f"tags.pipeline_run_id = '{parent.info.run_id}'")
    assert parent.info.status == child.info.status == "FINISHED" and child.data.tags["kind"] == "text"
    assert "test_accuracy" in child.data.metrics
    pid = int(parent.data.tags["attnflow_pid"])  # the run's own process, which the worker started
    assert pid != os.getpid() and flow_run.infrastructure_pid.split(":")[-1] == str(pid), flow_run.infrastructure_pid


@pytest.mark.integration
def test_deploy_names_a_missing_work_pool(prefect_server, tiny_project, capsys):
    params_path = tiny_project / "params.yaml"
    assert main(["schedule", "deploy", "--params", str(params_path), "--pool", "no-such-pool"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "no work pool 'no-such-pool'" in err and "prefect work-pool create no-such-pool --type process" in err
    assert "Traceback" not in err
    assert (
        main(["schedule", "deploy", "--params", str(params_path), "--pool", ""]) == EXIT_INVALID
    )  # `make deploy` without POOL
    assert "--pool needs the name of a work pool" in capsys.readouterr().err
