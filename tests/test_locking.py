"""The project lock (tasks/locking.py): one holder per project across processes, re-entrant within one, released
however its holder ends."""

import subprocess
import sys
import time

from tasks.locking import project_lock
from tasks.paths import ProjectPaths
from tests.conftest import REPO

HOLD = """
import sys, time
from tasks.locking import project_lock
with project_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(root, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_waits_for_the_first_and_is_told_who_holds_it(tmp_path):
    holder = hold_in_another_process(tmp_path, 1.5)
    messages = []
    started = time.monotonic()
    with project_lock(tmp_path, on_wait=messages.append):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.5
    assert len(messages) == 1 and f"pid {holder.pid} on " in messages[0] and "is busy" in messages[0]


def test_a_killed_holder_releases_the_lock(tmp_path):
    holder = hold_in_another_process(tmp_path, 60)
    holder.kill()
    holder.wait()
    messages = []
    with project_lock(tmp_path, on_wait=messages.append):
        assert ProjectPaths(tmp_path).lock.read_text().startswith("pid ")
    assert messages == []


def test_re_entrant_within_a_process(tmp_path):
    messages = []
    with project_lock(tmp_path, on_wait=messages.append):
        with project_lock(tmp_path, on_wait=messages.append):  # a sweep's pipeline inside the sweep's hold
            pass
        with project_lock(tmp_path / ".", on_wait=messages.append):  # the same project, spelled differently
            pass
    assert messages == []
    assert ProjectPaths(tmp_path).lock.read_text() == ""  # released: no holder named
