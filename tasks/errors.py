"""The errors a command reports as one line, each carrying its exit code: a user's mistake (bad params, data an
importer rejects, an unreachable store) or an outcome to report (a task failed). Anything else is a bug, shown with
its traceback. The command line (flows/cli.py) prints the message and exits with ``exit_code``; the codes and their
meanings are listed once, here (``EXIT_CODES``, shown by `attnflow -h`).
"""

from typing import ClassVar

EXIT_FAILED = 1  # a task failed, `reproduce` found different metrics, or `monitor` found drift
EXIT_INVALID = 2  # bad params, --set, --grid, run id, task or file: nothing ran
EXIT_CODE_CHANGED = 3  # `reproduce`: the code differs from the run's commit (pass --allow-code-change)
EXIT_BAD_DATA = 4  # an importer rejected the data (the message names the file and row); data/ is unchanged
EXIT_STORAGE = 5  # the DVC remote or global.results.storage failed (named, with where credentials come from)
EXIT_INTERRUPTED = 130  # SIGTERM or Ctrl-C: the open runs are closed as KILLED, the temporary server stopped
EXIT_CODES = {
    0: "success",
    EXIT_FAILED: "a task failed, reproduce found different metrics, or monitor found drift",
    EXIT_INVALID: "invalid input (params, --set, --grid, run id, task, file): nothing ran",
    EXIT_CODE_CHANGED: "reproduce: the code differs from the run's commit",
    EXIT_BAD_DATA: "the data was rejected by its importer (file and row named); data/ unchanged",
    EXIT_STORAGE: "the DVC remote or the result storage (global.results.storage) failed: named in the message",
    EXIT_INTERRUPTED: "interrupted (SIGTERM, Ctrl-C): open runs closed as KILLED",
}


class AttnflowError(Exception):
    """An error the command reports without a traceback, exiting with ``exit_code``."""

    exit_code: ClassVar[int] = EXIT_INVALID


class UserError(AttnflowError):
    """A user's mistake found by the command line itself, with the exit code it calls for."""

    def __init__(self, message: str, code: int = EXIT_INVALID):
        super().__init__(message)
        self.exit_code = code
