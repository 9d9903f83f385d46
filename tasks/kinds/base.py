"""What the parts of a kind share (tasks/kinds/parts/): paths read from params.yaml, objects named by reference, the
`auto` keys of a section, the names of validation figures, and what the evaluate and explain stages hand a kind.

Heavy libraries (torch, PIL, soundfile, tokenizers, matplotlib) are imported inside the methods that use them: every
command imports every kind (params validation needs their sections), and a cached run never calls those methods.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.defaults import is_auto
from tasks.schema import Section

SPLIT_FILE_KEYS = ("val", "test")  # import settings may name a separate file for these splits (text does)
VAL_PREFIX = "eval_val_"  # the evaluate stage's figures on the validation split (``val_name``)


def resolve(path: str, root: Path) -> Path:
    """A path from params.yaml: a relative one is read from the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def val_name(metric: str) -> str:
    """The evaluate stage's figure on the validation split of a test metric: test_accuracy -> eval_val_accuracy,
    test_bleu -> eval_val_bleu. Models are chosen on these (promotion, sweeps, the compact variant), never on the
    test split. Not val_<name>: the training loop logs val_accuracy every epoch (token accuracy, teacher-forced, for
    sequence tasks), a different figure of a different model."""
    return VAL_PREFIX + metric.removeprefix("test_")


def load_object(reference: str):
    """'package.module:name' -> the object, imported now (so that torch and the like load only when needed)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class Evaluation:
    """What the evaluate stage hands a kind's ``evaluate``."""

    client: Any  # MlflowClient: figures and files go to run_id
    run_id: str
    model: Any  # the trained torch module, on the CPU, in eval mode
    checkpoint: dict
    splits: Any  # tasks.data.datasets.Splits
    section: Any  # the kind's params section
    tokenizer: Any  # tokenizers.Tokenizer, or None
    device: Any  # torch.device to predict on
    data_dir: Path


@dataclass
class Explanation:
    """What the explain stage hands a kind's ``explain``."""

    client: Any  # MlflowClient: figures and files go to run_id
    run_id: str
    model: Any  # the trained torch module, on the CPU, in eval mode
    checkpoint: dict
    splits: Any  # tasks.data.datasets.Splits
    section: Any  # the kind's params section
    tokenizer: Any  # tokenizers.Tokenizer, or None
    settings: Any  # tasks.schema.ExplainParams (global.explain)
    seed: int  # global.seed: the random maps are drawn from it
    builtin_data: bool  # the data is the built-in generator's, whose evidence is known by construction
    data_dir: Path


def auto_keys(section, prefix: str = "") -> list[str]:
    """The dotted keys of a section (or a part of it) that say `auto`."""
    keys = []
    for name, value in section:
        if isinstance(value, Section):
            keys += auto_keys(value, f"{prefix}{name}.")
        elif is_auto(value):
            keys.append(f"{prefix}{name}")
    return keys
