"""Transformer text classifier over subword token ids (a BERT-style encoder with a class token)."""

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
    ):
        super().__init__(max_len, num_classes, embed_dim, depth, num_heads, mlp_ratio, dropout)
        self.pad_id = pad_id
        self.token_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)

    def forward(self, token_ids: torch.Tensor, return_attention: bool = False):  # token_ids: (B, T) int64
        padding = token_ids == self.pad_id  # (B, T)
        return self.classify(self.token_embed(token_ids), padding, return_attention)
