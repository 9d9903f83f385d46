"""params.yaml: its schema, validated on load, and where the project's paths come from.

The file has a ``global`` section and ``tasks``: any number of named tasks, each of a kind (text, image, ...). Each
kind's module (tasks/kinds/) declares the schema of its tasks' sections, and this module puts them together.
Unknown keys, wrong types and out-of-range values stop the run before any work, with the offending key named
(``ParamsError``).
"""

import functools
import itertools
import operator
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from tasks.errors import EXIT_INVALID, AttnflowError
from tasks.kinds import KINDS, REGISTRY, get
from tasks.kinds.kind import Kind
from tasks.schema import CompressParams, ExplainParams, Section, ServingLimits


# ---- global -------------------------------------------------------------------------------
class TrackingParams(Section):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "attnflow"  # the pipeline runs' experiment; each task's is attnflow-<task>
    # Where the MLflow UI shows this store (links in the Prefect UI point there). None: the tracking URI when it is an
    # MLflow server (http...), else http://127.0.0.1:5000, where `make ui` serves a local store.
    ui_url: str | None = None


def checked_cron(cron: str) -> str:
    try:
        CronSim(cron, datetime(2000, 1, 1))
    except CronSimError as error:
        raise ValueError(f"not a cron schedule: {error}") from None
    return cron


class ScheduleParams(Section):
    """When `attnflow schedule serve` runs the pipeline: a cron string read in an IANA timezone."""

    cron: str = "0 3 * * *"  # minute hour day-of-month month day-of-week
    timezone: str = "UTC"  # the IANA name the cron is read in, e.g. Europe/Berlin
    per_task: bool = False  # true: one deployment per task, each with tasks=[t]

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, cron: str) -> str:
        return checked_cron(cron)

    @field_validator("timezone")
    @classmethod
    def valid_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return timezone


class MonitorParams(Section):
    """The served classifiers' request logs and the monitor that compares them with each model's reference
    (tasks/monitoring/, flows/monitor.py)."""

    request_log: str = Field("outputs/requests", min_length=1)  # folder of the logs, one sqlite file per model
    max_log_rows: int | None = Field(100_000, ge=1)  # per log: the oldest rows beyond it are deleted (None: all kept)
    max_log_days: float | None = Field(30.0, gt=0)  # and the rows older than this
    psi_threshold: float = Field(0.2, gt=0)  # a feature drifted when its PSI is at or above this,
    ks_pvalue: float = Field(0.01, gt=0, lt=1)  # or its KS test's p-value below this
    min_requests: int = Field(100, ge=1)  # fewer answers since the last check: "not enough requests", passes
    cron: str = "0 * * * *"  # the monitor's deployment, read in global.schedule.timezone
    notify_block: str | None = None  # a Prefect notification block ("<block type>/<name>") told of drift

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, cron: str) -> str:
        return checked_cron(cron)


class ResultsParams(Section):
    """Where Prefect keeps the cached stages' results (tasks/result_storage.py): None, the local folder of Prefect's
    settings; s3://bucket/prefix, a bucket every clone and worker naming it shares (docs/how-to/s3-storage.md).
    The credentials and the address of an S3-compatible store come from the environment (AWS_*), never from here."""

    storage: str | None = None  # null: Prefect's local results folder; s3://bucket/prefix: shared

    @field_validator("storage")
    @classmethod
    def s3_url(cls, storage: str | None) -> str | None:
        if storage is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s?#]*)?", storage):
            raise ValueError("not an S3 URL: use s3://bucket/prefix (null: Prefect's local results folder)")
        return storage


class ExecutorParams(Section):
    """Where the task pipelines (and a sweep's configurations) run: one after another in the flow's process
    (``sequential``), or at once on a Dask cluster (``dask``, tasks/executor.py): a local one started for the run
    with ``workers`` processes, or the running scheduler at ``address``. Data preparation and DVC stay in the flow's
    process either way."""

    kind: Literal["sequential", "dask"] = "sequential"  # sequential: one after another; dask: at once on Dask
    address: str | None = None  # a running `dask scheduler`, e.g. tcp://10.0.0.5:8786; None: a local cluster
    workers: int | None = Field(None, ge=1)  # the local cluster's worker processes; None: one per core

    @model_validator(mode="before")
    @classmethod
    def kind_alone(cls, value):
        """`executor: dask` is short for `executor: {kind: dask}`."""
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("address")
    @classmethod
    def scheduler_address(cls, address: str | None) -> str | None:
        if address is None:
            return None
        host, sep, port = address.removeprefix("tcp://").rpartition(":")
        if "://" in host or not sep or not host or not port.isdigit():
            raise ValueError(f"not a Dask scheduler address {address!r} (host:port or tcp://host:port)")
        return address

    @model_validator(mode="after")
    def settings_of_its_kind(self):
        if self.kind == "sequential" and (self.address or self.workers):
            raise ValueError("address and workers are settings of kind: dask")
        if self.address and self.workers:
            raise ValueError("workers sizes a local cluster; with an address the scheduler's workers are used")
        return self


class GlobalParams(Section):
    seed: int = Field(42, ge=0, le=2**32 - 1)  # what NumPy's and torch's generators take
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where models train and run; auto: cuda when a GPU is there
    tasks: list[str] | None = None  # the tasks a run trains, in this order; None: every task of the file, in its order
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()
    serving: ServingLimits = ServingLimits()
    explain: ExplainParams = ExplainParams()
    monitor: MonitorParams = MonitorParams()
    compress: CompressParams = CompressParams()
    results: ResultsParams = ResultsParams()
    executor: ExecutorParams = ExecutorParams()


# A task's name names its data folder (data/<name>/), its MLflow experiment and registered model, and its stages'
# cache keys: letters and digits, with _ and - inside: a safe folder name, a URL part, and no dot (params keys are
# dotted: tasks.<name>.train.lr).
TASK_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?"
# The section of a task: the schema of its kind, picked by its `kind` key.
# (A callable discriminator: a literal one would refuse Section's field validator, which sees every field.)
TaskSection = Annotated[
    functools.reduce(operator.or_, (Annotated[spec.params, Tag(name)] for name, spec in REGISTRY.items())),
    Discriminator(lambda value: value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)),
]


class Params(Section):
    """The whole file: `global` and the named tasks, each of a kind (tasks/kinds/)."""

    global_: GlobalParams = Field(GlobalParams(), alias="global")
    tasks: dict[str, TaskSection] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def tasks_are_named(cls, raw):
        """A file written before tasks had names (a `text:` section beside `global`) is told what changed; a task
        without `kind` is told the kinds there are (pydantic would only say it cannot pick a schema)."""
        if not isinstance(raw, dict):
            return raw
        old = [key for key in raw if key in REGISTRY]
        if old:
            raise ValueError(
                f"sections {old} name kinds: since tasks have names, each task goes under `tasks:` with its kind, "
                f"e.g. tasks: {{my-task: {{kind: {old[0]}, data: ..., model: ..., train: ...}}}}"
            )
        tasks = raw.get("tasks")
        if isinstance(tasks, dict):
            for name, section in tasks.items():
                if not isinstance(name, str) or not re.fullmatch(TASK_NAME, name):
                    raise ValueError(f"tasks.{name}: a task's name is letters and digits, with _ or - inside")
                if isinstance(section, dict) and section.get("kind") not in REGISTRY:
                    given = f"{section['kind']!r} is not one" if "kind" in section else "it has none"
                    raise ValueError(f"tasks.{name}.kind: every task names its kind ({', '.join(KINDS)}); {given}")
        return raw

    @model_validator(mode="after")
    def selected_tasks_exist(self):
        unknown = [name for name in self.global_.tasks or () if name not in self.tasks]
        if unknown:
            raise ValueError(f"global.tasks names {unknown}, which `tasks` lacks (it has {', '.join(self.tasks)})")
        return self

    def task(self, name: str):
        """The section of the named task (its kind's ``params`` model)."""
        try:
            return self.tasks[name]
        except KeyError:
            raise ParamsError(f"unknown task {name!r}; the params have {', '.join(self.tasks)}") from None

    def kind(self, name: str) -> Kind:
        """The kind of the named task: what knows its data, model, metrics and serving (tasks/kinds/)."""
        return get(self.task(name).kind)

    def selected_tasks(self) -> list[str]:
        """The tasks a run trains: global.tasks, or every task of the file."""
        return list(self.global_.tasks or self.tasks)


class ParamsError(AttnflowError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and key."""

    exit_code = EXIT_INVALID


def problems(error: ValidationError) -> str:
    """A validation error as one line: each problem as its dotted key, the message and the value given."""
    return "; ".join(
        f"{dotted_key(problem['loc']) or '(top level)'}: {problem['msg']}"
        + ("" if problem["type"] == "missing" or isinstance(problem["input"], dict) else f" (got {problem['input']!r})")
        for problem in error.errors()
    )


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: str | Path) -> Params:
    """The validated params of a file; any problem with it (unreadable, not UTF-8, not YAML, a duplicate key, nested
    beyond reason, invalid values) is one ParamsError naming the file and what is wrong."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except OSError as error:
        raise ParamsError(f"{path}: cannot read params: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise ParamsError(f"{path}: not valid params: nested too deeply") from None
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params: {problems(error)}") from None


def dotted_key(location: tuple) -> str:
    """Where a problem is, as the key a user writes: ('tasks', 'news', 'text', 'model', 'depth') ->
    tasks.news.model.depth (pydantic puts the kind that picked a task's schema into the location)."""
    parts = [str(part) for part in location]
    if len(parts) > 2 and parts[0] == "tasks" and parts[2] in REGISTRY:
        del parts[2]
    return ".".join(parts)


def parse_assignment(text: str) -> tuple[str, object]:
    """'global.seed=7' -> ('global.seed', 7): the value is read as YAML (numbers, booleans, lists)."""
    key, sign, value = text.partition("=")
    if not sign or not key.strip() or not value.strip():
        raise ParamsError(f"{text!r} must look like section.key=value, e.g. tasks.digits.train.epochs=5")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ParamsError(f"{text!r}: the value is not valid YAML") from None


def override(params: Params, values: dict[str, object]) -> Params:
    """A copy of params with dotted keys (tasks.digits.train.lr, global.seed) set to new values and validated again; an
    unknown key or an invalid value raises ParamsError naming it."""
    raw = params.model_dump(mode="json", by_alias=True)
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for depth, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                raise ParamsError(f"{'.'.join(parents[: depth + 1])}: no such section in params (setting {dotted})")
            node = node[part]
        if leaf not in node:
            raise ParamsError(f"{dotted}: no such key in params")
        node[leaf] = value
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"invalid value: {problems(error)}") from None


def parse_grid(assignments: list[str]) -> dict[str, list]:
    """A sweep's --grid: ['model.depth=1,2', 'train.lr=0.001,0.002'] -> {'model.depth': [1, 2], 'train.lr': [...]}."""
    grid = {}
    for assignment in assignments:
        key, sign, values = assignment.partition("=")
        if not sign or not key.strip() or not values.strip():
            raise ParamsError(f"--grid {assignment!r} must look like key=value1,value2, e.g. model.depth=1,2")
        try:
            grid[key.strip()] = [yaml.safe_load(value) for value in values.split(",")]
        except yaml.YAMLError:
            raise ParamsError(f"--grid {assignment!r}: a value is not valid YAML") from None
    return grid


def with_overrides(params: Params, task: str, overrides: dict) -> Params:
    """A copy of params with dotted keys of one task's section replaced (model.depth -> tasks.<task>.model.depth),
    validated again."""
    params.task(task)  # an unknown task is named as such, not as a missing section
    return override(params, {f"tasks.{task}.{key}": value for key, value in overrides.items()})


def configurations(base: Params, task: str, grid: dict[str, list]) -> list[tuple[dict, Params]]:
    """Every combination of a sweep's grid with its validated params (an invalid one raises ParamsError first)."""
    combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [(overrides, with_overrides(base, task, overrides)) for overrides in combinations]


def redact(uri: str | None) -> str | None:
    """A URI with its password replaced by ***: how a tracking URI is printed and logged, never with a secret."""
    if not uri or "@" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def public_dump(params: Params) -> dict:
    """The params as a dict to log (the params.yaml artifact, the pipeline run's params): secrets redacted."""
    raw = params.model_dump(mode="json", by_alias=True)
    raw["global"]["tracking"]["uri"] = redact(raw["global"]["tracking"]["uri"])
    return raw


def project_root(params_path: str | Path) -> Path:
    """The project is the folder holding params.yaml: data/, data.dvc and mlflow.db live beside it."""
    return Path(params_path).resolve().parent
