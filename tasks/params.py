"""params.yaml: its schema, validated on load, and where the project's paths come from.

The file has a ``global`` section and one section per modality; each modality module (tasks/modalities/) declares its
own section's schema, and this module puts them together. Unknown keys, wrong types and out-of-range values stop
the run before any work, with the offending key named (``ParamsError``).
"""

from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from tasks.modalities import MODALITIES, REGISTRY
from tasks.schema import Section


# ---- global -------------------------------------------------------------------------------
class TrackingParams(Section):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "attnflow"


class ScheduleParams(Section):
    """When `attnflow serve` runs the pipeline: a cron string read in an IANA timezone."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    per_modality: bool = False  # true: one deployment per modality, each with modalities=[m]

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, cron: str) -> str:
        try:
            CronSim(cron, datetime(2000, 1, 1))
        except CronSimError as error:
            raise ValueError(f"not a cron schedule: {error}") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def valid_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return timezone


class GlobalParams(Section):
    seed: int = Field(42, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    modalities: list[Literal[MODALITIES]] = list(MODALITIES)
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()


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


def load_params(path: str | Path) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {error}") from error
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        problems = [
            f"  {'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            + (
                ""
                if problem["type"] == "missing" or isinstance(problem["input"], dict)
                else f" (got {problem['input']!r})"
            )
            for problem in error.errors()
        ]
        raise ParamsError(f"{path}: invalid params:\n" + "\n".join(problems)) from None


def project_root(params_path: str | Path) -> Path:
    """The project is the folder holding params.yaml: data/, data.dvc and mlflow.db live beside it."""
    return Path(params_path).resolve().parent
