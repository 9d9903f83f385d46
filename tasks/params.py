"""params.yaml: its schema, validated on load, and where the project's paths come from.

The file has a ``global`` section and one section per modality; each modality module (tasks/modalities/) declares its
own section's schema, and this module puts them together. Unknown keys, wrong types and out-of-range values stop
the run before any work, with the offending key named (``ParamsError``).
"""

import itertools
import re
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from tasks.modalities import MODALITIES, REGISTRY
from tasks.schema import CompressParams, ExplainParams, Section, ServingLimits


# ---- global -------------------------------------------------------------------------------
class TrackingParams(Section):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "attnflow"
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
    """When `attnflow serve` runs the pipeline: a cron string read in an IANA timezone."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    per_modality: bool = False  # true: one deployment per modality, each with modalities=[m]

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
    settings; s3://bucket/prefix, a bucket every clone and worker naming it shares (README "Shared storage on S3").
    The credentials and the address of an S3-compatible store come from the environment (AWS_*), never from here."""

    storage: str | None = None

    @field_validator("storage")
    @classmethod
    def s3_url(cls, storage: str | None) -> str | None:
        if storage is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s?#]*)?", storage):
            raise ValueError("not an S3 URL: use s3://bucket/prefix (null: Prefect's local results folder)")
        return storage


class ExecutorParams(Section):
    """Where the modality pipelines (and a sweep's configurations) run: one after another in the flow's process
    (``sequential``), or at once on a Dask cluster (``dask``, tasks/executor.py): a local one started for the run
    with ``workers`` processes, or the running scheduler at ``address``. Data preparation and DVC stay in the flow's
    process either way."""

    kind: Literal["sequential", "dask"] = "sequential"
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
    device: Literal["auto", "cpu", "cuda"] = "auto"
    modalities: list[Literal[MODALITIES]] = list(MODALITIES)
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()
    serving: ServingLimits = ServingLimits()
    explain: ExplainParams = ExplainParams()
    monitor: MonitorParams = MonitorParams()
    compress: CompressParams = CompressParams()
    results: ResultsParams = ResultsParams()
    executor: ExecutorParams = ExecutorParams()


class ParamsBase(Section):
    """A modality's section may be left out when the modality is not run (e.g. a params file for one dataset)."""

    global_: GlobalParams = Field(GlobalParams(), alias="global")

    @model_validator(mode="after")
    def selected_modalities_have_sections(self):
        missing = [modality for modality in self.global_.modalities if getattr(self, modality) is None]
        if missing:
            raise ValueError(
                f"global.modalities lists {missing} but the file has no section for "
                f"{'it' if len(missing) == 1 else 'them'}"
            )
        return self

    def section(self, modality: str):
        """The modality's section (its spec's ``params`` model)."""
        section = getattr(self, modality)
        if section is None:
            raise ParamsError(f"params have no `{modality}` section (needed to run {modality})")
        return section

    def present_modalities(self) -> list[str]:
        return [modality for modality in MODALITIES if getattr(self, modality) is not None]


# The whole file: `global` and one optional section per registered modality.
Params = create_model(
    "Params", __base__=ParamsBase, **{name: (spec.params | None, None) for name, spec in REGISTRY.items()}
)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and key."""


def problems(error: ValidationError) -> str:
    """A validation error as one line: each problem as its dotted key, the message and the value given."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
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


def parse_assignment(text: str) -> tuple[str, object]:
    """'image.train.lr=0.01' -> ('image.train.lr', 0.01): the value is read as YAML (numbers, booleans, lists)."""
    key, sign, value = text.partition("=")
    if not sign or not key.strip() or not value.strip():
        raise ParamsError(f"{text!r} must look like section.key=value, e.g. image.train.epochs=5")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ParamsError(f"{text!r}: the value is not valid YAML") from None


def override(params: Params, values: dict[str, object]) -> Params:
    """A copy of params with dotted keys (image.train.lr, global.seed) set to new values and validated again; an
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


def with_overrides(params: Params, modality: str, overrides: dict) -> Params:
    """A copy of params with dotted keys of one modality's section replaced (model.depth -> image.model.depth),
    validated again."""
    return override(params, {f"{modality}.{key}": value for key, value in overrides.items()})


def configurations(base: Params, modality: str, grid: dict[str, list]) -> list[tuple[dict, Params]]:
    """Every combination of a sweep's grid with its validated params (an invalid one raises ParamsError first)."""
    combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [(overrides, with_overrides(base, modality, overrides)) for overrides in combinations]


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
