"""Time-budgeted training (``train.budget_minutes``): a user knows how long they can wait, not how many epochs a new
dataset needs. The loop times its epochs and plans how many training steps fit in the budget at that pace (whole
epochs, then a last one cut short: ``train.max_steps``); the learning-rate schedule is sized to them.

A plan may change only while the learning rates trained so far do not depend on it, so that a budgeted run is
exactly the run of ``max_steps: <planned>`` without a budget; that is how ``reproduce`` repeats one
(``replay_plan`` in flows/experiments.py): the number of steps is recorded, the machine's speed is not repeatable.
Which steps those are depends on the schedule (``train.lr_schedule``):

- ``wsd`` (warm-up, stable, decay; the default with a budget): warm-up, then the full learning rate, then a cosine
  decay to zero over the last fifth of the steps after warm-up. Until the decay begins the rate does not depend on
  the plan, so the plan is revised after every epoch from the pace of the latest ones, and follows a machine whose
  load changes; it is final once the decay begins, four fifths through. Trained for a fixed length, it does as well
  as cosine decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations").
- ``linear`` (the default when fine-tuning a pretrained backbone): as cosine, with a linear decay.
- ``cosine`` (the default without a budget): warm-up, then a cosine decay over all the steps after it. The rate
  depends on the plan from the end of warm-up, so the plan is made once, when warm-up ends (a budget with it needs
  ``warmup_epochs >= 1``), from that pace.

The first epoch pays one-time costs (allocations, caches warming up, lazy initialisation): on a small model it can
take twice as long as the next. So a plan made after it reads the pace of steps from the second half of its batches;
later plans read it from the latest epoch, and the time between two epochs (validation, the report, the saved state)
from the epoch before. The rest of the budget is filled at that pace to the nearest step.
"""

import math
from dataclasses import dataclass

PLANNED_STEPS = "planned_steps"  # the MLflow metric a budgeted training records its plan under (train.max_steps)
PLANNED_EPOCHS = "planned_epochs"  # the same in epochs (the last one may be cut short)
FIRST_EPOCH_SECONDS = "first_epoch_seconds"
STEP_SECONDS = "planned_step_seconds"  # the pace the plan assumed
VALIDATION_SECONDS = "planned_validation_seconds"  # the time it assumed between epochs (validation and the rest)
DECAY_SHARE = 0.2  # wsd: the share of the steps after warm-up over which the learning rate decays to zero


@dataclass(frozen=True)
class Pace:
    """How long the epochs to come are expected to take: per training step, and between two epochs (validation, and
    after the first plan also the report and the saved state)."""

    step_seconds: float
    validation_seconds: float

    def epoch_seconds(self, steps: int) -> float:
        return steps * self.step_seconds + self.validation_seconds


def measured_pace(steps: int, halfway: float, trained: float, validated: float) -> Pace:
    """The first epoch's pace without its one-time costs. Times are seconds since the epoch began: halfway when batch
    steps // 2 began, trained when the last batch ended, validated when validation ended."""
    return Pace((trained - halfway) / (steps - steps // 2), validated - trained)


def planned_steps(left_seconds: float, done: int, pace: Pace, steps_per_epoch: int, most: int) -> int:
    """Training steps in all that fill the budget, after ``done`` steps (whole epochs) with left_seconds of it left:
    whole epochs at the pace, then in what is left a last epoch cut short (its validation counted), to the nearest
    step. At least what is done, at most ``most`` (train.epochs x steps per epoch, or train.max_steps)."""
    epoch = max(pace.epoch_seconds(steps_per_epoch), 1e-9)
    whole = max(0, math.floor(left_seconds / epoch))
    rest = left_seconds - whole * epoch - pace.validation_seconds
    part = min(steps_per_epoch - 1, max(0, math.floor(rest / max(pace.step_seconds, 1e-9) + 0.5)))
    return max(min(done, most), min(most, done + steps_per_epoch * whole + part))


class WarmupCosine:
    """Learning-rate factor per step: linear warm-up over warmup_steps, then cosine decay to zero at total_steps.

    An object rather than a closure so that a budget's plan can set total_steps, and so that torch's LambdaLR saves
    total_steps with the schedule's state (an interrupted run resumes with its plan)."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps, self.warmup_steps = total_steps, warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.decay(step, self.warmup_steps)

    def decay(self, step: int, start: int) -> float:
        progress = (step - start) / max(1, self.total_steps - start)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def free_until(self) -> int:
        """The steps whose rates do not depend on total_steps: a plan made after at most these many is exact."""
        return self.warmup_steps

    def at_least(self, done: int) -> int:
        """The fewest total steps a plan made after ``done`` steps may have (with which done <= free_until())."""
        return done


class WarmupStableDecay(WarmupCosine):
    """Linear warm-up, the full rate, then cosine decay to zero over the last DECAY_SHARE of the steps after warm-up."""

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0 if step < self.free_until() else self.decay(step, self.free_until())

    def free_until(self) -> int:
        return self.total_steps - round(DECAY_SHARE * max(0, self.total_steps - self.warmup_steps))

    def at_least(self, done: int) -> int:
        fewest = WarmupStableDecay(done, self.warmup_steps)
        while fewest.free_until() < done:  # a few steps: the decay grows by one step in five
            fewest.total_steps += 1
        return fewest.total_steps


class WarmupLinear(WarmupCosine):
    """Linear warm-up, then a linear decay to zero at total_steps (BERT's fine-tuning schedule)."""

    def decay(self, step: int, start: int) -> float:
        return max(0.0, 1 - (step - start) / max(1, self.total_steps - start))


SCHEDULES = {"cosine": WarmupCosine, "wsd": WarmupStableDecay, "linear": WarmupLinear}


def schedule_kind(train) -> str:
    """train.lr_schedule, or when it is null: wsd under a time budget (its plan follows the pace), else cosine."""
    if train.lr_schedule is not None:
        return train.lr_schedule
    return "wsd" if train.budget_minutes is not None else "cosine"


def describe_plan(budget_minutes: float, kind: str, epoch: int, elapsed: float, pace: Pace, steps: int,
                  steps_per_epoch: int, most: int) -> str:  # fmt: skip
    """The plan in one line, for the log and the run's `train_schedule` tag."""
    capped = " (the most train.epochs / train.max_steps allow)" if steps == most else ""
    left = steps - epoch * steps_per_epoch
    expected = elapsed + left * pace.step_seconds + math.ceil(left / steps_per_epoch) * pace.validation_seconds
    return (
        f"budget {budget_minutes:g} min, {kind}; after epoch {epoch} ({elapsed:.1f} s): {pace.step_seconds:.3f} s a "
        f"step and {pace.validation_seconds:.1f} s between epochs -> {steps} steps "
        f"({steps / steps_per_epoch:.2f} epochs of {steps_per_epoch}){capped}, about {expected / 60:.1f} min"
    )


class Clock:
    """The times a plan is read from: each epoch's start and the seconds its training steps took."""

    def __init__(self):
        self.starts: list[float] = []
        self.trained: list[float] = []

    def epoch(self, started: float, trained: float) -> None:
        self.starts.append(started)
        self.trained.append(trained)

    def pace(self, steps: int, halfway: float, now: float) -> tuple[Pace, float]:
        """The pace after the latest epoch (of ``steps`` steps, ``halfway`` seconds in when its second half began, and
        validated by now), and the seconds of the budget it has used once that epoch is reported and saved."""
        trained, validated = self.trained[-1], now - self.starts[-1]
        if len(self.starts) == 1:
            pace = measured_pace(steps, halfway, trained, validated)
        else:  # between the epochs before: validation, report and saved state; this epoch validated already
            between = self.starts[-1] - self.starts[-2] - self.trained[-2]
            pace = Pace(trained / steps, max(between, validated - trained))
        still = pace.validation_seconds - (validated - trained)  # this epoch's report and saved state, to come
        return pace, now - self.starts[0] + max(0.0, still)
