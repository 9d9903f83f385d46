"""Progress of long loops (training batches, decoding, speech synthesis, importing files) as log lines.

tqdm counts and computes the rate and the time left; a line goes to the log at most every PROGRESS_SECONDS, and
none for a loop that ends sooner, so the logs of a Prefect run stay readable (one line every quarter minute, not a
bar redrawn per batch). Inside a Prefect task the lines go to its run logger (the Prefect UI and the console);
elsewhere to the "attnflow" logger.
"""

import logging
import os
import sys

from tqdm import tqdm

PROGRESS_SECONDS = float(os.environ.get("ATTNFLOW_PROGRESS_SECONDS", "15"))
FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed} elapsed, {remaining} left, {rate_fmt}]{postfix}"
)


class LogLines:
    """A file for tqdm that logs each line it writes."""

    def __init__(self, logger):
        self.logger = logger

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self.logger.info(text)

    def flush(self) -> None:
        pass


def run_logger():
    """The Prefect run logger of the task or flow running now, else the "attnflow" logger. Prefect is not imported
    here: a run is active only where it is loaded already (the served model, for one, runs without it)."""
    loggers, exceptions = sys.modules.get("prefect.logging"), sys.modules.get("prefect.exceptions")
    if loggers is not None and exceptions is not None:
        try:
            return loggers.get_run_logger()
        except exceptions.MissingContextError:
            pass
    return logging.getLogger("attnflow")


def progress(total: int, description: str, unit: str = "it") -> tqdm:
    """A progress counter for `total` steps (use as a context manager; .update() per step)."""
    seconds = PROGRESS_SECONDS
    return tqdm(total=total, desc=description, unit=unit, file=LogLines(run_logger()), mininterval=seconds,
                delay=seconds, bar_format=FORMAT, ascii=True)  # fmt: skip


def counted(items: list, description: str, unit: str = "it"):
    """The items, one by one, with their progress logged."""
    with progress(len(items), description, unit) as bar:
        for item in items:
            yield item
            bar.update()
