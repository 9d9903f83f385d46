"""Time-budgeted training (``train.budget_minutes``): a user knows how long they can wait, not how many epochs a new
dataset needs. The loop trains one epoch, times it (training and validation), and plans how many epochs fit in the
budget at that pace; the learning-rate schedule is then sized to that many epochs.

The plan is made once, after the first epoch, and never changed: the first epoch is all learning-rate warm-up
(budget_minutes needs warmup_epochs >= 1, checked in the params), and warm-up does not depend on how many epochs
follow, so a budgeted run is exactly the run of ``epochs: <planned>`` without a budget. That is how ``reproduce``
repeats one (``replay_plan`` in flows/experiments.py): the number of epochs is recorded, the machine's speed is not
repeatable.

The first epoch pays one-time costs (allocations, caches warming up, lazy initialisation): on a small model it can
take twice as long as the next. So the pace of the epochs to come is read from the second half of its batches
(scaled to all of them) plus its validation, and the rest of the budget is divided by that pace and rounded to the
nearest whole epoch: the training ends within half an epoch of the budget when the pace holds.
"""

import math

PLANNED_EPOCHS = "planned_epochs"  # the MLflow metric a budgeted training records its plan under
FIRST_EPOCH_SECONDS = "first_epoch_seconds"
EPOCH_SECONDS = "planned_epoch_seconds"  # the pace the plan assumed for the epochs after the first


def planned_epochs(budget_seconds: float, first_epoch_seconds: float, epoch_seconds: float, most: int) -> int:
    """Epochs in all (the first included) that fill the budget: the first as it took, the others at epoch_seconds
    each; at least 1, at most ``most`` (train.epochs, the cap)."""
    more = (budget_seconds - first_epoch_seconds) / max(epoch_seconds, 1e-9)
    return max(1, min(most, 1 + math.floor(more + 0.5)))


def steady_epoch_seconds(steps: int, halfway: float, trained: float, validated: float) -> float:
    """An epoch's length without the first epoch's one-time costs. Times are seconds since the epoch began: halfway
    when batch steps // 2 began, trained when the last batch ended, validated when validation ended."""
    later_steps = steps - steps // 2
    return (trained - halfway) * steps / later_steps + (validated - trained)


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


def describe_plan(budget_minutes: float, first_epoch_seconds: float, epoch_seconds: float, epochs: int, most: int):
    """The plan in one line, for the log and the run's `train_schedule` tag."""
    capped = " (train.epochs, the most it may train)" if epochs == most else ""
    expected = first_epoch_seconds + (epochs - 1) * epoch_seconds
    return (
        f"budget {budget_minutes:g} min; first epoch {first_epoch_seconds:.1f} s, then about {epoch_seconds:.1f} s "
        f"an epoch -> {epochs} epochs{capped}, about {expected / 60:.1f} min"
    )
