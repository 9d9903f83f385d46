"""The console formatter of the `attnflow` command's logging (logging.yml beside this file): tracebacks go to the log
file only."""

import logging

from prefect.logging.formatters import PrefectFormatter


class BriefFormatter(PrefectFormatter):
    """Prefect's console format, one line a record: an exception shows as its type and message, not its traceback
    (the log file has that)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None:
            error, message = record.exc_info[1], record.getMessage()
            shown = str(error) in message or repr(error) in message  # Prefect's messages often carry it already
            brief = {"msg": message if shown else f"{message} ({type(error).__name__}: {error})", "args": None}
            record = logging.makeLogRecord(record.__dict__ | brief | {"exc_info": None, "exc_text": None})
        return super().format(record)
