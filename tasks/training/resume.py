"""Resumable training: the training loop's whole state after each epoch, so that a run stopped by SIGTERM, a kill
or a power cut goes on from its last finished epoch the next time the same train stage runs.

The state holds the model (and its weights' average, with train.ema_decay or train.average_epochs), the optimizer,
the learning-rate schedule, the best epoch so far (with its weights), and every random state the next epoch draws
from (torch's, CUDA's, numpy's and Python's global generators, the training loader's own generator or
length-bucketing sampler); the augmentations are seeded per epoch and item (``LabelledItems.set_epoch``). Restored,
the remaining epochs are the ones an uninterrupted run trains, bit for bit on the CPU. The file is written to a
temporary name and renamed, so a kill mid-write leaves the previous epoch's state whole, and it is read with
``weights_only=True`` (tensors and plain values only: no code runs on load).
"""

import os
import random
from pathlib import Path

import numpy as np
import torch


def capture(epoch: int, model, optimizer, schedule, best: dict, loader, average=None) -> dict:
    """Everything the next epoch depends on, after `epoch` finished (average: the weights' EMA or the last epochs'
    mean, if trained with one)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "best": best,
        "average": average.state_dict() if average is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
            "python": random.getstate(),
        },
        "loader": loader_state(loader),
    }


def restore(state: dict, model, optimizer, schedule, loader, average=None) -> tuple[int, dict]:
    """Put the captured state back; returns the last finished epoch and the best epoch so far."""
    model.load_state_dict(state["model"])
    if average is not None:
        if state.get("average") is None:
            raise ValueError(
                "the saved training state has no weight average (train.ema_decay and train.average_epochs were null)"
            )
        average.load_state_dict(state["average"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, position, has_gauss, cached_gaussian = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(rng["python"])
    set_loader_state(loader, state["loader"])
    return state["epoch"], state["best"]


def loader_state(loader) -> dict:
    """The training loader's own random state: its generator's (shuffling), or its batch sampler's epoch."""
    sampler_epoch = getattr(loader.batch_sampler, "epoch", None)
    generator = loader.generator.get_state() if loader.generator is not None else None
    return {"generator": generator, "sampler_epoch": sampler_epoch}


def set_loader_state(loader, state: dict) -> None:
    if state["generator"] is not None:
        loader.generator.set_state(state["generator"])
    if state["sampler_epoch"] is not None:
        loader.batch_sampler.epoch = state["sampler_epoch"]


def save(path: Path, state: dict) -> None:
    """Write atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load(path: Path) -> dict | None:
    """The saved state, or None when there is none."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
