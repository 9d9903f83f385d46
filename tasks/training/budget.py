"""Time-budgeted training (``train.budget_minutes``): a user knows how long they can wait, not how many epochs a new
dataset needs. The loop trains one epoch, times it (training and validation), and plans how many training steps fit in
the budget at that pace (whole epochs, then a last one cut short: ``train.max_steps``); the learning-rate schedule is
then sized to them.

The plan is made once, after the first epoch, and never changed: the first epoch is all learning-rate warm-up
(budget_minutes needs warmup_epochs >= 1, checked in the params), and warm-up does not depend on how many epochs
follow, so a budgeted run is exactly the run of ``max_steps: <planned>`` without a budget. That is how ``reproduce``
repeats one (``replay_plan`` in flows/experiments.py): the number of steps is recorded, the machine's speed is not
repeatable.

The first epoch pays one-time costs (allocations, caches warming up, lazy initialisation): on a small model it can
take twice as long as the next. So the pace of the steps to come is read from the second half of its batches, and
a validation pass's from its own; the rest of the budget is filled at that pace to the nearest step, so the training
ends within a step of the budget when the pace holds (on a shared machine it holds as well as the load does).
"""

import math
from dataclasses import dataclass

PLANNED_STEPS = "planned_steps"  # the MLflow metric a budgeted training records its plan under (train.max_steps)
PLANNED_EPOCHS = "planned_epochs"  # the same in epochs (the last one may be cut short)
FIRST_EPOCH_SECONDS = "first_epoch_seconds"
STEP_SECONDS = "planned_step_seconds"  # the pace the plan assumed after the first epoch
VALIDATION_SECONDS = "planned_validation_seconds"


@dataclass(frozen=True)
class Pace:
    """How long the epochs after the first are expected to take: per training step, and per validation pass."""

    step_seconds: float
    validation_seconds: float

    def epoch_seconds(self, steps: int) -> float:
        return steps * self.step_seconds + self.validation_seconds


def measured_pace(steps: int, halfway: float, trained: float, validated: float) -> Pace:
    """The pace without the first epoch's one-time costs. Times are seconds since the epoch began: halfway when batch
    steps // 2 began, trained when the last batch ended, validated when validation ended."""
    return Pace((trained - halfway) / (steps - steps // 2), validated - trained)


def planned_steps(budget_seconds: float, first_epoch_seconds: float, pace: Pace, steps_per_epoch: int, most: int):
    """Training steps in all, the first epoch's included, that fill the budget: the first epoch as it took, then
    whole epochs at the pace, then in what is left a last epoch cut short (its validation counted), to the nearest
    step. At least the first epoch, at most ``most`` (train.epochs x steps per epoch, or train.max_steps)."""
    left = budget_seconds - first_epoch_seconds
    whole = max(0, math.floor(left / max(pace.epoch_seconds(steps_per_epoch), 1e-9)))
    rest = left - whole * pace.epoch_seconds(steps_per_epoch) - pace.validation_seconds
    part = min(steps_per_epoch - 1, max(0, math.floor(rest / max(pace.step_seconds, 1e-9) + 0.5)))
    return max(min(steps_per_epoch, most), min(most, steps_per_epoch * (1 + whole) + part))


class WarmupCosine:
    """Learning-rate factor per step: linear warm-up over warmup_steps, then cosine decay to zero at total_steps.

    An object rather than a closure so that a budget's plan can set total_steps after the first epoch, and so that
    torch's LambdaLR saves total_steps with the schedule's state (an interrupted run resumes with its plan)."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps, self.warmup_steps = total_steps, warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def describe_plan(budget_minutes: float, first_epoch_seconds: float, pace: Pace, steps: int, steps_per_epoch: int,
                  most: int) -> str:  # fmt: skip
    """The plan in one line, for the log and the run's `train_schedule` tag."""
    capped = " (the most train.epochs / train.max_steps allow)" if steps == most else ""
    epochs = math.ceil(steps / steps_per_epoch)
    expected = (
        first_epoch_seconds + (steps - steps_per_epoch) * pace.step_seconds + (epochs - 1) * pace.validation_seconds
    )
    return (
        f"budget {budget_minutes:g} min; first epoch {first_epoch_seconds:.1f} s, then {pace.step_seconds:.3f} s "
        f"a step and {pace.validation_seconds:.1f} s a validation -> {steps} steps "
        f"({steps / steps_per_epoch:.2f} epochs of {steps_per_epoch}){capped}, about {expected / 60:.1f} min"
    )
