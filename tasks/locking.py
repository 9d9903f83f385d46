"""One pipeline at a time per project: a lock on <project>/.attnflow.lock, held by `attnflow run`, `reproduce` and
`sweep` (and scheduled runs, which are the same flows) for as long as they run.

Two runs started together in one project would rebuild data/ at the same moment, fight over DVC's lock, share the
Prefect database and race to move the `champion` alias. So a second run waits for the first, saying so, then runs:
both finish, one after the other, and promotion compares them in order. The lock is an flock(2): the kernel releases
it when its holder exits, however it exits (kill -9 included), so a stale lock never blocks a project. The file holds
the holder's pid and host, for the waiting message. Re-entrant within a process (a sweep runs the pipeline for each
configuration). POSIX only, like the rest of the project.
"""

import fcntl
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from tasks.paths import ProjectPaths

_held: dict[Path, int] = {}  # project root -> depth of this process's holds
_guard = threading.Lock()


@contextmanager
def project_lock(root: Path, on_wait=print):
    """Hold the project's lock (waiting for another process's run to end first, after calling on_wait once)."""
    root = Path(root).resolve()
    with _guard:
        depth = _held.get(root, 0)
        _held[root] = depth + 1
    if depth:  # this process holds it already
        try:
            yield
        finally:
            with _guard:
                _held[root] -= 1
        return
    with open(ProjectPaths(root).lock, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            on_wait(f"project {root} is busy: waiting for its running pipeline ({holder}) to end")
            fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        try:
            yield
        finally:
            with _guard:
                del _held[root]
            file.seek(0)
            file.truncate()
            fcntl.flock(file, fcntl.LOCK_UN)
