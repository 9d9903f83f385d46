"""The request log: what a served classifier answered, one row per answer, in a local sqlite file per registered model
(``<global.monitor.request_log>/<registered model>.sqlite``), for the monitor (flows/monitor.py) to compare with the
model's reference.

A row holds the time, the registered model's name, version, alias and run id, the predicted label and the answer's
features as JSON (its input summary, confidence and attention entropy: tasks/evaluation/monitoring.py), never the
raw input nor anything that spells it out (a text's subword tokens stay out). The oldest rows are deleted past
``max_log_rows`` rows or ``max_log_days`` days. Several server processes on one host may append to one file at once:
sqlite in WAL mode (readers never block the writer) with a busy timeout, each append one short transaction.

The model server calls ``log_answers`` through its observer: ``functools.partial(log_answers, store)`` is an
``on_answers(model_info, rows, answers)``.
"""

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.evaluation.monitoring import answer_features

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another's transaction before it gives up
DAY_S = 86_400
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a watermark on it stays valid after rotation
    time REAL NOT NULL,                    -- seconds since the epoch (UTC)
    model TEXT NOT NULL, version TEXT NOT NULL, alias TEXT, run_id TEXT NOT NULL,
    prediction TEXT NOT NULL,
    features TEXT NOT NULL                 -- JSON: {feature: value}
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time);
CREATE TABLE IF NOT EXISTS watermarks (run_id TEXT PRIMARY KEY, last_id INTEGER NOT NULL, time REAL NOT NULL);
"""
PREPARED: set[Path] = set()  # log files this process has put in WAL mode with their tables made
COLUMNS = ("id", "time", "model", "version", "alias", "run_id", "prediction", "features")


def wal_mode(db) -> None:
    """Put the file in WAL mode (it stays so). Switching takes an exclusive lock that sqlite does not wait for: when
    several processes open a new file at once, all but one get "database is locked" at once, so retry until
    BUSY_TIMEOUT_S. A file already in WAL mode needs no switch."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass(frozen=True)
class RequestLog:
    """One served model's log file and how much of it to keep (None: no limit)."""

    path: Path
    max_rows: int | None = None
    max_days: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))  # a str given (a process's arguments) becomes a Path

    @contextmanager
    def connection(self):
        """A connection in autocommit mode (transactions are explicit); the first in this process also puts the file
        in WAL mode and makes its tables (both persist in the file), not every request's."""
        fresh = self.path not in PREPARED or not self.path.exists()  # a file removed since is made again
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            if fresh:
                wal_mode(db)
                db.executescript(SCHEMA)
                PREPARED.add(self.path)
            yield db

    def append(self, records: list[tuple]) -> None:
        """Append (time, model, version, alias, run_id, prediction, features JSON) rows and delete what is past the
        limits, in one transaction (BEGIN IMMEDIATE: it takes the write lock at once, waiting for another writer's
        at most BUSY_TIMEOUT_S)."""
        with self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(f"INSERT INTO requests ({', '.join(COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?)", records)
                self.rotate(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def rotate(self, db) -> None:
        """Delete the rows older than max_days and all but the newest max_rows (ids increase with every insert)."""
        if self.max_days is not None:
            db.execute("DELETE FROM requests WHERE time < ?", (time.time() - self.max_days * DAY_S,))
        if self.max_rows is not None:
            db.execute("DELETE FROM requests WHERE id <= (SELECT MAX(id) FROM requests) - ?", (self.max_rows,))

    def since(self, moment: float) -> list[dict]:
        """The rows logged at or after moment (seconds since the epoch), oldest first."""
        return self.select("time >= ?", (moment,))

    def unchecked(self) -> list[dict]:
        """The rows of each run past its watermark (what the monitor has not compared yet), oldest first."""
        return self.select(
            "id > COALESCE((SELECT last_id FROM watermarks WHERE watermarks.run_id = requests.run_id), 0)", ()
        )

    def select(self, where: str, arguments: tuple) -> list[dict]:
        with self.connection() as db:
            found = db.execute(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE {where} ORDER BY id", arguments)
            return [dict(zip(COLUMNS, row)) | {"features": json.loads(row[-1])} for row in found]

    def mark_checked(self, run_id: str, last_id: int) -> None:
        """The monitor has compared the run's rows up to id last_id: the next check starts after it."""
        with self.connection() as db:
            db.execute(
                "INSERT INTO watermarks (run_id, last_id, time) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET last_id = excluded.last_id, time = excluded.time",
                (run_id, last_id, time.time()),
            )


def log_answers(store: RequestLog, model_info: dict, rows: list, answers: list[dict]) -> int:
    """Append one row per classifier answer (those that carry an ``input_summary``; a sequence model's answers are
    not monitored yet) and return how many. model_info: the served version's name, version, alias and run_id (as the
    model server has it); rows: the raw request values, which the server's observer passes and this never stores."""
    now = time.time()
    records = [
        (now, model_info["name"], str(model_info["version"]), model_info.get("alias"), model_info["run_id"],
         answer["label"], json.dumps(answer_features(answer)))
        for answer in answers
        if "input_summary" in answer
    ]  # fmt: skip
    if records:
        store.append(records)
    return len(records)


def request_log_for(params, root: Path, model_name: str) -> RequestLog:
    """The log of registered model model_name as params.yaml's global.monitor sets it (request_log: a folder, relative
    to the project root unless absolute; max_log_rows, max_log_days)."""
    settings = params.global_.monitor
    folder = Path(settings.request_log).expanduser()
    return RequestLog(
        (folder if folder.is_absolute() else root / folder) / f"{model_name}.sqlite",
        settings.max_log_rows,
        settings.max_log_days,
    )
