"""Stopping a run and running two at once, as a user does it: `attnflow run` in its own process, stopped during
training by Ctrl-C (SIGINT to its process group, as a terminal sends it), by SIGTERM (as `timeout` and service
managers send it, to the group or to the process alone) or by SIGKILL, or started twice on one project.

Ctrl-C to the group is in `make test`; the other stops and the two runs at once are slow (several real runs each):
`make test-slow`, and CI."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import IMAGE, REPO, tiny_params, write_params
from tests.test_temporary_server import processes_with_env

pytestmark = pytest.mark.integration


def as_a_terminal_starts_it() -> None:
    """In the command's process, before it runs: SIGINT does what Ctrl-C does in a terminal, even when pytest itself
    ignores it (a shell without job control starts its background commands ignoring SIGINT, and a command inherits
    that: Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(project, *arguments: str, log: str = "run.log") -> subprocess.Popen:
    """`attnflow run` in a process group of its own, as a terminal starts a command: a signal to the group reaches
    the command and everything it started in the group, and not pytest."""
    own = ("PREFECT_API", "PREFECT_LOGGING", "MLFLOW_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
    env.update(PREFECT_HOME=str(project / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "flows.cli", "run", "--task", IMAGE, *arguments]
    output = (project / log).open("w")
    return subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=as_a_terminal_starts_it,
    )


def wait_for(project, text: str, process: subprocess.Popen, log: str = "run.log", timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while text not in (project / log).read_text():
        assert process.poll() is None and time.monotonic() < deadline, (project / log).read_text()[-3000:]
        time.sleep(0.2)


def runs(project) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def long_training_params() -> dict:
    """The tiny params, with an image training of many epochs (a minute or more): time to stop it."""
    params = tiny_params()
    params["tasks"][IMAGE]["train"].update(epochs=40, max_batches_per_epoch=None)
    return params


@pytest.fixture
def long_training(tiny_project):
    write_params(tiny_project, long_training_params())
    return tiny_project


def prefect_states(project, table: str) -> set[str]:
    """The states of the temporary server's flow or task runs, read from its database once it is gone (Prefect's
    own schema: an upgrade that changes it fails here, loudly)."""
    with sqlite3.connect(project / ".prefect" / "prefect.db") as database:
        return {state for (state,) in database.execute(f"select state_type from {table}")}


def exit_code(process: subprocess.Popen, timeout: float) -> int | None:
    """Its exit code; None when it still runs after timeout seconds, and then it is killed with its group, so that a
    failed test leaves no run behind."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


@pytest.mark.parametrize(
    ("signum", "send"),
    [
        (signal.SIGINT, os.killpg),  # Ctrl-C in a terminal
        pytest.param(signal.SIGTERM, os.killpg, marks=pytest.mark.slow),  # `timeout`, systemd, kill -- -PGID
        pytest.param(signal.SIGINT, os.kill, marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, os.kill, marks=pytest.mark.slow),  # kill PID
    ],
    ids=["sigint-group", "sigterm-group", "sigint-process", "sigterm-process"],
)
def test_a_stop_closes_every_run_and_leaves_no_process_within_seconds(long_training, signum, send):
    """Stopped during training, the command exits 130 within seconds: its MLflow runs closed as KILLED, its Prefect
    flow and task runs marked crashed, and none of the processes it started left (a zombie counts as left).

    A signal to the group reached the temporary Prefect server too, when it shared the group: the command's orderly
    stop then retried the dead server's API for minutes, and exited 1 with a run left FAILED and its flow runs
    RUNNING. `attnflow reproduce`, `sweep` and `monitor` start and stop the server on the same path
    (flows/cli.py ``prefect_server_for``), so `run` stands for them."""
    project = long_training
    process = start(project)
    wait_for(project, f"{IMAGE} epoch 1/40", process)
    stop_and_check(project, process, signum, send)
    assert prefect_states(project, "flow_run") == {"CRASHED"}  # the pipeline's flow run and the task's subflow run
    assert prefect_states(project, "task_run") == {"COMPLETED", "CRASHED"}  # data prepared and versioned; training


@pytest.mark.slow
def test_sigterm_stops_a_run_on_a_dask_cluster_within_seconds(tiny_project):
    """On a local Dask cluster (global.executor), the worker still training is stopped with the cluster, not waited
    for: the command once asked every worker to send its last logs on the way out, and that request waited behind
    the training, for minutes. The worker is killed by its nanny, so the Prefect runs it held stay RUNNING."""
    project = tiny_project
    params = long_training_params()
    params["global"]["executor"] = {"kind": "dask", "workers": 1}
    write_params(project, params)
    process = start(project)
    wait_for(project, f"{IMAGE} epoch 1/40", process)
    stop_and_check(project, process, signal.SIGTERM, os.kill)


def stop_and_check(project, process: subprocess.Popen, signum: int, send) -> None:
    """Send signum (to the process, or its group: send is os.kill or os.killpg), then check that the command exits
    130 within 15 s, with every MLflow run closed as KILLED, and that no process it started is left."""
    started = psutil.Process(process.pid).children(recursive=True)
    assert any("uvicorn" in child.cmdline() for child in started)  # the temporary Prefect server at least
    stopped, before = time.monotonic(), len((project / "run.log").read_text())
    send(process.pid, signum)
    code = exit_code(process, timeout=60)
    seconds = time.monotonic() - stopped
    log = (project / "run.log").read_text()
    after = log[before:]  # what the command printed from the signal on: its first lines tell how it took it
    assert code == 130 and seconds < 15, (
        f"exit {code} after {seconds:.1f} s; from the signal on:\n{after[:1500]}\n[...]\n{after[-1500:]}"
    )
    name = signal.Signals(signum).name
    assert f"error: interrupted by {'Ctrl-C' if signum == signal.SIGINT else name}" in log
    assert {(run.info.status, run.data.tags["error"]) for run in runs(project)} == {
        ("KILLED", f"interrupted by {name}")
    }
    _, left = psutil.wait_procs(started, timeout=3)
    assert not left, [(child.pid, child.status(), child.cmdline()) for child in left]
    assert not processes_with_env(f"PREFECT_HOME={project / '.prefect'}")  # nor anything started on the way out


@pytest.mark.slow
def test_after_sigkill_the_next_run_closes_what_was_left_running_and_resumes_training(tiny_project):
    """Killed during training, the next run closes the runs the dead process left RUNNING, resumes training after its
    last finished epoch, and ends with the test metrics of an uninterrupted run (trained afterwards with --force)."""
    project = tiny_project
    params = tiny_params()
    params["tasks"][IMAGE]["train"].update(epochs=6, max_batches_per_epoch=None)
    write_params(project, params)
    process = start(project)
    wait_for(project, f"{IMAGE} epoch 3/6", process)
    process.kill()
    process.wait()
    time.sleep(2)
    assert not processes_with_env(f"PREFECT_HOME={project / '.prefect'}")  # the server died with its parent
    left = {run.info.run_id for run in runs(project) if run.info.status == "RUNNING"}
    assert len(left) == 2  # the pipeline run and the image run

    again = start(project, log="again.log")
    assert again.wait(timeout=300) == 0, (project / "again.log").read_text()[-3000:]
    log = (project / "again.log").read_text()
    assert re.search(rf"{IMAGE}: resuming training after epoch [2-5]/6, saved by an interrupted run", log), log[-3000:]
    closed = {run.info.run_id: run for run in runs(project) if run.info.run_id in left}
    assert {run.info.status for run in closed.values()} == {"KILLED"}
    assert all("ended without closing it" in run.data.tags["error"] for run in closed.values())
    assert not [run for run in runs(project) if run.info.status == "RUNNING"]
    assert not list((project / "outputs" / "resume").iterdir())  # trained: the saved state is gone

    whole = start(project, "--force", log="whole.log")
    assert whole.wait(timeout=300) == 0, (project / "whole.log").read_text()[-3000:]
    finished = [run for run in runs(project) if run.data.tags.get("task") == IMAGE and run.info.status == "FINISHED"]
    resumed, uninterrupted = sorted(finished, key=lambda run: run.info.start_time)
    assert resumed.data.tags["resumed_after_epoch"] and "resumed_after_epoch" not in uninterrupted.data.tags
    test_metrics = ("test_accuracy", "test_macro_f1", "best_val_accuracy", "best_epoch")
    assert {m: resumed.data.metrics[m] for m in test_metrics} == {
        m: uninterrupted.data.metrics[m] for m in test_metrics
    }


@pytest.mark.slow
def test_two_runs_at_once_run_one_after_the_other_and_the_better_is_champion(tiny_project):
    """The second waits for the project's lock, saying so; both finish; the registry ends with the better model as
    champion, whichever finished first."""
    project = tiny_project
    better = start(project, "--set", f"tasks.{IMAGE}.train.epochs=3",
                   "--set", f"tasks.{IMAGE}.train.max_batches_per_epoch=10",
                   log="better.log")  # fmt: skip
    time.sleep(1)
    worse = start(project, "--set", f"tasks.{IMAGE}.train.lr=0.000001", log="worse.log")
    assert better.wait(timeout=600) == 0 and worse.wait(timeout=600) == 0
    logs = (project / "better.log").read_text() + (project / "worse.log").read_text()
    assert "is busy: waiting for its running pipeline (pid" in logs
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}", registry_uri=f"sqlite:///{project / 'mlflow.db'}")
    image = [run for run in runs(project) if run.data.tags.get("task") == IMAGE]
    assert len(image) == 2 and {run.info.status for run in runs(project)} == {"FINISHED"}
    best = max(image, key=lambda run: run.data.metrics["test_accuracy"])
    assert client.get_model_version_by_alias("attnflow-digit-classification", "champion").run_id == best.info.run_id
