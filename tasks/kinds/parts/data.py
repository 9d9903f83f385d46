"""The data part of a kind: its built-in data (``generator``), the import of a user's data (``importer``), the files
of each prepared split, the tokenizer learned from the training split, the `auto` keys resolved from the data, and
the prepared splits loaded for training and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from tasks.defaults import LENGTH_KEYS, is_auto, resolved_section
from tasks.kinds.base import SPLIT_FILE_KEYS, auto_keys, resolve


class DataPart(ABC):
    generator: ClassVar[str]  # 'module:function(out_dir, **builtin_arguments) -> summary': the built-in data
    importer: ClassVar[str]  # 'module:function(source, out_dir, **import_arguments) -> summary': the user's data
    manifest_layouts: ClassVar[tuple[str, ...]] = ()  # import layouts whose file names other files beside it
    # 'module:function(source, out_dir) -> summary': copies pretrain.source's unlabelled data into the prepared data
    # (None: the kind has no pretrain stage)
    unlabelled_importer: ClassVar[str | None] = None
    pretrain_objective: ClassVar[str | None] = None  # what pretrain.objective `auto` means for the kind

    def builtin_arguments(self, section, seed: int) -> dict:
        """The generator's arguments: the built-in data section, the seed and what else shapes the files."""
        return section.data.builtin.model_dump() | {"seed": seed}

    def import_arguments(self, section, seed: int) -> dict:
        """The importer's arguments (JSON-able: they are recorded in the data recipe)."""
        return section.data.import_from.model_dump(mode="json") | {"seed": seed}

    def import_paths(self, import_from, root: Path) -> dict[str, Path]:
        """What the import reads, resolved against the project root: the source ('path') and any split file the
        import settings name under 'val' or 'test'."""
        paths = {"path": resolve(import_from.path, root)}
        for split in SPLIT_FILE_KEYS:
            split_file = getattr(import_from, split, None)
            if split_file is not None:
                paths[split] = resolve(split_file.path, root)
        return paths

    @abstractmethod
    def split_files(self, data_dir: Path, split: str) -> list[Path]:
        """The files that make up one split (train, val, test) of the prepared data, sorted: the split's identity (its
        digest as an MLflow dataset input; two figures of a split are comparable only when its files are the same)."""

    def learn_tokenizer(self, data_dir: Path, section):
        """A tokenizers.Tokenizer learned from the training split, or None when the inputs have no tokens."""
        return None

    def auto_values(self, section, data_dir: Path, tokenizer) -> dict:
        """The values of the section's `auto` keys ({"model.embed_dim": 96, ...}), by the rules of tasks/defaults.py
        and the kind's own, from the prepared data (called only when some key says auto)."""
        return {}

    def resolve(self, section, data_dir: Path, tokenizer) -> tuple:
        """(the section with every `auto` key resolved from the prepared data, the resolved values by dotted key):
        what load_splits and model_args are given, so that the checkpoint's model arguments hold numbers. The
        training length (LENGTH_KEYS) is left `auto`: it is resolved from the loaded training split
        (tasks/training/job.py)."""
        keys = set(auto_keys(section)) - set(LENGTH_KEYS)
        if not keys:
            return section, {}
        values = self.auto_values(section, data_dir, tokenizer) | self.objective_value(section)
        left = keys - set(values)
        if left:
            raise ValueError(f"{self.name}: no rule resolves {', '.join(sorted(left))} (a bug: see tasks/defaults.py)")
        return resolved_section(section, values), values

    def objective_value(self, section) -> dict:
        """pretrain.objective when it says `auto`: the kind's own objective (pretrain_objective)."""
        pretrain = getattr(section, "pretrain", None)
        if pretrain is None or not is_auto(pretrain.objective):
            return {}
        return {"pretrain.objective": self.pretrain_objective}

    @abstractmethod
    def load_splits(self, data_dir: Path, section, seed: int, tokenizer):
        """The prepared data as tasks.data.datasets.Splits (train with its augmentation, val, test)."""
