"""`attnflow run` with no Prefect server configured starts its own temporary one, and stops it cleanly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CACHED_STAGES, REPO, TEXT

pytestmark = pytest.mark.integration  # `attnflow run` in a subprocess, with its own temporary Prefect server


@pytest.mark.slow  # two `attnflow run` processes: about a minute
def test_run_without_a_server_starts_and_stops_a_temporary_one(tiny_project):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(
        PREFECT_HOME=str(tiny_project / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO)
    )
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "--task",
        TEXT,
        "--params",
        str(tiny_project / "params.yaml"),
    ]
    first = subprocess.run(command, cwd=tiny_project, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    again = subprocess.run(command, cwd=tiny_project, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    output = again.stdout + again.stderr
    assert output.count("Cached(type=COMPLETED)") == len(CACHED_STAGES)  # prepare, train, evaluate, explain
    assert "Error logging to API" not in output and "View at" not in output  # logs drained; no UI links
    assert (tiny_project / ".prefect" / "temporary-server.log").exists()
    assert not processes_with_env(f"PREFECT_HOME={tiny_project / '.prefect'}")  # no server left behind


def processes_with_env(entry: str) -> list[str]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(environ.parent.name)
        except OSError:  # gone, or not ours to read
            pass
    return found


def test_it_is_started_exactly_as_prefect_starts_its_own(monkeypatch):
    """The fast path (tasks/scheduling/server.py) runs Prefect's own temporary-server command without importing the
    server's code. If a Prefect upgrade changes that command (its factory, flags or environment), this fails: update
    temporary_server_command to match, or go back to Prefect's SubprocessASGIServer."""
    from prefect.server.api.server import SubprocessASGIServer

    from tasks.scheduling.server import temporary_server_command

    captured = {}
    monkeypatch.setattr(subprocess, "Popen", lambda args, env, **_: captured.update(args=args, env=env))
    SubprocessASGIServer(port=4299)._run_uvicorn_command()
    arguments, environment = temporary_server_command(4299)
    assert arguments == captured["args"]
    assert environment == {**captured["env"], "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


CHECK_THREADS_AND_CHILDREN = """
import os, subprocess, sys, threading
from prefect.settings import get_current_settings
from flows.cli import prefect_server_for

seen = {}
with prefect_server_for("json"):
    inside = get_current_settings().api.url
    thread = threading.Thread(target=lambda: seen.update(url=get_current_settings().api.url))
    thread.start()
    thread.join()
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['PREFECT_API_URL'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
print(inside, seen["url"], child, os.environ.get("PREFECT_API_URL"), get_current_settings().api.url)
"""


@pytest.mark.slow  # a temporary Prefect server in a process of its own: about 20 s
def test_threads_and_child_processes_use_it_too(tmp_path):
    """Prefect restarts its log worker in a thread of its own after a failed send; that thread does not see this
    thread's settings context, nor does a child process: without the server in the process-global settings and the
    environment, either would start Prefect's own temporary server. In a process of its own, with no server set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(tmp_path / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO))
    checked = subprocess.run([sys.executable, "-c", CHECK_THREADS_AND_CHILDREN], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=240)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    inside, thread, child, env_after, settings_after = checked.stdout.split()[-5:]
    assert inside.startswith("http://127.0.0.1:") and thread == child == inside
    assert env_after == settings_after == "None"  # put back on the way out
