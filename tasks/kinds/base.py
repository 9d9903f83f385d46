"""What the pipeline knows about a kind of task, in one object: ``Kind``.

The stages (tasks/stages/), the served model (tasks/serving/) and the command line ask a kind's spec for
everything that differs between kinds: its params section, built-in data and importer, the files of its test
split, tokenizer, data loading, model, loss, evaluation, attention maps and serving input. Nothing outside
tasks/kinds/ branches on a kind's name.

Two families of kinds share most of that: ``Classifier`` (tasks/kinds/classification.py: one label per input, read
from a class token, attention rollout over the input) and ``SequenceKind`` (tasks/kinds/sequence.py: an
encoder-decoder writes a token sequence; cross-attention aligns it with the input). A kind module subclasses
one of them, fills in what is its own and ends with ``SPEC = TheKind()``; the registry
(tasks/kinds/__init__.py) finds it there.

Heavy libraries (torch, PIL, soundfile, tokenizers, matplotlib) are imported inside the methods that use them: every
command imports every spec (params validation needs their sections), and a cached run never calls those methods.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tasks.defaults import is_auto, resolved_section
from tasks.schema import Section, TaskParams

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


class Kind:
    """The spec of one kind. Class attributes say what it is; methods do its specific work."""

    name: ClassVar[str]  # what a task's `kind:` says; the MLflow tag `kind`
    order: ClassVar[int]  # position in lists of kinds (docs, the params schema)
    params: ClassVar[type[TaskParams]]  # its params.yaml section, validated on load
    metrics: ClassVar[tuple[str, ...]]  # test metrics, reported; the first is the primary metric
    higher_is_better: ClassVar[bool] = True  # of the primary metric: False for error rates
    input_column: ClassVar[str]  # the field of a serving request that holds the raw input
    model_class: ClassVar[str]  # 'attn_models.module:Class', built with model_args
    generator: ClassVar[str]  # 'module:function(out_dir, **builtin_arguments) -> summary': the built-in data
    importer: ClassVar[str]  # 'module:function(source, out_dir, **import_arguments) -> summary': the user's data
    manifest_layouts: ClassVar[tuple[str, ...]] = ()  # import layouts whose file names other files beside it
    # For model cards (tasks/tracking/model_card.py): what a request holds, how attention is read, what to mind.
    serving_input: ClassVar[str]
    attention_method: ClassVar[str]
    limits: ClassVar[str]

    @property
    def model_module(self) -> str:
        """The module of the model class: loaded by name, so no import statement shows it to the stage cache
        (tasks/caching.py), which follows it from here. (The data's generator and importer are in the data recipe.)"""
        return self.model_class.partition(":")[0]

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def val_metric(self) -> str:
        """The primary metric on the validation split (eval_val_accuracy, eval_val_bleu, eval_val_wer): what decides
        promotion and ranks a sweep, so that the test split stays an unbiased report."""
        return val_name(self.primary_metric)

    @property
    def val_metrics(self) -> tuple[str, ...]:
        """What the evaluate stage logs on the validation split: the primary metric's figure and the compress
        stage's metric (the same one for classifiers)."""
        return tuple(dict.fromkeys((self.val_metric, self.compress_metric)))

    def rank_key(self, score: float | None) -> float:
        """Sorting key that puts the best score first (missing scores last)."""
        if score is None:
            return float("inf")
        return -score if self.higher_is_better else score

    # ---- data ---------------------------------------------------------------------------------
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

    def split_files(self, data_dir: Path, split: str) -> list[Path]:
        """The files that make up one split (train, val, test) of the prepared data, sorted: the split's identity (its
        digest as an MLflow dataset input; two figures of a split are comparable only when its files are the same)."""
        raise NotImplementedError

    # ---- training -----------------------------------------------------------------------------
    def learn_tokenizer(self, data_dir: Path, section):
        """A tokenizers.Tokenizer learned from the training split, or None when the inputs have no tokens."""
        return None

    def auto_values(self, section, data_dir: Path, tokenizer) -> dict:
        """The values of the section's `auto` keys ({"model.embed_dim": 96, ...}), by the rules of tasks/defaults.py
        and the kind's own, from the prepared data (called only when some key says auto)."""
        return {}

    def resolve(self, section, data_dir: Path, tokenizer) -> tuple:
        """(the section with every `auto` key resolved from the prepared data, the resolved values by dotted key):
        what load_splits and model_args are given, so that the checkpoint's model arguments hold numbers."""
        if not auto_keys(section):
            return section, {}
        values = self.auto_values(section, data_dir, tokenizer)
        left = set(auto_keys(section)) - set(values)
        if left:
            raise ValueError(f"{self.name}: no rule resolves {', '.join(sorted(left))} (a bug: see tasks/defaults.py)")
        return resolved_section(section, values), values

    def load_splits(self, data_dir: Path, section, seed: int, tokenizer):
        """The prepared data as tasks.data.datasets.Splits (train with its augmentation, val, test)."""
        raise NotImplementedError

    def model_args(self, section, splits, tokenizer) -> dict:
        """The model constructor's arguments; saved in the checkpoint to rebuild the model."""
        raise NotImplementedError

    def build_model(self, args: dict):
        return load_object(self.model_class)(**args)

    def describe_model(self, section) -> str:
        """Model class and size, for run names: e.g. VisionTransformer-d4-w64-h4."""
        m = section.model
        return f"{self.model_class.rpartition(':')[2]}-d{m.depth}-w{m.embed_dim}-h{m.num_heads}"

    def logits_and_labels(self, model, inputs, targets):
        """The logits (N, classes) and the labels they should predict (N,) of a batch: the training loss and the
        validation accuracy are computed on these."""
        raise NotImplementedError

    def training_loss(self, model, inputs, targets, train):
        """(loss, logits, labels) of a training batch: label-smoothed cross-entropy on ``logits_and_labels`` (train:
        the section's train params). A kind whose model learns from more than its logits (an auxiliary loss)
        overrides it; validation scores ``logits_and_labels`` alone."""
        import torch.nn.functional as F

        logits, labels = self.logits_and_labels(model, inputs, targets)
        return F.cross_entropy(logits, labels, label_smoothing=train.label_smoothing), logits, labels

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, evaluation: Evaluation) -> dict[str, float]:
        """Compute the test metrics (keys: ``metrics``) and the validation figures (keys: ``val_metrics``), and log
        this kind's figures and files to the run."""
        raise NotImplementedError

    # 'module:function(spec, Explanation) -> attn_* metrics': scores the attention maps in the explain stage, or None
    explainer: ClassVar[str | None] = None
    # The two methods whose deletion AUC the explain stage prints and whose deletion gap `attnflow compare` shows.
    explain_headline: ClassVar[tuple[str, ...]] = ()

    def model_example(self, model, splits):
        """(input example, signature) for the logged pytorch model, or (None, None) when it has no single input."""
        return None, None

    def serving_config(self, section) -> dict | None:
        """Settings the served model reads (model_config), e.g. how to decode."""
        return None

    def serving_example(self, data_dir: Path, section):
        """A raw input as a client would send it (the value of ``input_column``), from the test split: the served
        model's input example."""
        raise NotImplementedError

    # ---- compression (tasks/stages/compress.py) ------------------------------------------------
    # The validation figure each compressed variant is scored on and the compact variant chosen by (a cheaper one than
    # evaluation's primary metric where that is slow), in the direction of higher_is_better; one of val_metrics.
    compress_metric: ClassVar[str]

    def compress_score(self, evaluation: Evaluation) -> float:
        """The compress_metric of evaluation.model (a variant of the trained model, on the CPU) on the validation
        split, as the evaluate stage computes it; nothing is logged."""
        raise NotImplementedError

    def timed_call(self, model, inputs, section) -> None:
        """What one latency measurement runs on a batch of test inputs (as a test loader gives them): the work of
        answering a request for them."""
        raise NotImplementedError

    # ---- serving ------------------------------------------------------------------------------
    serving_params: ClassVar[dict | None] = None  # what a request's "params" may set, with the defaults

    def serve(self, model, checkpoint: dict, tokenizer, config: dict | None, values: list,
              params: dict | None = None) -> list[dict]:  # fmt: skip
        """Answers, one per raw input value of a request (params: the request's, within ``serving_params``)."""
        raise NotImplementedError
