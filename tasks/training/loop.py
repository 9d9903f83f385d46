"""The training loop (AdamW, linear warm-up then cosine decay or a time budget's schedule, best-on-validation weights)
and batched prediction.

The same loop trains every kind: what a batch's logits and labels are comes from the kind
(``logits_and_labels`` of its spec: one label per example for a classifier, one per target token for a sequence
model), so loss and accuracy are per example or per token accordingly; the training loss is the spec's
``training_loss`` (label-smoothed cross-entropy unless the kind adds to it).
"""

import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Subset

from tasks import stopping
from tasks.data.datasets import Splits
from tasks.defaults import is_auto, most_steps
from tasks.progress import progress
from tasks.schema import TrainParams
from tasks.training import ema, resume
from tasks.training.budget import SCHEDULES, Clock, Pace, planned_steps, schedule_kind
from tasks.training.distributed import ONE_PROCESS, Ranks


def autocast_dtype(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The dtype train.precision asks torch.autocast for on this device, or None for float32 throughout.

    None (the default) is bf16 on a GPU that supports it (Ampere and later): its matrix products run at several times
    the float32 rate, and bf16 keeps float32's range, so no loss scaling is needed; fp32 elsewhere, and on the CPU,
    where bf16 is only faster on processors with AMX units and costs accuracy on the others."""
    if precision is None:
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def precision_name(precision: str | None, device: torch.device) -> str:
    """How train.precision resolves on this device, in its own words (bf16, fp32): what the run is tagged with."""
    return "bf16" if autocast_dtype(precision, device) == torch.bfloat16 else "fp32"


def autocast(dtype: torch.dtype | None, device: torch.device):
    """The context the forward passes run in: torch.autocast to dtype, or nothing (float32) for None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(batch, device: torch.device):
    """A tensor, or a tuple of tensors (e.g. waveforms and their lengths), on the device."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(part, device) for part in batch)
    return batch.to(device, non_blocking=True)  # from pinned memory, the copy overlaps the GPU's work


class LengthBatches(torch.utils.data.Sampler):
    """Batches of items of similar length, so that little of a batch is padding (variable-length audio): each epoch
    sorts the items by length times 1 + jitter * u (u uniform in [0, 1), seeded by seed and the epoch, so batches
    differ from epoch to epoch), cuts batches in that order and shuffles them.

    ranks: in a training of several processes, each rank takes every world-th item of each of these batches (the
    last batch repeats items so that every rank gets as many), so the global batches are the ones one process
    trains on."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, jitter: float = 0.1, ranks: Ranks = ONE_PROCESS):
        self.lengths, self.batch_size, self.seed, self.jitter, self.epoch = lengths, batch_size, seed, jitter, 0
        self.ranks = ranks

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        self.epoch += 1
        keys = torch.tensor(self.lengths, dtype=torch.float64) * (
            1 + self.jitter * torch.rand(len(self.lengths), generator=generator)
        )
        order = torch.argsort(keys, stable=True).tolist()
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield shard(batches[index], self.ranks)


def shard(batch: list[int], ranks: Ranks) -> list[int]:
    """This rank's share of a global batch: every world-th item (the batch padded with its first items so that every
    rank gets as many)."""
    if ranks.world == 1:
        return batch
    padded = [batch[i % len(batch)] for i in range(math.ceil(len(batch) / ranks.world) * ranks.world)]
    return padded[ranks.rank :: ranks.world]


class ShardedBatches(torch.utils.data.Sampler):
    """The global batches one process trains on (a batch sampler's), each cut into this rank's shard: a training
    split over several processes trains on the same batches as one process, in the same order."""

    def __init__(self, batches, ranks: Ranks):
        self.batches, self.ranks = batches, ranks

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield shard(batch, self.ranks)


def make_loader(
    dataset,
    splits: Splits,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    ranks: Ranks = ONE_PROCESS,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of a split; shuffled for training, by similar length when the splits give the train items' lengths.
    batch_size is the global batch's: each of several ranks loads its shard of every global batch one process would
    load (batch_size / world items), for training; every world-th item for validation. pin_memory: batches in
    page-locked memory, so copying them to a GPU can overlap the computation (to_device copies without blocking)."""
    common = {"collate_fn": splits.collate_fn, "pin_memory": pin_memory}
    if shuffle and splits.lengths is not None and dataset is splits.train:
        return DataLoader(dataset, batch_sampler=LengthBatches(splits.lengths, batch_size, seed, ranks=ranks), **common)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    if ranks.world > 1 and shuffle:  # the batches DataLoader(shuffle=True, generator=...) draws, sharded
        batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)
        return DataLoader(dataset, batch_sampler=ShardedBatches(batches, ranks), generator=generator, **common)
    if ranks.world > 1:
        dataset = Subset(dataset, range(ranks.rank, len(dataset), ranks.world))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, **common)


@torch.no_grad()
def predict(model, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for a whole loader, on the CPU."""
    model.eval()
    logits, labels = [], []
    for inputs, targets in loader:
        logits.append(model(to_device(inputs, device)).cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def validate(
    model, loader: DataLoader, device: torch.device, logits_and_labels, ranks: Ranks = ONE_PROCESS, dtype=None
) -> dict:
    """Mean loss and accuracy over every label of a loader (examples, or target tokens of a sequence); with several
    ranks, over every rank's shard. dtype: the forward passes' autocast dtype (None: float32)."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for inputs, targets in loader:
        with autocast(dtype, device):
            logits, labels = logits_and_labels(model, to_device(inputs, device), to_device(targets, device))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        count += len(labels)
    loss_sum, correct, count = ranks.sum(loss_sum, correct, count, device=device)
    return {"val_loss": loss_sum / count, "val_accuracy": correct / count}


def fit(
    model,
    splits: Splits,
    train: TrainParams,
    device: torch.device,
    seed: int,
    on_epoch_end,
    spec,
    state_file: Path | None = None,
    on_resume=None,
    ranks: Ranks = ONE_PROCESS,
    on_plan=None,
    label: str | None = None,
    parameters: list[dict] | None = None,
) -> dict:
    """Train, keep the weights of the best validation epoch, and report each epoch to on_epoch_end(epoch, metrics).
    With train.ema_decay, validation scores (and the best keeps) the weights' moving average (tasks/training/ema.py).
    With train.average_epochs, the mean of the last epochs' weights is validated after training and kept when it
    scores better than the best epoch.
    spec: the kind's (tasks/kinds/): its training_loss trains, its logits_and_labels validates. label: what the
    progress bar calls the training (the task's name; by default the kind's). parameters: the optimizer's groups (a
    fine-tuned backbone's layers at their own rates, frozen ones left out; the kind's parameter_groups); None: every
    parameter at train.lr.

    state_file: where the loop's state is saved after each epoch (tasks/training/resume.py); when it exists at the
    start, training goes on after its epoch, and on_resume(epoch) is told so first.

    ranks: this process's place in a training of several (tasks/training/distributed.py): it trains on its shard
    of each batch, and the metrics are the whole epoch's.

    train.precision sets the forward passes' autocast (autocast_dtype); weights, gradients and the optimizer stay
    float32. train.max_steps ends the training after that many steps in all (the last epoch cut short). With
    train.budget_minutes, the steps are planned after the first epoch, and revised after the next ones while the
    schedule allows (tasks/training/budget.py); on_plan(epoch, steps, steps per epoch, seconds of the budget used,
    the Pace planned for the rest) is told each plan. train.epochs (and max_steps) are then the most it may train.

    train.patience (early stopping) ends the training after that many epochs without a better validation accuracy
    (stalled); the result then has its last epoch as stopped_epoch, and with train.average_epochs the mean holds
    those of the planned last epochs it reached (none: the best epoch is kept). train is resolved: no `auto` left."""
    if is_auto(train.epochs) or is_auto(train.patience):
        raise ValueError("train.epochs or train.patience still 'auto': resolve the section first (tasks/defaults.py "
                         "length_values)")  # fmt: skip
    pinned = device.type == "cuda"
    train_loader = make_loader(splits.train, splits, train.batch_size, shuffle=True, seed=seed, ranks=ranks,
                               pin_memory=pinned)  # fmt: skip
    val_loader = make_loader(splits.val, splits, train.batch_size, ranks=ranks, pin_memory=pinned)
    dtype = autocast_dtype(train.precision, device)
    steps_per_epoch = min(len(train_loader), train.max_batches_per_epoch or len(train_loader))
    model.to(device)  # before the optimizer: a fused AdamW takes parameters on the GPU
    # on a GPU, AdamW's fused kernel: one launch for every parameter instead of several per tensor
    optimizer = torch.optim.AdamW(parameters or model.parameters(), lr=train.lr, weight_decay=train.weight_decay,
                                  fused=device.type == "cuda")  # fmt: skip
    most = most_steps(train, steps_per_epoch)
    plan = SCHEDULES[schedule_kind(train)](most, train.warmup_epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    ranks.share_weights(model)
    ranks.seed(seed)
    average = ema.averaged(model, train.ema_decay) if train.ema_decay is not None else None
    scored = average.module if average is not None else model  # the weights validation scores and the best keeps
    checkpoints = ema.uniform(model) if train.average_epochs is not None else None  # the last epochs' mean
    saved_average = average if average is not None else checkpoints  # the one the training state holds
    best = {"val_accuracy": -1.0, "epoch": 0, "state": None}
    finished = 0
    saved = resume.load(state_file) if state_file is not None else None
    if saved is not None:
        finished, best = resume.restore(saved, model, optimizer, schedule, train_loader, saved_average)
        on_resume(finished)
    planning = train.budget_minutes is not None and saved is None  # a resumed training keeps the plan it saved
    clock = Clock()
    epochs = math.ceil(
        plan.total_steps / steps_per_epoch
    )  # as params say, or a budget's plan restored with the schedule
    epoch = finished
    stopping.forget()
    while epoch < epochs and not stalled(epoch, best["epoch"], train.patience):
        epoch += 1
        if hasattr(splits.train, "set_epoch"):
            splits.train.set_epoch(epoch)
        model.train()
        started, examples, seen, loss_sum, correct = time.perf_counter(), 0, 0, 0.0, 0
        steps = min(steps_per_epoch, plan.total_steps - (epoch - 1) * steps_per_epoch)  # the last may be cut short
        with progress(steps, f"{label or spec.name} epoch {epoch}/{epochs}", "batch") as bar:
            for step, (inputs, targets) in enumerate(train_loader):
                stopping.raise_if_stopped()  # a stop whose exception was lost (tasks/stopping.py)
                if step == steps:
                    break
                if step == steps // 2:
                    halfway = time.perf_counter() - started
                with autocast(dtype, device):
                    loss, logits, labels = spec.training_loss(model, to_device(inputs, device),
                                                              to_device(targets, device), train)  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                ranks.average_gradients(model)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                if average is not None:
                    average.update_parameters(model)
                examples += len(targets)
                seen += len(labels)
                loss_sum += loss.item() * len(labels)
                correct += (logits.argmax(-1) == labels).sum().item()
                bar.set_postfix_str(f"loss {loss_sum / seen:.3f}", refresh=False)
                bar.update()
        seconds = time.perf_counter() - started
        loss_sum, correct, seen, examples = ranks.sum(loss_sum, correct, seen, examples, device=device)
        metrics = {
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            **validate(scored, val_loader, device, spec.logits_and_labels, ranks, dtype),
            "train_samples_per_second": examples / seconds,
        }
        if metrics["val_accuracy"] > best["val_accuracy"]:
            state = copy.deepcopy(scored.state_dict())
            best = {"val_accuracy": metrics["val_accuracy"], "epoch": epoch, "state": state}
        clock.epoch(started, seconds)
        done = (epoch - 1) * steps_per_epoch + steps
        if planning and steps == steps_per_epoch and done <= plan.free_until():  # the rates so far are the plan's
            pace, elapsed = clock.pace(steps, halfway, time.perf_counter())
            elapsed, step_seconds, between = (  # every rank plans alike: the means over the ranks
                total / ranks.world
                for total in ranks.sum(elapsed, pace.step_seconds, pace.validation_seconds, device=device)
            )
            pace = Pace(step_seconds, between)
            steps_left = planned_steps(train.budget_minutes * 60 - elapsed, done, pace, steps_per_epoch, most)
            plan.total_steps = max(steps_left, plan.at_least(done))
            epochs = math.ceil(plan.total_steps / steps_per_epoch)
            on_plan(epoch, plan.total_steps, steps_per_epoch, elapsed, pace)
        if checkpoints is not None:
            add_to_mean(checkpoints, model, epoch, epochs - train.average_epochs + 1)
        on_epoch_end(epoch, metrics)
        if state_file is not None:
            resume.save(state_file, resume.capture(epoch, model, optimizer, schedule, best, train_loader,
                                                   saved_average))  # fmt: skip
    result = {"best_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"]}
    if epoch < epochs:  # early stopping (train.patience) ended it
        result["stopped_epoch"] = epoch
    if checkpoints is not None and checkpoints.n_averaged > 0:  # none when training stopped before the last epochs
        result.update(keep_better_mean(checkpoints, best, validate(checkpoints.module, val_loader, device,
                                                                   spec.logits_and_labels, ranks, dtype)))  # fmt: skip
    model.load_state_dict(best["state"])
    return result


def stalled(epoch: int, best_epoch: int, patience: int | None) -> bool:
    """Whether early stopping ends the training after `epoch`: `patience` epochs have passed since the best one.
    Read from the best epoch, which the resumable state holds, so a resumed run stops where an uninterrupted one
    would; and from validation figures summed over the ranks, so every rank of a distributed training stops at the
    same epoch."""
    return patience is not None and epoch - best_epoch >= patience


def add_to_mean(checkpoints, model, epoch: int, first: int) -> None:
    """Average this epoch's weights in when it is one of the last epochs (from `first`, under the plan as it stands).
    A time budget's plan can still grow: a mean begun before the window moved is started again."""
    if epoch < first:
        return
    if epoch - int(checkpoints.n_averaged) < first:  # it holds epochs the window has left behind
        checkpoints.n_averaged.zero_()
    checkpoints.update_parameters(model)


def keep_better_mean(checkpoints, best: dict, scores: dict) -> dict:
    """The mean replaces the best epoch's weights when it validates better; what was kept, for the run's metrics."""
    kept = scores["val_accuracy"] > best["val_accuracy"]
    if kept:
        best.update(state=copy.deepcopy(checkpoints.module.state_dict()), val_accuracy=scores["val_accuracy"])
    return {"averaged_val_accuracy": scores["val_accuracy"], "best_val_accuracy": best["val_accuracy"],
            "averaged_epochs": int(checkpoints.n_averaged) if kept else 0}  # fmt: skip
