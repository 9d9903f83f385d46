"""The parts of params.yaml every task's section is built from: each kind's module (tasks/kinds/) declares the
section of its tasks from these, and tasks/params.py assembles the whole file.

Every section forbids unknown keys and is frozen, so a typo stops the run with the key named and a stage cannot
change what another reads.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from tasks.defaults import AUTO, FINETUNE_LR, auto_or_number, is_auto

Fraction = Field(ge=0.0, lt=1.0)
SplitFraction = Field(gt=0, lt=0.5)  # of the data, held out for a split (val or test)


LARGEST_INT = 2**32 - 1  # no count, size or seed in these params is larger (NumPy's seeds stop there)


class Section(BaseModel):
    """Forbids unknown keys, NaN and infinite floats, booleans where a number belongs (YAML reads `yes`, `on` as
    booleans) and integers beyond LARGEST_INT; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def numbers_are_numbers(cls, value, info):
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float, int | None, float | None):
            raise ValueError("a number, not a boolean")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INT:
            raise ValueError(f"out of range (at most {LARGEST_INT})")
        return value


def check_range(name: str, low, high) -> None:
    if low > high:
        raise ValueError(f"{name}: the low end ({low}) is above the high end ({high})")


class DistributedParams(Section):
    """How many processes train one model together (tasks/training/distributed.py); 1 trains in the stage's own."""

    nproc: int = Field(1, ge=1, le=1024)  # processes that train together, each on batch_size / nproc examples


Epochs = auto_or_number(int, 1, 1_000_000)
Patience = auto_or_number(int, 1, 1_000_000, nullable=True)


class TrainParams(Section):
    # passes over the training split; auto (and left out): from its size and batch_size, enough for a minimum of
    # optimizer steps (tasks/defaults.py auto_epochs)
    epochs: Epochs = AUTO
    batch_size: int = Field(ge=1)  # training examples per optimizer step (over all processes)
    lr: float = Field(gt=0, le=1)  # the peak learning rate (AdamW), reached after warm-up
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled weight decay
    warmup_epochs: int = Field(1, ge=0)  # epochs of linear warm-up from zero to lr
    label_smoothing: float = Fraction  # the share of each target's probability spread over the other classes
    max_batches_per_epoch: int | None = Field(None, ge=1)  # shrinks epochs for smoke tests
    max_steps: int | None = Field(None, ge=1)  # training steps in all: the last epoch ends early (None: every epoch)
    # minutes of training: the steps that fit are planned after the first epoch (tasks/training/budget.py), and
    # `epochs` (and max_steps) are then the most it may train
    budget_minutes: float | None = Field(None, gt=0, le=10080)
    # the learning rate after warm-up: cosine decay, or wsd (stable, then decay over the last fifth); null: wsd with
    # a budget (its plan can follow the pace), cosine without (tasks/training/budget.py)
    # linear: warm-up, then a linear decay to zero (the fine-tuning default, tasks/defaults.py FINETUNE_SCHEDULE)
    lr_schedule: Literal["cosine", "wsd", "linear"] | None = None
    # validate and keep an exponential moving average of the weights (tasks/training/ema.py), e.g. 0.999; null: off
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # checkpoint averaging: the mean of the weights at the end of the last N epochs, kept when it validates better
    # than the best epoch (tasks/training/ema.py), e.g. 3; null: off
    average_epochs: int | None = Field(None, ge=2)
    # the forward passes' number format (torch.autocast): bf16 (bfloat16 matrix products, float32 weights and
    # optimizer) or fp32; null: bf16 on a GPU that has it, fp32 on the CPU (tasks/training/loop.py, autocast_dtype)
    precision: Literal["fp32", "bf16"] | None = None
    # early stopping: epochs without a better validation accuracy before training stops (the best epoch is kept);
    # null: off; auto: on when epochs is auto (tasks/defaults.py auto_patience), off when epochs is a number
    patience: Patience = AUTO
    distributed: DistributedParams = DistributedParams()

    @model_validator(mode="after")
    def processes_split_the_batch(self):
        """Each process takes batch_size / nproc examples of every batch, so the global batch (and with it the
        learning-rate schedule's meaning) stays what one process trains on."""
        nproc = self.distributed.nproc
        if self.batch_size % nproc:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by distributed.nproc ({nproc})")
        return self

    @model_validator(mode="after")
    def one_weight_average(self):
        """The EMA already stands in for the weights that validation scores; a mean of its epochs is not a mean of
        the training's checkpoints."""
        if self.ema_decay is not None and self.average_epochs is not None:
            raise ValueError("ema_decay and average_epochs: give one weight average, not both")
        return self

    @model_validator(mode="after")
    def budget_is_planned_in_warmup(self):
        """Under cosine decay, the budget's plan is made after the first epoch; when that epoch is warm-up, its
        learning rates do not depend on the plan, so the run is the same as one of that many steps
        (tasks/training/budget.py)."""
        if self.budget_minutes is not None and self.warmup_epochs < 1 and self.lr_schedule in ("cosine", "linear"):
            raise ValueError(
                f"budget_minutes with lr_schedule {self.lr_schedule} needs warmup_epochs >= 1 (the plan is made after "
                "the first epoch)"
            )
        return self


class EvalParams(Section):
    batch_size: int = Field(256, ge=1)  # examples per forward pass in evaluation
    attention_maps: int = Field(4, ge=0, le=32)  # test samples drawn with their attention


class DecodeParams(EvalParams):
    """How a sequence model decodes in evaluation and serving."""

    beam_size: int = Field(4, ge=1, le=32)
    length_penalty: float = Field(0.6, ge=0)  # GNMT: scores divided by ((5 + length) / 6) ** length_penalty
    max_decode_len: int = Field(128, ge=1)  # at most this many tokens per output,
    decode_len_ratio: float = Field(1.5, gt=0)  # and at most ratio * source length (tokens, frames) + 10

    def decode_settings(self) -> dict:
        """The keyword arguments of decoding (tasks/kinds/sequence.py decode_batches)."""
        return self.model_dump(
            include={"beam_size", "length_penalty", "max_decode_len", "decode_len_ratio", "batch_size"}
        )


Width = auto_or_number(int, 8, 4096)
Heads = auto_or_number(int, 1, 512)
Depth = auto_or_number(int, 1, 24)
# SpecAugment (attn_models/audio_augment.py), for every kind that hears audio: how many masks of each kind a training
# example gets, and the widest of each (mel channels, or 10 ms frames); each kind sets its own defaults.
MaskCount = Annotated[int, Field(ge=0, le=8)]
MaskWidth = Annotated[int, Field(ge=0, le=1000)]
Strength = auto_or_number(float, 0, 4)  # an augmentation's strength: 1 = as written, 0 = none (tasks/defaults.py)


class AttentionParams(Section):
    """What every attention model's section has: width, heads, MLP width and dropout. Width and heads may be `auto`
    (the default): resolved from the training data by tasks/defaults.py."""

    embed_dim: Width = AUTO  # the width of every token's vector; auto: from the training examples (tasks/defaults.py)
    num_heads: Heads = AUTO  # attention heads per layer (they divide embed_dim); auto: from embed_dim
    mlp_ratio: float = Field(2.0, gt=0)  # each block's feed-forward width, as a multiple of embed_dim
    dropout: float = Fraction  # the dropout probability of the attention weights and the blocks' outputs

    def attention_args(self) -> dict:
        """The arguments every model in attn_models takes for its attention layers (of a resolved section: `auto` is
        turned into numbers by Kind.resolve before a model is built)."""
        args = {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout}  # fmt: skip
        unresolved = [key for key, value in args.items() if is_auto(value)]
        if unresolved:
            raise ValueError(f"model {', '.join(unresolved)} still 'auto': the section must be resolved first "
                             "(Kind.resolve)")  # fmt: skip
        return args

    @model_validator(mode="after")
    def heads_divide_embedding(self):
        if is_auto(self.embed_dim) or is_auto(self.num_heads):  # the rules choose what divides (tasks/defaults.py)
            return self
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        return self


class BackboneParams(Section):
    """A pretrained Hugging Face encoder a classifier fine-tunes (tasks/backbones.py, attn_models/pretrained.py): its
    embeddings and layers start from the pretrained weights, a new head classifies its class token."""

    source: str = Field(min_length=1)  # a save_pretrained folder (relative: from the project root) or a hub id
    revision: str | None = Field(None, min_length=1)  # hub ids only: a branch, tag or commit
    freeze_layers: int = Field(0, ge=0, le=1000)  # the embeddings and the first N layers stay as pretrained (0: none)
    # layer-wise learning-rate decay: layer l of L trains at lr * layer_decay ** (L - l), the embeddings at
    # lr * layer_decay ** (L + 1); null: one rate for the whole backbone
    layer_decay: float | None = Field(None, gt=0, le=1)
    lr: float = Field(FINETUNE_LR, gt=0, le=1)  # the backbone's peak learning rate; train.lr is the new head's


class ModelParams(AttentionParams):
    """A classifier's model (text, image, speech): its encoder's depth and how the head reads the encoder's outputs:
    `cls` the class token's output, `attention` sequence pooling (a learned softmax over every output;
    attn_models/attention.py, ClassTokenClassifier)."""

    depth: Depth = AUTO  # Transformer blocks; auto: from the training examples (tasks/defaults.py)
    pool: Literal["cls", "attention"] = "cls"  # cls: the head reads the class token; attention: sequence pooling

    def attention_args(self) -> dict:
        return super().attention_args() | {"pool": self.pool}


class PretrainParams(Section):
    """A self-supervised pretrain stage before training (tasks/stages/pretrain.py): the task's model (its `model`
    section, so the encoder transfers) learns from unlabelled data first, and training starts its encoder from it. A
    kind that can pretrain narrows ``objective`` to its own (text: masked_tokens); `auto` is the kind's."""

    # the unlabelled data: a file, or a folder of them (relative paths are read from the project root, as data
    # imports' are); copied into data/<task>/ by the prepare stage, so DVC versions it with the labelled data
    source: str = Field(min_length=1)
    objective: str = AUTO
    mask_ratio: float = Field(0.15, gt=0, lt=1)  # of each example's units (tokens, patches, frames), predicted
    steps: int | None = Field(1000, ge=1)  # optimizer steps in all; null: as many as budget_minutes allows
    budget_minutes: float | None = Field(None, gt=0, le=10080)  # stop after this many minutes (with steps: either)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0, le=1)  # AdamW's, after a linear warm-up over the first tenth of the steps
    log_every: int = Field(10, ge=1)  # steps per point of the loss and accuracy curves (each the mean since the last)

    @model_validator(mode="after")
    def has_an_end(self):
        if self.steps is None and self.budget_minutes is None:
            raise ValueError("steps or budget_minutes: give at least one, or pretraining never ends")
        return self


class TaskParams(Section):
    """What every task's section has besides its own data and model sub-sections: its kind (each kind's section
    narrows it to its own name, which is how params.yaml picks the schema of a task) and how it trains and
    evaluates."""

    kind: str  # what the data and the model are: text, image, speech, translation, asr (tasks/kinds/)
    train: TrainParams  # how the model trains (the train stage)
    eval: EvalParams = EvalParams()  # how it is evaluated (the evaluate stage)


class DataSection(Section):
    """A task's data: built-in generated data (builtin) or the user's own (import_from, which wins when set).
    Subclasses declare both fields with their own types."""

    @model_validator(mode="after")
    def one_source(self):
        if self.builtin is None and self.import_from is None:
            raise ValueError("give data.builtin (generated data) or data.import_from (your own data)")
        return self


class ExplainParams(Section):
    """The explain stage (tasks/stages/explain.py): on how many test examples the attention maps are scored."""

    samples: int = Field(32, ge=1, le=10_000)  # test examples, evenly spaced over the test split
    steps: int = Field(10, ge=2, le=100)  # points of each deletion and insertion curve after the first
    viewer_examples: int = Field(8, ge=1, le=64)  # of those, the first shown in the HTML viewer


class ServingLimits(Section):
    """What one request to a served model may hold (tasks/data/requests.py); over a limit it gets HTTP 400."""

    max_rows: int = Field(64, ge=1, le=100_000)  # examples per request
    max_input_mb: float = Field(16.0, gt=0, le=1024)  # one value: a base64 file, a text, an array (as float32)
    max_image_pixels: int = Field(4096 * 4096, ge=64)  # width x height, read from the image header before decoding
    max_audio_seconds: float = Field(60.0, gt=0, le=3600)


# The compress stage's variants: name -> (heads pruned, Linear layers quantized to int8). "float" is the trained model,
# the reference every other variant's metric is compared with.
VARIANTS = {"float": (False, False), "int8": (False, True), "pruned": (True, False), "pruned+int8": (True, True)}
REFERENCE_VARIANT = "float"


class CompressParams(Section):
    """The compress stage (tasks/stages/compress.py): which smaller variants of the trained model are measured, and
    how much worse than the float model the one registered as `compact` may be."""

    enabled: bool = True  # false: no compress stage, and no `compact` model
    variants: list[Literal[tuple(VARIANTS)]] = list(VARIANTS)
    prune_fraction: float = Field(0.5, gt=0, lt=1)  # of each layer's heads, the least important (one always stays)
    importance_batches: int = Field(4, ge=1, le=1000)  # validation batches the head importance is summed over
    finetune_steps: int = Field(100, ge=0, le=100_000)  # training steps after pruning, at train.lr (0: none)
    # relative to the float model's metric on the validation split, in its direction: 0.02 = at most 2% worse (a
    # metric of 0 allows no drop)
    max_metric_drop: float = Field(0.02, ge=0, le=1)
    latency_repeats: int = Field(20, ge=1, le=10_000)  # timed calls per variant and batch size (after one warm-up)
    threads: int = Field(1, ge=1, le=256)  # torch CPU threads while timing

    @field_validator("variants")
    @classmethod
    def float_once_and_each_once(cls, variants: list[str]) -> list[str]:
        if REFERENCE_VARIANT not in variants:
            raise ValueError(f"must include {REFERENCE_VARIANT!r}: the other variants are compared with it")
        if len(set(variants)) != len(variants):
            raise ValueError(f"names a variant twice: {variants}")
        return variants


def without_absent(*keys: str):
    """A wrap serializer leaving out the keys whose value is None: a section that is absent is not written as null, so
    the params of a task without it (logged, hashed into the lineage's params_hash) are what they were before the key
    existed."""

    def serialize(self, handler):
        return {key: value for key, value in handler(self).items() if key not in keys or value is not None}

    return model_serializer(mode="wrap")(serialize)
