"""Which input tokens a class-token classifier's prediction rests on, by five methods, and whether removing the
tokens a map ranks first really changes the prediction (deletion and insertion curves).

The methods, each a map over the input tokens (text subwords, image patches, spectrogram frames) for one example:

- ``attention``: the prediction's attention in the last layer, heads averaged (what a plot of "the attention"
  usually shows): the class token's row, or with sequence pooling the rows mixed by the pooling weights (the
  model's readout: every attention method below reads its token-by-token matrix through it);
- ``rollout``: attention rollout (Abnar & Zuidema, 2020) through all layers;
- ``gradient_attention``: gradient-weighted attention relevance (Chefer et al., 2021, "Generic Attention-model
  Explainability"): per layer, the attention times its gradient with respect to the predicted class's logit,
  positive part, averaged over heads, accumulated across the layers as R <- R + A_bar R from R = I;
- ``input_x_gradient``: a token's content (its embedding, without the position) times the gradient of the logit
  with respect to it, summed over the channels, positive part: the usual non-attention baseline;
- ``random``: a seeded uniform map, the floor any method must beat.

Every map is non-negative and sums to 1 (an all-zero map becomes uniform).

Removing a token (the curves) replaces it at the encoder's input by the same token of a baseline input: a black
image's patch, a silent clip's frame, an unknown word (the caller chooses; without one, by nothing but its position
embedding). The sequence keeps its length and every other token its place. Input x gradient is taken relative to
the same baseline, so both ask what the model makes of the input beyond the baseline.

Pure PyTorch: it reads a classifier's encoder input through a forward pre-hook on its ``encoder_entry`` and needs
nothing else (the seam every ``AttentionClassifier`` exposes: attn_models/attention.py).
"""

from contextlib import contextmanager

import torch

from attn_models.attention import AttentionClassifier, attention_rollout, read_rows

METHODS = ("attention", "rollout", "gradient_attention", "input_x_gradient", "random")


@contextmanager
def pre_hook(module: torch.nn.Module, hook):
    """module.register_forward_pre_hook(hook) for the duration of a with block."""
    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def encoder_input(model: AttentionClassifier, removed: torch.Tensor | None = None, reference=None):
    """Yield a list that receives the encoder's input (B, 1 + T, C: class token first) on each forward pass; with
    removed (B, T) bool, those tokens are replaced by the reference's (1, 1 + T, C; default: the model's
    ``blank_tokens``, e.g. the position embeddings alone)."""
    seen = []

    def hook(_module, args):
        x = args[0]
        if removed is not None:
            replacement = (model.blank_tokens()[:, : x.shape[1]] if reference is None else reference).expand_as(x)
            kept = removed.new_zeros(removed.shape[0], model.special_tokens)  # never the class (or distillation) token
            drop = torch.cat([kept, removed], dim=1)[..., None]
            x = torch.where(drop, replacement, x)
        seen.append(x)
        return (x, *args[1:])

    with pre_hook(model.encoder_entry, hook):
        yield seen


@torch.no_grad()
def reference_tokens(model: AttentionClassifier, baseline=None) -> torch.Tensor:
    """The encoder's input for the baseline input (a batch of one), or the model's blank tokens without one."""
    if baseline is None:
        return model.blank_tokens().detach()
    model.eval()
    with encoder_input(model) as seen:
        model(baseline)
    return seen[0]


def normalized(relevance: torch.Tensor) -> torch.Tensor:
    """Non-negative, summing to 1 (uniform if nothing is left)."""
    relevance = relevance.clamp(min=0)
    total = relevance.sum()
    return relevance / total if total > 0 else torch.full_like(relevance, 1 / relevance.numel())


def gradient_weighted_relevance(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """Chefer et al. (2021), eq. 5-6 for self-attention: R = I; per layer R <- R + mean_h((grad * A)+) R. (B, T, T)."""
    relevance = None
    for weights, gradient in zip(attentions, gradients):
        layer = (gradient * weights).clamp(min=0).mean(dim=1)  # (B, T, T)
        if relevance is None:
            relevance = torch.eye(layer.shape[-1], device=layer.device).expand_as(layer)
        relevance = relevance + layer @ relevance
    return relevance


def class_token_maps(model: AttentionClassifier, inputs, target: int | None = None, seed: int = 0,
                     reference=None) -> dict:  # fmt: skip
    """The maps of every method for one example (inputs: a batch of one), for class target (default: the predicted
    one), each (T,); "heads": the readout's raw attention per layer and head (layers, heads, T); "logits".
    reference: ``reference_tokens`` of a baseline input that says nothing (input x gradient is taken relative to
    it; default: the position embeddings)."""
    model.eval()
    with torch.enable_grad(), encoder_input(model) as seen:
        logits, attentions, readout = model(inputs, return_attention=True)
        target = int(logits[0].argmax()) if target is None else target
        x = seen[0]
        gradients = torch.autograd.grad(logits[0, target], [*attentions, x])
    attentions = [weights.detach() for weights in attentions]
    readout = readout.detach()

    special = model.special_tokens

    def read(matrix):  # the readout's row of a (1, [H,] 1 + T, 1 + T) matrix, without the class token: ([H,] T)
        return read_rows(readout, matrix)[0, ..., special:]

    reference = reference_tokens(model) if reference is None else reference
    content = x.detach() - reference[:, : x.shape[1]]
    generator = torch.Generator().manual_seed(seed)
    tokens = x.shape[1] - special
    return {
        "attention": normalized(read(attentions[-1].mean(dim=1))),
        "rollout": normalized(read(attention_rollout(attentions))),
        "gradient_attention": normalized(read(gradient_weighted_relevance(attentions, gradients[:-1]))),
        "input_x_gradient": normalized((content * gradients[-1]).sum(dim=-1)[0, special:]),
        "random": normalized(torch.rand(tokens, generator=generator)),
        "heads": torch.stack([read(weights) for weights in attentions]),
        "logits": logits.detach()[0],
        "target": target,
    }


def removal_masks(order: torch.Tensor, fractions: torch.Tensor, insertion: bool) -> torch.Tensor:
    """(steps, T) bool, True where a token is removed: deletion removes the first round(f * T) tokens of order;
    insertion removes all but those."""
    tokens = order.numel()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(tokens)
    first = rank[None, :] < (fractions[:, None] * tokens).round().long()  # (steps, T): among the first k
    return ~first if insertion else first


@torch.no_grad()
def removal_curve(model: AttentionClassifier, inputs, relevance: torch.Tensor, target: int, steps: int = 10,
                  insertion: bool = False, reference=None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The probability of class target as the tokens are removed (deletion) or added back (insertion) in the order
    of relevance, most relevant first, at steps + 1 evenly spaced fractions from 0 to 1, in one batch; a removed
    token becomes the reference's (``reference_tokens`` of a baseline input, computed once per example by the
    caller; default: the position embeddings). Returns (fractions, probabilities)."""
    model.eval()
    fractions = torch.linspace(0, 1, steps + 1)
    order = torch.argsort(relevance, descending=True, stable=True)
    removed = removal_masks(order, fractions, insertion)
    batch = inputs.expand(len(fractions), *inputs.shape[1:])
    reference = reference_tokens(model) if reference is None else reference
    with encoder_input(model, removed, reference[:, : relevance.numel() + model.special_tokens]):
        probabilities = model(batch).softmax(dim=-1)[:, target]
    return fractions, probabilities


def area_under(fractions: torch.Tensor, values: torch.Tensor) -> float:
    """The area under a curve over [0, 1] (trapezoid rule)."""
    return float(torch.trapezoid(values, fractions))
