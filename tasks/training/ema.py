"""Weight averaging (EMA): an exponential moving average of the weights, updated after every optimizer step, that
validation scores and the checkpoint keeps instead of the raw weights (``train.ema_decay``; null: off).

The raw weights of a small model trained on little data jump from step to step with the noise of each batch; their
running average sits nearer the middle of the basin the training explores, and usually scores better on held-out
data, most of all when the learning rate is still high (a time budget's stable phase) or when training stops early.

It is torch's own ``AveragedModel`` with a warm-up: the decay after n updates is min(decay, (1 + n) / (10 + n)), so
the average forgets the random initial weights within the first steps instead of after ~1 / (1 - decay) of them
(timm's rule). A short training (a few hundred steps) then averages over about its last tenth, a long one over
about 1 / (1 - decay) steps: the same setting travels between datasets of different sizes. Buffers (e.g.
BatchNorm statistics) are averaged too.

Checkpoint averaging (``train.average_epochs``; Vaswani et al., 2017, for translation) is the other weight average
here: the plain mean of the weights at the end of each of the last N epochs, taken once, after training, instead of
one epoch's weights. It smooths the end of a decaying schedule rather than the noise of each step.
"""

import torch
from torch.optim.swa_utils import AveragedModel


def decay_after(updates: int, decay: float) -> float:
    """The decay used for the update after `updates` earlier ones (warm-up, then `decay`)."""
    return min(decay, (1 + updates) / (10 + updates))


def averaged(model: torch.nn.Module, decay: float) -> AveragedModel:
    """A copy of the model whose weights follow the model's EMA; call ``update_parameters(model)`` after each step.
    Its ``module`` has the model's state-dict keys, so its weights load into the model as they are."""
    return averager(model, lambda updates: 1.0 - decay_after(updates, decay))


def uniform(model: torch.nn.Module) -> AveragedModel:
    """A copy of the model whose weights are the plain mean of those it was given (``update_parameters(model)``, once
    an epoch): checkpoint averaging. Setting ``n_averaged`` to zero starts the mean again at the next update."""
    return averager(model, lambda updates: 1.0 / (updates + 1))


def averager(model: torch.nn.Module, share) -> AveragedModel:
    """torch's AveragedModel, moving each floating-point weight and buffer towards the model's by share(updates so
    far); counters and masks (a group has one dtype) are the model's own."""

    @torch.no_grad()
    def update(averages: list, currents: list, updates) -> None:
        if not averages[0].is_floating_point():
            torch._foreach_copy_(averages, currents)
            return
        torch._foreach_lerp_(averages, currents, share(int(updates)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
