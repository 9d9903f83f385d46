"""Which source units each output token of an encoder-decoder rests on, by five methods, and whether removing the
units a map ranks first really lowers that token's probability (deletion and insertion curves).

The sequence counterpart of attn_models/attribution.py (the classifiers'): there one map explains one prediction;
here every output token t of a sequence y (the model's own output, or a reference, read by teacher forcing) has its
own map over the S source units (source subwords, audio encoder frames), so a method gives a (T, S) matrix. The
methods, row t for output token t:

- ``cross_attention``: the cross-attention of query t, averaged over heads and decoder layers: the alignment that
  ``EncoderDecoder.cross_attention`` draws;
- ``last_layer_attention``: the last decoder layer's cross-attention of query t, heads averaged;
- ``gradient_attention``: gradient-weighted attention (Chefer et al., 2021, for encoder-decoders): per decoder layer
  the cross-attention times its gradient with respect to log p(y_t), positive part, averaged over heads, summed
  over the layers. Only the cross-attention of query t is read: the paths through the decoder's self-attention
  (earlier output positions) and the encoder's self-attention are not propagated (Chefer's R^qq and R^ss are taken
  as the identity);
- ``input_x_gradient``: each unit's encoder input minus the baseline's, times the gradient of log p(y_t) with
  respect to it, summed over the channels, positive part;
- ``random``: a seeded uniform map, the floor any method must beat.

Every row is non-negative and sums to 1 (an all-zero row becomes uniform).

Both sequence models feed their shared ``Encoder`` one input per source unit: the translation model the source
subwords' embeddings plus positions, the speech recognizer its subsampled log-mel frames plus positions. That call
is the common point, and a forward pre-hook on ``model.encoder`` is the one place this module touches a model:

- it replicates a batch of one into R rows, one per output token (the gradients of each token's log-probability
  come from one backward pass) or per point of a curve (the whole curve is one forward pass);
- it replaces removed units, row by row, by the same units of a **baseline** source's encoder input (the caller
  chooses the baseline, ``reference_input``): for translation as many [UNK] tokens (the unit keeps its position
  embedding and loses its word), for speech recognition a silent clip of the same length (the frame keeps its
  position and hears silence). The sequence keeps its length and every other unit its place. Input x gradient is
  taken relative to the same baseline.

Faithfulness (``removal_log_probs``): for output token t, remove the source units in the order of its own map, most
relevant first, and follow log p(y_t) with the output before it unchanged (teacher forcing); the deletion curve
starts from the whole source, the insertion curve from the baseline. Pure PyTorch.

Shapes: S source units, T output tokens (rows of a map), C embedding, R replicated rows, H heads.
"""

from contextlib import contextmanager

import torch

from attn_models.attribution import pre_hook, removal_masks
from attn_models.encoder_decoder import EncoderDecoder

SEQUENCE_METHODS = ("cross_attention", "last_layer_attention", "gradient_attention", "input_x_gradient", "random")


@contextmanager
def encoder_input(model: EncoderDecoder, rows: int | None = None, removed: torch.Tensor | None = None,
                  reference: torch.Tensor | None = None):  # fmt: skip
    """Yield a list that receives the encoder's input (R, S, C) on each forward pass. With rows, a batch of one is
    replicated into that many rows (its padding mask too); with removed (R, S) bool, those units become the
    reference's (1, S, C: ``reference_input``)."""
    seen = []

    def hook(_module, args):
        x, padding = args[0], args[1] if len(args) > 1 else None
        if rows is not None:
            x = x.expand(rows, *x.shape[1:])
            padding = None if padding is None else padding.expand(rows, -1)
        if removed is not None:
            x = torch.where(removed[..., None], reference.expand_as(x), x)
        seen.append(x)
        return (x, padding, *args[2:])

    with pre_hook(model.encoder, hook):
        yield seen


@torch.no_grad()
def reference_input(model: EncoderDecoder, baseline) -> torch.Tensor:
    """The encoder's input (1, S, C) for a baseline source (a batch of one, as long as the explained source)."""
    model.eval()
    with encoder_input(model) as seen:
        model.encode(baseline)
    return seen[0]


def rows_normalized(relevance: torch.Tensor) -> torch.Tensor:
    """Each row non-negative and summing to 1 (uniform where nothing is left). (T, S)."""
    relevance = relevance.clamp(min=0)
    total = relevance.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(relevance, 1 / relevance.shape[-1])
    return torch.where(total > 0, relevance / total.clamp(min=1e-30), uniform)


def token_log_probs(model: EncoderDecoder, source, target: torch.Tensor, rows: int, positions: torch.Tensor,
                    need_weights: bool = False, removed=None, reference=None):  # fmt: skip
    """log p(target[1 + positions[r]]) of each of rows replicas of a batch-of-one source, teacher-forced on target
    ([BOS] y1 .. yT, (T + 1,)): (R,), with the encoder inputs seen and the per-layer cross-attention (R, H, T, S)
    when asked."""
    target_in, labels = target[:-1], target[1:]
    with encoder_input(model, rows, removed, reference) as seen:
        memory, padding = model.encode(source)
        states, cross = model.decode(target_in.expand(rows, -1), memory, padding, need_weights=need_weights)
    log_probs = model.logits(states).float().log_softmax(dim=-1)  # (R, T, V)
    return log_probs[torch.arange(rows), positions, labels[positions]], seen[0], cross


def output_token_maps(model: EncoderDecoder, source, target: torch.Tensor, reference: torch.Tensor,
                      seed: int = 0) -> dict:  # fmt: skip
    """The (T, S) map of every method for the output target ([BOS] y1 .. yT, (T + 1,)) of one source (a batch of
    one), teacher-forced; "log_probs": log p(y_t) (T,). reference: ``reference_input`` of the baseline source. One
    forward and one backward pass over T replicas: replica t reads token t, so its gradients are token t's."""
    model.eval()
    tokens = target.numel() - 1
    rows = torch.arange(tokens)
    with torch.enable_grad():
        log_probs, x, cross = token_log_probs(model, source, target, tokens, rows, need_weights=True)
        gradients = torch.autograd.grad(log_probs.sum(), [*cross, x])
    own = [weights.detach()[rows, :, rows] for weights in cross]  # query t of replica t: (T, H, S) per layer
    weighted = sum((gradient[rows, :, rows] * weights).clamp(min=0).mean(dim=1)
                   for gradient, weights in zip(gradients[:-1], own))  # fmt: skip
    content = x.detach() - reference  # (T, S, C)
    generator = torch.Generator().manual_seed(seed)
    maps = {
        "cross_attention": torch.stack(own).mean(dim=(0, 2)),
        "last_layer_attention": own[-1].mean(dim=1),
        "gradient_attention": weighted,
        "input_x_gradient": (content * gradients[-1]).sum(dim=-1),
        "random": torch.rand(tokens, x.shape[1], generator=generator),
    }
    return {"maps": {method: rows_normalized(maps[method]) for method in SEQUENCE_METHODS},
            "log_probs": log_probs.detach()}  # fmt: skip


@torch.no_grad()
def removal_log_probs(model: EncoderDecoder, source, target: torch.Tensor, relevance: torch.Tensor,
                      reference: torch.Tensor, steps: int = 10, insertion: bool = False) -> torch.Tensor:  # fmt: skip
    """log p(y_t) (steps + 1, T) as each output token's source units are removed (deletion) or added back to the
    baseline (insertion) in the order of its own row of relevance (T, S), most relevant first, at steps + 1 evenly
    spaced fractions from 0 to 1: all (steps + 1) x T points in one forward pass. A removed unit becomes the
    reference's (``reference_input``)."""
    model.eval()
    tokens, units = relevance.shape
    fractions = torch.linspace(0, 1, steps + 1)
    order = torch.argsort(relevance, dim=-1, descending=True, stable=True)  # (T, S)
    removed = torch.stack([removal_masks(row, fractions, insertion) for row in order])  # (T, steps + 1, S)
    positions = torch.arange(tokens).repeat_interleave(steps + 1)  # replica r reads token r // (steps + 1)
    log_probs, _, _ = token_log_probs(model, source, target, len(positions), positions,
                                      removed=removed.view(-1, units), reference=reference)  # fmt: skip
    return log_probs.view(tokens, steps + 1).T
