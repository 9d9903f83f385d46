"""Prefect servers.

- ``prefect_server``: the server schedules live on: the one at $PREFECT_API_URL when set, else a local one on
  127.0.0.1, started on demand with its own sqlite database under <project>/.prefect/ (a temporary server
  cannot hold schedules).
- ``start_temporary_server``: a server for one command (`attnflow run`), like the temporary server Prefect starts
  by itself, but started before the pipeline's modules import and without loading the server's code into this
  process, so that both happen at once (docs/benchmarks.md).
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from tasks.paths import ProjectPaths

LOCAL_PORT = 4200
PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a child gets when its parent dies
STARTUP_TIMEOUT_S = 120
TEMPORARY_STOP_S = 5  # a temporary server holds nothing to save: killed if it has not stopped by then (it takes 0.3 s)


class ServerUnavailable(RuntimeError):
    """No Prefect server answers (and none may be started), or the one started did not come up."""


def is_up(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def die_with_parent() -> None:
    """In a server's child process, before it runs: ask the kernel to SIGTERM it when the process that started it
    dies (Linux PR_SET_PDEATHSIG), so that a killed command never leaves its server running."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(home: Path, port: int) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port, its state (sqlite database, logs) in home; returns at once. Its UI
    is told where the API is (it would look on the default port, 4200, otherwise)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "ab") as log:  # own session: Ctrl-C stops `serve` first, which then stops it
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def temporary_server_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of Prefect's own temporary server on port: exactly what Prefect 3.8.8's
    ``SubprocessASGIServer._run_uvicorn_command`` runs (uvicorn serving prefect.server.api.server:create_app, the UI
    off, the ephemeral-server flags, the current settings), with analytics off. Built here without importing the
    server's code (seconds); tests/test_temporary_server.py compares it with Prefect's, so an upgrade that changes
    Prefect's fails that test instead of this path breaking silently."""
    import prefect
    from prefect.settings import get_current_settings

    arguments = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                 "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
                 "error", "--lifespan", "on"]  # fmt: skip
    environment = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    return arguments, environment


def start_temporary_server(home: Path) -> tuple[subprocess.Popen, str]:
    """Prefect's API (no UI) on a free 127.0.0.1 port, started as Prefect starts its own temporary server
    (``temporary_server_command``). Returns at once with the process and its API URL; wait for it with
    ``wait_until_up`` and stop it with ``stop_server``. Its output goes to home/temporary-server.log.

    It runs in a session of its own, so that a signal to the command's process group (Ctrl-C in a terminal, `timeout`,
    `kill -- -PGID`) does not kill it under the command: the command's orderly stop reports its flow runs' end to this
    server, and with the server gone Prefect's client would retry each call for a minute, leaving the command alive
    for minutes and the server a zombie. The command stops it on the way out (``stop_server``). Out of the group, it
    would outlive a command killed with SIGKILL: PR_SET_PDEATHSIG (``die_with_parent``) has the kernel stop it then
    (a watchdog thread or a wrapper process would do the same, with more parts)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    arguments, environment = temporary_server_command(port)
    with open(home / "temporary-server.log", "ab") as log:
        process = subprocess.Popen(
            arguments,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return process, f"http://127.0.0.1:{port}/api"


def wait_until_up(api_url: str, process: subprocess.Popen, log: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not is_up(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ServerUnavailable(f"the Prefect server at {api_url} did not start (see {log}):\n{tail}")
        time.sleep(0.1)


def drain_client_workers() -> None:
    """Send the logs and events this process still holds to the server before it goes away (else, at exit, Prefect
    keeps retrying against the closed port for a minute)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()


def stop_server(process: subprocess.Popen, timeout: float = 20) -> None:
    """Flush this process's pending logs and events to the server, then stop it (SIGTERM) and wait for it to end, so
    that no zombie is left; one still running after timeout seconds is killed, with whatever it started (both kinds
    of server start in a session of their own: its process group is its pid)."""
    drain_client_workers()
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.wait()


@contextmanager
def prefect_server(root: Path, start: bool = True, port: int = LOCAL_PORT):
    """Point Prefect at a real server for the duration and yield its API URL: $PREFECT_API_URL (or a profile's
    api.url) when set, else the local one on 127.0.0.1:port, started here when none answers (and stopped on exit)."""
    configured = get_current_settings().api.url
    api_url = configured or f"http://127.0.0.1:{port}/api"
    process = None
    if not configured and not is_up(api_url):
        if not start:
            raise ServerUnavailable(f"no Prefect server answers at {api_url}; start one with `attnflow schedule serve`")
        home = ProjectPaths(root).prefect_home
        process = start_server(home, port)
    try:
        if process:
            wait_until_up(api_url, process, ProjectPaths(root).prefect_home / "server.log")
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        if process:
            stop_server(process)
