"""Defaults that travel: the settings a params key gets when it says ``auto``, resolved from the prepared data.

params.yaml's numbers are tuned for the built-in data. A user who imports a dataset of another size would keep them,
whatever the data; with ``auto`` (or, for a key that has no number of its own, by leaving it out) the train stage
resolves the key from what it reads: the number of training examples and classes, the token lengths of the training
split, the image size. An explicit number always wins. The rules are small pure functions here (the size tiers shared
by every kind) and in each kind's module (what only it knows: its depths, its lengths, its augmentation);
each kind's ``auto_values`` applies them, and ``Kind.resolve`` puts the resolved values into the section, so
that the model's arguments in the checkpoint, and every stage that rebuilds the model from them, hold numbers.

The rules (also in docs/reference/auto-defaults.md):

==========================  ===========  =====  =====
training examples           embed_dim    depth  heads
==========================  ===========  =====  =====
fewer than 2,000            64           2      4
2,000 to 9,999              96           3      4
10,000 to 49,999            128          4      4
50,000 to 249,999           192          6      6
250,000 or more             256          8      8
==========================  ===========  =====  =====

heads: width // 32, at least 4 and at most 8, at most width // 8 (heads of 8 dimensions or more), and a divisor of
the width (the next smaller one that divides it). An explicit num_heads with an ``auto`` width rounds the tier's width
up to a multiple of the heads.

==========================  ====================
examples per class          augmentation strength
==========================  ====================
fewer than 100              1.5
100 to 999                  1.0
1,000 to 4,999              0.75
5,000 or more               0.5
==========================  ====================

(Few examples a class: stronger augmentation against overfitting; many: weaker, the data itself varies enough.)
A sequence task has no classes: its examples per class are its training examples.

token lengths: the 99th percentile of the training split's token counts (with the tokens the model adds), rounded up
to a multiple of 8, at least 16 and at most 512 (attention's cost grows with the square of the length).

training length (``train.epochs``, ``train.patience``; see ``auto_epochs`` and ``auto_patience``): enough epochs for
at least MIN_STEPS (480) optimizer steps, and at least MIN_EPOCHS (5); early stopping after a quarter of those
epochs without a better validation figure, at least MIN_EPOCHS (so a plan of 5 epochs is never cut short).

The cache stays right: the train stage's key holds the params (with ``auto``), the data's recipe (which fixes the
prepared data these rules read) and the code (this module, imported by every kind's), so the resolved values are
a function of the key.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, WithJsonSchema

AUTO = "auto"
# Fine-tuning a pretrained backbone (model.backbone): the usual recipe as the defaults. The backbone learns at a
# small rate (its own, model.backbone.lr; the new head at train.lr), warmed up, then decayed linearly to zero.
FINETUNE_LR = 5e-5
FINETUNE_SCHEDULE = "linear"
SIZE_TIERS = (  # (fewer training examples than this, (embed_dim, depth)); the last tier has no upper bound
    (2_000, (64, 2)),
    (10_000, (96, 3)),
    (50_000, (128, 4)),
    (250_000, (192, 6)),
    (math.inf, (256, 8)),
)
HEAD_DIM = 32  # width per head the rule aims at
MIN_HEAD_DIM = 8
HEADS_RANGE = (4, 8)
STRENGTH_TIERS = ((100, 1.5), (1_000, 1.0), (5_000, 0.75), (math.inf, 0.5))  # (fewer examples a class, strength)
LENGTH_PERCENTILE = 99
LENGTH_MULTIPLE = 8
LENGTH_RANGE = (16, 512)
# Training length. MIN_STEPS: the built-in tasks were tuned (on validation) to plans of 480 to 900 optimizer steps;
# the shortest, connected-digits' 5 epochs of 96 batches, is the least training this project has seen train one of
# these from-scratch models to a clear score. MIN_EPOCHS: that same task's 5 epochs, also about what AG News (9,000
# texts) needed (docs/real_data.md): on large data each epoch is hundreds of steps, and 5 passes bound the run.
MIN_STEPS = 480
MIN_EPOCHS = 5
PATIENCE_SHARE = 4  # early stopping waits for a quarter of the planned epochs without improvement
LENGTH_KEYS = ("train.epochs", "train.patience")  # resolved from the training split's size (after the model's keys)


# ---- the params side: keys that take a number or `auto` ----------------------------------------------------
def auto_or_number(kind: type, low, high, low_open: bool = False, nullable: bool = False):
    """A params type taking ``auto`` or a number of kind in [low, high] (low excluded when low_open), or null when
    nullable; a wrong value is one message naming what the key takes (pydantic would give one per member of the
    union)."""
    low_text = f"above {low}" if low_open else f"from {low}"
    number = "an integer" if kind is int else "a number"
    what = f"'{AUTO}'{', null' if nullable else ''} or {number} {low_text} to {high}"

    def check(value):
        if value == AUTO or value is None and nullable:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and isinstance(value, float)):
            raise ValueError(what)
        if value < low or value == low and low_open or value > high or value != value:
            raise ValueError(what)
        return value

    # The JSON Schema (docs/reference/params.schema.json) says what `check` accepts: the validator hides the bounds
    # from pydantic's own schema.
    numbers = {"type": "integer" if kind is int else "number", "maximum": high}
    numbers["exclusiveMinimum" if low_open else "minimum"] = low
    schema = {"anyOf": [numbers, {"const": AUTO}] + ([{"type": "null"}] if nullable else [])}
    if nullable:
        return Annotated[kind | Literal["auto"] | None, BeforeValidator(check), WithJsonSchema(schema)]
    return Annotated[kind | Literal["auto"], BeforeValidator(check), WithJsonSchema(schema)]


def is_auto(value) -> bool:
    return value == AUTO


def finetune_defaults(raw):
    """A task section as given (before validation) with the fine-tuning schedule when it names a backbone and no
    train.lr_schedule: validated params then hold it, so the run's params say what trained."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not raw["model"].get("backbone"):
        return raw
    train = raw.get("train")
    if isinstance(train, dict) and train.get("lr_schedule") is None:
        raw = raw | {"train": train | {"lr_schedule": FINETUNE_SCHEDULE}}
    return raw


# ---- the rules -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    embed_dim: int
    depth: int
    num_heads: int


def tier(train_examples: int) -> tuple[int, int]:
    """(embed_dim, depth) of the size tier of that many training examples."""
    return next(size for bound, size in SIZE_TIERS if train_examples < bound)


def heads_for(width: int) -> int:
    """Heads of about HEAD_DIM dimensions, within HEADS_RANGE, of at least MIN_HEAD_DIM, dividing the width."""
    heads = min(max(width // HEAD_DIM, HEADS_RANGE[0]), HEADS_RANGE[1], max(1, width // MIN_HEAD_DIM))
    while width % heads:
        heads -= 1
    return heads


def model_size(train_examples: int, embed_dim=AUTO, depth=AUTO, num_heads=AUTO) -> Size:
    """The model size for that many training examples; an explicit embed_dim, depth or num_heads is kept (a width
    chosen for explicit heads is a multiple of them)."""
    width, layers = tier(train_examples)
    if not is_auto(embed_dim):
        width = embed_dim
    elif not is_auto(num_heads):
        width = -(-width // num_heads) * num_heads
    heads = heads_for(width) if is_auto(num_heads) else num_heads
    return Size(width, layers if is_auto(depth) else depth, heads)


def augment_strength(examples_per_class: float) -> float:
    """How strongly to augment (1.0: the settings as written) for that many training examples per class."""
    return next(strength for bound, strength in STRENGTH_TIERS if examples_per_class < bound)


def token_length(lengths, extra: int = 0) -> int:
    """A max_len from the training split's token counts (plus the extra tokens the model adds to each)."""
    import numpy as np

    high = float(np.percentile(np.asarray(lengths, dtype=float), LENGTH_PERCENTILE)) + extra if len(lengths) else 0
    rounded = math.ceil(high / LENGTH_MULTIPLE) * LENGTH_MULTIPLE
    return min(max(rounded, LENGTH_RANGE[0]), LENGTH_RANGE[1])


def steps_per_epoch(train_examples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: one per batch, the last one partial (the loaders keep it)."""
    return max(1, math.ceil(train_examples / batch_size))


def auto_epochs(train_examples: int, batch_size: int) -> int:
    """Epochs for that many training examples at that batch size: enough for MIN_STEPS optimizer steps, and at least
    MIN_EPOCHS.

    Why steps: an optimizer step is the unit of learning, and a fixed number of epochs means 5 steps on 31 examples
    (one batch an epoch) but 15,000 on 100,000. So small data gets more epochs (31 examples, batch 32: 480 epochs of
    one step; 1,000: 15 epochs of 32), and large data MIN_EPOCHS (100,000: 5 epochs, 15,625 steps), which bounds
    the run: epochs never exceed MIN_STEPS, and train.max_steps and train.budget_minutes still cap it."""
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch(train_examples, batch_size)))


def auto_patience(epochs: int) -> int:
    """Epochs without a better validation figure before an ``auto`` training stops: a quarter of the planned epochs,
    at least MIN_EPOCHS.

    The long plans MIN_STEPS makes on small data (480 one-step epochs) are where early stopping saves most, and there
    validation on a few examples is noisy, so it waits a quarter of the plan (120 epochs). A plan of MIN_EPOCHS
    epochs is never cut short: the cosine decay's last epochs are where a short plan gains most."""
    return max(MIN_EPOCHS, math.ceil(epochs / PATIENCE_SHARE))


def length_values(train, train_examples: int) -> dict[str, object]:
    """The resolved training-length keys of a train section ({"train.epochs": 480, "train.patience": 120}) that say
    auto. patience auto follows epochs: on (auto_patience) when epochs is auto, off (None) when epochs is a number,
    which trains as the params file did before the key existed."""
    values = {}
    epochs = train.epochs
    if is_auto(epochs):
        epochs = values["train.epochs"] = auto_epochs(train_examples, train.batch_size)
    if is_auto(train.patience):
        values["train.patience"] = auto_patience(epochs) if is_auto(train.epochs) else None
    return values


def most_steps(train, steps_per_epoch: int) -> int | float:
    """The optimizer steps a training may take in all: its epochs of steps_per_epoch, or fewer under train.max_steps
    (a resolved section: epochs is a number)."""
    return min(train.epochs * steps_per_epoch, train.max_steps or math.inf)


def short_training(task: str, train, train_examples: int) -> str | None:
    """The warning for a plan of fewer than MIN_STEPS optimizer steps (a resolved section), naming the key that keeps
    it short; None for a plan of at least that many. Under a time budget the plan is its most: the budget can only
    shorten it."""
    per_epoch = steps_per_epoch(train_examples, train.batch_size)
    if train.max_batches_per_epoch is not None:
        per_epoch = min(per_epoch, train.max_batches_per_epoch)
    steps = most_steps(train, per_epoch)
    if steps >= MIN_STEPS:
        return None
    if train.max_steps is not None and train.max_steps < train.epochs * per_epoch:
        key = "train.max_steps"
    elif per_epoch < steps_per_epoch(train_examples, train.batch_size):
        key = "train.max_batches_per_epoch"
    else:
        key = f"train.epochs (auto: {auto_epochs(train_examples, train.batch_size)} epochs)"
    return (f"{task}: training is planned for {steps} optimizer steps ({train_examples} examples, batch "
            f"{train.batch_size}), fewer than the {MIN_STEPS} it takes to train a model from scratch; raise "
            f"tasks.{task}.{key}")  # fmt: skip


def size_values(model, train_examples: int, depth_keys: dict[str, object] | None = None) -> dict[str, int]:
    """The resolved model-size keys of a model section ({"model.embed_dim": 96, ...}) that say auto. depth_keys: the
    section's depth keys and how each follows from the tier's depth (a function of it; an explicit depth key that
    another follows is the kind's to read); default {"depth": same}."""
    size = model_size(train_examples, model.embed_dim, AUTO, model.num_heads)
    values = {"embed_dim": size.embed_dim, "num_heads": size.num_heads}
    for key, from_depth in (depth_keys or {"depth": lambda depth: depth}).items():
        values[key] = from_depth(size.depth)
    return {f"model.{key}": value for key, value in values.items() if is_auto(getattr(model, key))}


def resolved_section(section, values: dict[str, object]):
    """A copy of a params section with dotted keys ("model.embed_dim") set, validated again (the rules' results pass
    the same checks as a user's numbers)."""
    raw = section.model_dump()
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    return type(section).model_validate(raw)


RESOLVED_PREFIX = "resolved."  # MLflow params of a run: resolved.model.embed_dim = 96, ...


def log_resolved(client, run_id: str, values: dict[str, object]) -> None:
    """Record the resolved values on the MLflow run as params (RESOLVED_PREFIX + dotted key): the run's params hold
    `auto`, these the numbers it trained with."""
    from mlflow.entities import Param

    if values:
        client.log_batch(run_id, params=[Param(RESOLVED_PREFIX + key, str(value)) for key, value in values.items()])


def describe(values: dict[str, object]) -> str:
    """The resolved values as one line for the log: 'model.embed_dim=96, model.depth=3'."""
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in values.items())  # fmt: skip
