"""Smaller, faster versions of a trained model: structured attention-head pruning and dynamic int8 quantization.

Head pruning (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): every ``MultiHeadAttention`` gets a
mask of ones over its heads; the importance of a head is |dL/d mask_h| summed over a few batches (how much the loss
would move if the head were scaled down), normalised per layer by its L2 norm as in the paper. The least important
heads of each layer are then removed for good (``MultiHeadAttention.prune_heads``): the same number in every layer,
so the per-layer attention maps keep one shape and stack as before (rollout, alignments, the viewer's heads).

Dynamic quantization (``torch.ao.quantization.quantize_dynamic``): the weights of every nn.Linear are stored as int8
and activations are quantized on the fly. It is a deterministic function of the float weights, so a served model
stores the float weights and a flag, and quantizes at load. What it leaves in float: embeddings (nn.Embedding, and
the tied output projection of the encoder-decoder, a matmul with the embedding table), convolutions, LayerNorm and
the attention matmuls (QK^T, softmax, AV).
"""

import io
import warnings

import torch
from torch import nn

from attn_models.attention import MultiHeadAttention


def attention_layers(model: nn.Module) -> dict:
    """Every attention layer of a model whose heads can be scored and pruned, by its module name, in model order: the
    model's own ``head_layers()`` where it has one (a classifier: attn_models/attention.py AttentionClassifier; a
    pretrained backbone's layers, attn_models/pretrained.py), else every ``MultiHeadAttention`` in it (the
    encoder-decoder models). Each has ``num_heads``, a settable ``head_mask`` and ``prune_heads(keep)``."""
    own = getattr(model, "head_layers", None)
    if own is not None:
        return own()
    return {name: module for name, module in model.named_modules() if isinstance(module, MultiHeadAttention)}


def head_importance(model: nn.Module, batches, loss_fn) -> dict[str, torch.Tensor]:
    """Each layer's head importance (H,): |gradient of loss_fn(model, batch) w.r.t. the layer's head mask|, summed
    over the batches, then divided by the layer's L2 norm. The model is left as it was (masks removed)."""
    layers = attention_layers(model)
    masks = {name: torch.ones(layer.num_heads, requires_grad=True) for name, layer in layers.items()}
    importance = {name: torch.zeros(layer.num_heads) for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            layer.head_mask = masks[name]
        with torch.enable_grad():
            for batch in batches:
                gradients = torch.autograd.grad(loss_fn(model, batch), list(masks.values()))
                for name, gradient in zip(masks, gradients):
                    importance[name] += gradient.abs()
    finally:
        for layer in layers.values():
            layer.head_mask = None
    return {name: scores / scores.norm().clamp(min=1e-12) for name, scores in importance.items()}


def heads_to_keep(importance: dict[str, torch.Tensor], fraction: float) -> dict[str, list[int]]:
    """The heads each layer keeps when the least important round(fraction * H) of its H heads go (at least one
    stays); ties go to the lower index."""
    kept = {}
    for name, scores in importance.items():
        heads = len(scores)
        keep = heads - min(heads - 1, round(fraction * heads))
        order = sorted(range(heads), key=lambda head: (-float(scores[head]), head))
        kept[name] = sorted(order[:keep])
    return kept


def prune_heads(model: nn.Module, kept: dict[str, list[int]]) -> nn.Module:
    """Remove every head not in kept (layer name -> heads) from the model, in place; returns it."""
    layers = attention_layers(model)
    if set(kept) != set(layers):
        raise ValueError(f"kept names layers {sorted(kept)}, the model has {sorted(layers)}")
    for name, layer in layers.items():
        layer.prune_heads(kept[name])
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of the model with every nn.Linear dynamically quantized to int8 (for the CPU; no gradients flow
    through it)."""
    with warnings.catch_warnings():
        # torch 2.11 (pinned) warns that torch.ao.quantization moves to torchao, which this project does not install
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """The size of the model's state dict as torch.save writes it: what the variant costs on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
