"""The attention layer every model in this package shares, the encoder block built on it,
and attention rollout (Abnar & Zuidema, 2020) to turn per-layer weights into one map.

Shapes: B batch, T tokens (Tq queries, Tk keys), C embedding, H heads, D = C / H.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Multi-head attention with two paths that compute the same thing:

    - need_weights=False: torch's fused ``scaled_dot_product_attention`` (fast, no weights);
    - need_weights=True: an explicit softmax(QK^T / sqrt(D)) V that also returns the
      attention weights (B, H, Tq, Tk), which is what the pipeline logs as attention maps.

    ``head_mask`` (H,), None by default, scales each head's output before out_proj: 0 silences a head, and a mask of
    ones that requires grad gives each head's importance as the gradient of a loss with respect to it (Michel et al.,
    2019; attn_models/compression.py). ``prune_heads`` removes heads for good: the mask is not in the state dict, and
    a pruned layer's smaller q, k, v and out_proj are rebuilt from the kept heads' indices before its state dict loads.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.head_mask: torch.Tensor | None = None

    def prune_heads(self, keep: list[int]) -> None:
        """Keep only the heads in ``keep`` (structured pruning): the rows of q, k and v that compute the other heads
        and the columns of out_proj that read them are removed, so the layer is smaller and faster, and the kept
        heads compute exactly what they did (head_dim is unchanged)."""
        rows = head_features(keep, self.num_heads, self.head_dim)
        self.q_proj, self.k_proj, self.v_proj = (
            kept_rows(layer, rows) for layer in (self.q_proj, self.k_proj, self.v_proj)
        )
        self.out_proj = kept_columns(self.out_proj, rows)
        self.num_heads, self.head_mask = len(keep), None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        query: torch.Tensor,  # (B, Tq, C)
        key_value: torch.Tensor | None = None,  # (B, Tk, C); None for self-attention
        key_padding_mask: torch.Tensor | None = None,  # (B, Tk), True where the key is padding
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key_value = query if key_value is None else key_value
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key_value))
        v = self._split_heads(self.v_proj(key_value))
        allowed = _allowed_mask(q.shape[2], k.shape[2], key_padding_mask, causal, query.device)

        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v  # (B, H, Tq, D)
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        if self.head_mask is not None:
            out = out * self.head_mask.view(1, -1, 1, 1)  # a head's contribution, scaled (0: silenced)

        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)  # (B, Tq, C)
        return self.out_proj(out), weights


def head_features(keep: list[int], num_heads: int, head_dim: int) -> torch.Tensor:
    """The feature indices (in q, k, v's outputs; out_proj's inputs) of the heads in keep, after checking that keep
    names distinct heads of the layer."""
    if not keep or len(set(keep)) != len(keep) or not all(0 <= head < num_heads for head in keep):
        raise ValueError(f"keep must name distinct heads among 0..{num_heads - 1}; got {keep}")
    return torch.cat([torch.arange(head * head_dim, (head + 1) * head_dim) for head in sorted(keep)])


def kept_rows(layer: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    """A Linear computing only these output features of layer."""
    kept = nn.Linear(layer.in_features, len(rows), device=layer.weight.device, dtype=layer.weight.dtype)
    kept.weight.data, kept.bias.data = layer.weight.data[rows].clone(), layer.bias.data[rows].clone()
    return kept


def kept_columns(layer: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    """A Linear reading only these input features of layer (the others are taken as 0)."""
    kept = nn.Linear(len(columns), layer.out_features, device=layer.weight.device, dtype=layer.weight.dtype)
    kept.weight.data, kept.bias.data = layer.weight.data[:, columns].clone(), layer.bias.data.clone()
    return kept


def _allowed_mask(tq, tk, key_padding_mask, causal, device) -> torch.Tensor | None:
    """Boolean mask broadcastable to (B, H, Tq, Tk): True where a query may attend to a key."""
    allowed = None
    if key_padding_mask is not None:
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
    if causal:
        lower = torch.ones(tq, tk, dtype=torch.bool, device=device).tril(diagonal=tk - tq)
        allowed = lower if allowed is None else allowed & lower
    return allowed


class FeedForward(nn.Sequential):
    def __init__(self, embed_dim: int, mlp_ratio: float, dropout: float):
        hidden = int(embed_dim * mlp_ratio)
        super().__init__(
            nn.Linear(embed_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, embed_dim),
            nn.Dropout(dropout),
        )


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(embed_dim, num_heads)  # no dropout on attention weights (as in ViT)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = FeedForward(embed_dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_padding_mask=None, need_weights=False):
        attended, weights = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, need_weights=need_weights)
        x = x + self.drop(attended)
        return x + self.mlp(self.norm2(x)), weights


class Encoder(nn.Module):
    """A stack of encoder blocks with a final LayerNorm. Returns the per-layer weights when asked."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x, key_padding_mask=None, need_weights=False):
        attentions = []
        for block in self.blocks:
            x, weights = block(x, key_padding_mask, need_weights)
            attentions.append(weights)
        return self.norm(x), (attentions if need_weights else None)


def attention_rollout(attentions: list[torch.Tensor], residual_weight: float = 0.5) -> torch.Tensor:
    """Attention rollout: average heads, mix in the residual path, multiply through the layers.

    attentions: per-layer weights, each (B, H, T, T). Returns (B, T, T); row i says how much
    each input token contributed to output token i (rows sum to 1).
    """
    rollout = None
    for weights in attentions:
        mixed = weights.mean(dim=1)  # (B, T, T)
        eye = torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = residual_weight * mixed + (1 - residual_weight) * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


POOLS = ("cls", "attention")


class AttentionClassifier(nn.Module):
    """What the pipeline asks of every classifier (trained from scratch, ``ClassTokenClassifier``, or fine-tuned from
    a pretrained backbone, attn_models/pretrained.py), so that evaluation, attribution, compression and serving
    read them all alike:

    - ``forward(inputs, return_attention=False)``: the logits (B, classes), or (logits, the per-layer attention
      weights, each (B, H, 1 + T, 1 + T) with the class token first, the readout (B, 1 + T)); inputs hold the
      content tokens only (the model adds its class token), so every map has one value per content token;
    - ``encoder_entry``: the module whose first positional input is the encoder's input (B, 1 + T, C), class token
      first: attribution (attn_models/attribution.py) reads and replaces tokens there with a forward pre-hook;
    - ``blank_tokens()``: that input for a sequence with no content, (1, 1 + max T, C): what a removed token becomes
      when the caller gives no baseline;
    - optionally ``head_layers()``: the attention layers whose heads compression scores and prunes
      (attn_models/compression.py ``attention_layers``; without it, every ``MultiHeadAttention`` of the model).

    A subclass defines ``forward``, ``encoder_entry`` and ``blank_tokens``; rollout (``predict_with_relevance``) is
    read the same way for all.

    ``special_tokens``: how many tokens lead the encoder's input before the content (1: the class token). A backbone
    pretrained with a distillation token after it (AST, DeiT) has 2: maps leave both out, and attribution never
    removes either.
    """

    special_tokens = 1

    @torch.no_grad()
    def predict_with_relevance(self, *inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits (B, num_classes) and how much each input token fed the prediction, by attention rollout read
        through the readout (B, T; rows sum to ~1), from one forward pass."""
        logits, attentions, readout = self(*inputs, return_attention=True)
        relevance = read_rows(readout, attention_rollout(attentions))[:, self.special_tokens :]  # content tokens only
        return logits, relevance / relevance.sum(dim=-1, keepdim=True)

    def input_relevance(self, *inputs) -> torch.Tensor:
        """The rollout of predict_with_relevance alone: (B, T)."""
        return self.predict_with_relevance(*inputs)[1]


class ClassTokenClassifier(AttentionClassifier):
    """What every classifier here shares: prepend a learned class token to a token sequence,
    add learned positions, run the encoder, classify from a readout of its outputs.

    The readout (``pool``) is a weighting of the encoder's outputs (B, 1 + T) that the head classifies:
    - ``"cls"``: the class token's output alone (BERT, ViT);
    - ``"attention"``: sequence pooling (Hassani et al., 2021, "Escaping the Big Data Paradigm with Compact
      Transformers"): a learned score per output, softmax over the sequence (padding excluded), and the weighted
      mean of the outputs. Every token's output feeds the prediction directly, which helps small models on small
      data. The class token stays in the sequence as one more learned token, so the token layout (class token
      first) and everything that reads it are the same for both.
    Attribution reads the prediction's attention through the readout: the class token's row of a layer's weights
    for "cls", the readout-weighted mix of the rows for "attention" (``readout @ weights``).

    Subclasses turn their raw input into tokens (B, T, C) and call ``classify``.
    """

    # The modules that read the encoder's outputs for one task's classes: a new task (or a fine-tuning after
    # pretraining) replaces them, and everything else is the encoder that transfers (attn_models/masked_lm.py).
    HEAD_MODULES = ("head", "pool_score")

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        pool: str = "cls",
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens + 1, embed_dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.encoder = Encoder(embed_dim, depth, num_heads, mlp_ratio, dropout)
        self.pool_score = nn.Linear(embed_dim, 1) if pool == "attention" else None
        self.head = nn.Linear(embed_dim, num_classes)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The weights without the head (HEAD_MODULES): the embeddings, the class token and the encoder blocks; what
        a fine-tuning starts from (the pretrain stage saves them)."""
        return {name: value for name, value in self.state_dict().items() if not self.is_head(name)}

    def load_encoder(self, state: dict[str, torch.Tensor]) -> None:
        """Start the encoder from another model's encoder_state; the head stays as built (new). A state that lacks an
        encoder weight, holds one this model has not or a weight of another shape raises: a mismatch would otherwise
        train a partly random encoder silently."""
        missing, unexpected = self.load_state_dict(state, strict=False)  # shapes are checked by torch
        missing = [name for name in missing if not self.is_head(name)]
        if missing or unexpected:
            raise ValueError(
                f"the pretrained encoder does not fit the model: missing {missing}, unexpected {unexpected}"
            )

    def is_head(self, name: str) -> bool:
        """Whether a state-dict key belongs to the head."""
        return name.split(".")[0] in self.HEAD_MODULES

    def readout(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The weights (B, 1 + T; each row sums to 1) the head reads the encoder's outputs x (B, 1 + T, C) with."""
        if self.pool == "cls":
            return F.one_hot(x.new_zeros(x.shape[0], dtype=torch.long), x.shape[1]).to(x.dtype)
        scores = self.pool_score(x).squeeze(-1)  # (B, 1 + T)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask, float("-inf"))
        return scores.softmax(dim=-1)

    def encode(self, tokens, key_padding_mask=None, need_weights=False):
        """The encoder's outputs (B, 1 + T, C) for tokens (B, T, C), the class token first; the padding mask with the
        class token's place (B, 1 + T), or None; the per-layer attention weights when asked. What the head reads, and
        what a pretraining objective trains (attn_models/masked_lm.py)."""
        B, T, _ = tokens.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1) + self.pos_embed[:, : T + 1]
        if key_padding_mask is not None:  # the class token is never padding
            key_padding_mask = torch.cat([key_padding_mask.new_zeros(B, 1), key_padding_mask], dim=1)
        x, attentions = self.encoder(self.drop(x), key_padding_mask, need_weights=need_weights)
        return x, key_padding_mask, attentions

    def classify(self, tokens, key_padding_mask=None, return_attention=False):
        """The logits (B, num_classes); with return_attention also the per-layer attention weights (each
        (B, H, 1 + T, 1 + T)) and the readout (B, 1 + T)."""
        x, key_padding_mask, attentions = self.encode(tokens, key_padding_mask, return_attention)
        readout = self.readout(x, key_padding_mask) if return_attention or self.pool != "cls" else None
        pooled = x[:, 0] if self.pool == "cls" else read_rows(readout, x)  # cls: the one-hot readout's row, directly
        logits = self.head(pooled)
        return (logits, attentions, readout) if return_attention else logits

    @property
    def encoder_entry(self) -> nn.Module:
        return self.encoder

    def blank_tokens(self) -> torch.Tensor:
        """The position embeddings alone (the class token's place holds its position too)."""
        return self.pos_embed


def read_rows(readout: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The rows of weights (B, [H,] Tq, Tk) mixed by readout (B, Tq): (B, [H,] Tk); also the pooled outputs, from
    outputs (B, T, C). With a one-hot readout, the one row it picks (the class token's), exactly."""
    if weights.dim() == 4:
        return torch.einsum("bq,bhqk->bhk", readout, weights)
    return torch.einsum("bq,bqk->bk", readout, weights)
