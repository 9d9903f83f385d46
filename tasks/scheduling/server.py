"""The Prefect server that schedules live on: the one at $PREFECT_API_URL when set, else a local one on
127.0.0.1, started on demand with its own sqlite database under <project>/.prefect/ (a temporary server
cannot hold schedules)."""
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

LOCAL_PORT = 4200
STARTUP_TIMEOUT_S = 120


class ServerUnavailable(RuntimeError):
    """No Prefect server answers (and none may be started), or the one started did not come up."""


def is_up(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(home: Path, port: int) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port, its state (sqlite database, logs) in home; returns at once."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "ab") as log:  # own session: Ctrl-C stops `serve` first, which then stops it
        return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_until_up(api_url: str, process: subprocess.Popen, home: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not is_up(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            log = (home / "server.log").read_text(errors="replace")[-3000:]
            raise ServerUnavailable(f"the Prefect server at {api_url} did not start (see {home / 'server.log'}):\n{log}")
        time.sleep(1)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
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
            raise ServerUnavailable(f"no Prefect server answers at {api_url}; start one with `attnflow serve`")
        home = root / ".prefect"
        process = start_server(home, port)
    try:
        if process:
            wait_until_up(api_url, process, root / ".prefect")
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        if process:
            stop_server(process)
