"""Transformer text classifier over subword token ids (a BERT-style encoder with a class token).

Token dropout (``token_dropout``, training only): each subword is hidden from attention with this probability, as if
deleted from the text, so the class token cannot lean on a few memorised words and learns from the rest of the text
too (word dropout, Iyyer et al., 2015). A regulariser for small text datasets; evaluation sees every token.
"""

import torch
from torch import nn

from attn_models.attention import ClassTokenClassifier


class TextTransformer(ClassTokenClassifier):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_len: int = 64,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        pad_id: int = 0,
        token_dropout: float = 0.0,
        pool: str = "cls",
    ):
        super().__init__(max_len, num_classes, embed_dim, depth, num_heads, mlp_ratio, dropout, pool)
        if not 0 <= token_dropout < 1:
            raise ValueError(f"token_dropout must be in [0, 1) (got {token_dropout})")
        self.pad_id, self.token_dropout = pad_id, token_dropout
        self.token_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)

    def forward(self, token_ids: torch.Tensor, return_attention: bool = False):  # token_ids: (B, T) int64
        padding = token_ids == self.pad_id  # (B, T)
        if self.training and self.token_dropout > 0:  # dropped tokens are masked like padding: no query sees them
            padding = padding | (torch.rand(token_ids.shape, device=token_ids.device) < self.token_dropout)
        return self.classify(self.token_embed(token_ids), padding, return_attention)
