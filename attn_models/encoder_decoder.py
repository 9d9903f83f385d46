"""The decoder half of an encoder-decoder Transformer (Vaswani et al., 2017, pre-norm), shared by every model that
turns some source into a token sequence: translation (source tokens) and speech recognition (a waveform).

``EncoderDecoder`` holds everything that does not depend on what the source is: the target embedding (tied with
the output projection), sinusoidal positions, the decoder blocks (causal self-attention over the output so far, then
cross-attention from the output to the encoded source, both with the shared ``MultiHeadAttention``), teacher-forced
``forward``, incremental decoding, ``greedy_decode``, batched ``beam_search`` with the GNMT length penalty,
``max_new_tokens`` and the ``cross_attention`` alignment. A subclass only says how to encode its source:

    encode(source) -> (memory (B, S, C), memory_padding (B, S) bool, True where a memory position is padding)

and, when it can say so without running its encoder, ``memory_padding(source)``. ``source`` is whatever ``encode``
takes (token ids (B, S); a tuple of tensors); the base class never looks inside it.

Shapes: B batch, S memory positions (source tokens, audio frames), T target tokens, C embedding, V vocabulary, K beams.
"""

import math

import torch
from torch import nn

from attn_models.attention import FeedForward, MultiHeadAttention


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim): sin on even, cos on odd channels, wavelengths from 2 pi to 10000 * 2 pi."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: x + SelfAttn(LN(x), causal), x + CrossAttn(LN(x), memory), x + MLP(LN(x))."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn = MultiHeadAttention(embed_dim, num_heads)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.mlp = FeedForward(embed_dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, target_padding=None, source_padding=None, need_weights=False):
        attended, _ = self.self_attn(self.norm1(x), key_padding_mask=target_padding, causal=True)
        x = x + self.drop(attended)
        attended, cross_weights = self.cross_attn(
            self.norm2(x), memory, key_padding_mask=source_padding, need_weights=need_weights
        )  # weights: (B, H, T, S)
        x = x + self.drop(attended)
        return x + self.mlp(self.norm3(x)), cross_weights

    def step(self, x, past, memory, source_padding=None):
        """The newest position only, x (B, 1, C), given past: this block's normalized inputs at the earlier positions
        (B, t, C), or None. The self-attention is causal, so this equals forward's last position at a fraction of
        the cost; returns it and the past extended by it (incremental decoding)."""
        normed = self.norm1(x)
        past = normed if past is None else torch.cat([past, normed], dim=1)
        x = x + self.drop(self.self_attn(normed, past)[0])
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, key_padding_mask=source_padding)[0])
        return x + self.mlp(self.norm3(x)), past


class EncoderDecoder(nn.Module):
    """A Transformer decoder over any encoder: subclasses implement ``encode`` (see the module docstring).

    The target embedding ``embed`` is also the output projection (tied weights); a subclass may share it with its
    encoder too (translation, one joint vocabulary). ``max_len`` bounds the target length (the position table).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        decoder_depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        max_len: int,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
    ):
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id, self.max_len = pad_id, bos_id, eos_id, max_len
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=embed_dim**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, embed_dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.ModuleList(
            DecoderBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(embed_dim)

    # ---- what a subclass provides -------------------------------------------------------------------------
    def encode(self, source) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded source (B, S, C) and its padding mask (B, S), True at padding (gets no cross-attention)."""
        raise NotImplementedError

    def memory_padding(self, source) -> torch.Tensor:
        """The padding mask (B, S) that ``encode`` returns. This default runs the encoder; a subclass that can tell
        it from the source alone (token ids, sample counts) overrides it to skip that work."""
        return self.encode(source)[1]

    # ---- teacher forcing ----------------------------------------------------------------------------------
    def embed_tokens(
        self, ids: torch.Tensor, start: int = 0
    ) -> torch.Tensor:  # (B, T) at positions start.. -> (B, T, C)
        positions = self.positions[start : start + ids.shape[1]]
        return self.drop(self.embed(ids) * math.sqrt(self.embed.embedding_dim) + positions)

    def decode(self, target_in, memory, source_padding, need_weights=False):
        """Decoder states (B, T, C), one per target position, to project onto the vocabulary with ``logits``; with
        the per-layer cross-attention weights (B, H, T, S) when asked."""
        x, cross = self.embed_tokens(target_in), []
        target_padding = target_in == self.pad_id
        for block in self.decoder:
            x, weights = block(x, memory, target_padding, source_padding, need_weights)
            cross.append(weights)
        return self.decoder_norm(x), (cross if need_weights else None)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.embed.weight.T  # tied output projection: (..., C) -> (..., V)

    def forward(self, source, target_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: source and target_in ([BOS] y1 .. y_{T-1}, (B, T)) -> logits (B, T, V) for y1 .. yT."""
        return self.logits(self.decode(target_in, *self.encode(source))[0])

    @torch.no_grad()
    def cross_attention(self, source, output: torch.Tensor) -> torch.Tensor:
        """Alignment of a decoded output (B, T) with its source: (B, T, S), cross-attention averaged over heads and
        layers; row t is where the decoder looked to emit output token t (rows of padding sum to 1 too and mean
        nothing). Padded memory positions get exactly 0.

        The decoder is causal, so one teacher-forced pass over [BOS] + output gives exactly the weights of decoding.
        """
        target_in = torch.cat([torch.full_like(output[:, :1], self.bos_id), output[:, :-1]], dim=1)
        _, cross = self.decode(target_in, *self.encode(source), need_weights=True)
        return torch.stack(cross).mean(dim=(0, 2))

    # ---- decoding -----------------------------------------------------------------------------------------
    def next_token_logits(self, token, position: int, memory, source_padding, past: list) -> torch.Tensor:
        """Logits (B, V) of the token that follows `token` (B,), the decoder input at `position`, by one incremental
        step: past holds each layer's inputs at the earlier positions and is extended in place. Never [PAD] or [BOS]
        (decoding stops with [EOS])."""
        x = self.embed_tokens(token[:, None], start=position)
        for layer, block in enumerate(self.decoder):
            x, past[layer] = block.step(x, past[layer], memory, source_padding)
        logits = self.logits(self.decoder_norm(x[:, 0])).float()
        logits[:, [self.pad_id, self.bos_id]] = float("-inf")
        return logits

    def max_new_tokens(self, source, limit: int, ratio: float) -> int:
        """How many tokens decoding may emit: ratio * the longest memory (its unpadded positions: source tokens,
        audio frames) + 10, at most limit and max_len - 1."""
        longest = int((~self.memory_padding(source)).sum(dim=1).max())
        return max(1, min(limit, self.max_len - 1, int(ratio * longest) + 10))

    @torch.no_grad()
    def greedy_decode(self, source, max_new_tokens: int) -> torch.Tensor:
        """The most likely next token each step: (B, T) ids, ending with EOS then padding (or cut at max_new_tokens)."""
        memory, source_padding = self.encode(source)
        B, device = memory.shape[0], memory.device
        sequences = torch.full((B, 1), self.bos_id, dtype=torch.long, device=device)
        finished = torch.zeros(B, dtype=torch.bool, device=device)
        past = [None] * len(self.decoder)
        for position in range(max_new_tokens):
            token = self.next_token_logits(sequences[:, -1], position, memory, source_padding, past).argmax(dim=-1)
            token = token.masked_fill(finished, self.pad_id)
            sequences = torch.cat([sequences, token[:, None]], dim=1)
            finished = finished | (token == self.eos_id)
            if finished.all():
                break
        return sequences[:, 1:]

    @torch.no_grad()
    def beam_search(self, source, max_new_tokens: int, beam_size: int = 4, length_penalty: float = 0.6) -> torch.Tensor:
        """Batched beam search; the best finished hypothesis by log-probability / ((5 + length) / 6) ** length_penalty
        (Wu et al., 2016). Returns (B, T) ids, each ending with EOS then padding (or cut at max_new_tokens).
        beam_size=1 is greedy decoding."""
        memory, source_padding = self.encode(source)
        B, K, device = memory.shape[0], beam_size, memory.device
        memory, source_padding = memory.repeat_interleave(K, dim=0), source_padding.repeat_interleave(K, dim=0)
        sequences = torch.full((B * K, 1), self.bos_id, dtype=torch.long, device=device)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start as the same [BOS]; keep one so the first step does not pick duplicates
        finished = torch.zeros(B * K, dtype=torch.bool, device=device)
        lengths = torch.zeros(B * K, device=device)  # tokens emitted up to and including EOS
        past = [None] * len(self.decoder)
        for position in range(max_new_tokens):
            log_probs = self.next_token_logits(sequences[:, -1], position, memory, source_padding, past)
            log_probs = log_probs.log_softmax(dim=-1)  # (B*K, V)
            log_probs[finished] = float("-inf")
            log_probs[finished, self.pad_id] = 0.0  # a finished hypothesis only pads, its score unchanged
            candidates = (scores.view(B * K, 1) + log_probs).view(B, -1)  # (B, K*V)
            scores, flat = candidates.topk(K, dim=-1)  # (B, K)
            beam = (flat // log_probs.shape[-1] + torch.arange(B, device=device)[:, None] * K).view(-1)
            token = (flat % log_probs.shape[-1]).view(-1)
            sequences = torch.cat([sequences[beam], token[:, None]], dim=1)
            past = [states[beam] for states in past]  # each hypothesis keeps the history it extends
            finished, lengths = finished[beam], lengths[beam] + (~finished[beam]).float()
            finished = finished | (token == self.eos_id)
            if finished.all():
                break
        penalty = ((5.0 + lengths.view(B, K)) / 6.0) ** length_penalty
        best = (scores / penalty).argmax(dim=-1) + torch.arange(B, device=device) * K
        best_sequences = sequences[best, 1:]
        return best_sequences[:, : int((best_sequences != self.pad_id).sum(dim=1).max())]  # no column of padding only
