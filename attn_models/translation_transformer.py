"""Encoder-decoder Transformer for translation (Vaswani et al., 2017, pre-norm), with greedy and beam-search decoding.

The encoder is the shared ``Encoder`` over the source tokens; the decoder, decoding and the alignment come from
``EncoderDecoder`` (attn_models/encoder_decoder.py). Source and target share one subword vocabulary, so one
embedding table serves the encoder input, the decoder input and the output projection (tied weights). Positions
are sinusoidal. The cross-attention weights of a decoded output are its alignment with the source:
``cross_attention`` returns them, averaged over heads and layers.

Shapes: B batch, S source tokens, T target tokens, C embedding, V vocabulary.
"""

import torch

from attn_models.attention import Encoder
from attn_models.encoder_decoder import DecoderBlock, EncoderDecoder


class TranslationTransformer(EncoderDecoder):
    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        encoder_depth: int = 3,
        decoder_depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        max_len: int = 128,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
    ):
        # The decoder blocks are drawn from the random generator after the encoder, as before the decoder moved to
        # EncoderDecoder, so a seed still gives the same initial weights (and the same trained model).
        super().__init__(vocab_size, embed_dim, 0, num_heads, mlp_ratio, dropout, max_len, pad_id, bos_id, eos_id)
        self.encoder = Encoder(embed_dim, encoder_depth, num_heads, mlp_ratio, dropout)
        self.decoder.extend(DecoderBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(decoder_depth))

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source token ids (B, S) -> encoded source (B, S, C) and its padding mask (B, S)."""
        source_padding = self.memory_padding(source)
        memory, _ = self.encoder(self.embed_tokens(source), source_padding)  # the shared (tied) embedding
        return memory, source_padding

    def memory_padding(self, source: torch.Tensor) -> torch.Tensor:
        return source == self.pad_id  # one memory position per source token
