"""Batch mixing for classifiers of fixed-shape inputs (images): mixup (Zhang et al., 2018) and CutMix (Yun et al.,
2019), as timm applies them.

Each training batch is mixed with a shuffled copy of itself: mixup blends whole inputs, CutMix pastes a rectangle of
the partner over the input; the share kept, drawn from Beta(alpha, alpha), weighs the two labels' losses (for CutMix
it is the area actually kept after the box is clipped to the image). The model never sees the same input twice and
cannot become certain of one label, which is what a small dataset needs to stop it memorising; the price is slower
fitting, so it pays with longer training. Draws come from torch's global generator, which the training loop seeds
and a resumed run restores.
"""

import torch


def mix_batch(
    inputs: torch.Tensor, mixup_alpha: float, cutmix_alpha: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mixed inputs, partner index of each example, share of each example's own label) for a batch (B, C, H, W).

    With both alphas > 0 a batch gets one of the two at even odds; with one, that one; with none, the batch as it is
    (share 1)."""
    kinds = [kind for kind, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha > 0]
    if not kinds or len(inputs) < 2:
        return inputs, torch.arange(len(inputs), device=inputs.device), 1.0
    kind = kinds[int(torch.randint(len(kinds), ()))]
    alpha = mixup_alpha if kind == "mixup" else cutmix_alpha
    share = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(inputs)).to(inputs.device)
    if kind == "mixup":
        return share * inputs + (1 - share) * inputs[partner], partner, share
    top, bottom, left, right = cut_box(inputs.shape[-2], inputs.shape[-1], share)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[partner][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (inputs.shape[-2] * inputs.shape[-1])
    return mixed, partner, kept


def cut_box(height: int, width: int, share: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of about (1 - share) of the image's area, centred at a random point and
    clipped to the image."""
    side = (1 - share) ** 0.5
    cut_h, cut_w = int(height * side), int(width * side)
    y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(y - cut_h // 2, 0), min(y + cut_h // 2, height)
    left, right = max(x - cut_w // 2, 0), min(x + cut_w // 2, width)
    return top, bottom, left, right


def mixed_loss(logits, labels, partner, share: float, label_smoothing: float) -> torch.Tensor:
    """share x the loss of each example's own label + (1 - share) x its partner's label."""
    loss = torch.nn.functional.cross_entropy
    own = loss(logits, labels, label_smoothing=label_smoothing)
    if share == 1.0:
        return own
    return share * own + (1 - share) * loss(logits, labels[partner], label_smoothing=label_smoothing)
