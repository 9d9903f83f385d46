"""Masked-token prediction (BERT's pretraining objective, Devlin et al., 2019) on a text classifier's encoder (whose
weights the fine-tuned classifier then starts from: ClassTokenClassifier.encoder_state and load_encoder).

The corruption is BERT's 80/10/10: ``mask_ratio`` of the ordinary tokens of each text are chosen; of those, 80% are
replaced by [MASK], 10% by a random ordinary token and 10% left as they are, and the model predicts the original token
at every chosen place. Plain [MASK] replacement would teach the encoder that a token to predict always shows as
[MASK], a token fine-tuning never sees; the random and kept tenths make it model every input token. Special tokens
(padding, [UNK], [MASK]) are never chosen: there is nothing to learn in predicting them.

The language-model head is BERT's: a dense layer, GELU and LayerNorm, then a projection onto the vocabulary tied to
the token embedding (its transpose, plus a bias per token). Tying keeps the head small (no vocab x width matrix of its
own) and makes the embedding learn from both ends, which is what the fine-tuned classifier keeps.

Pure PyTorch: the pretrain stage (tasks/stages/pretrain.py) drives it, with the data and the tracking.
"""

import torch
import torch.nn.functional as F
from torch import nn

from attn_models.text_classifier import TextTransformer

IGNORED = -100  # the target of a place with nothing to predict (cross_entropy's ignore_index)
MASKED, RANDOM = 0.8, 0.1  # of the chosen places: replaced by [MASK], by a random token (the rest stay as they are)


class MaskedTokenModel(nn.Module):
    """A TextTransformer (its class head unused) with a language-model head over its token outputs."""

    def __init__(self, encoder: TextTransformer):
        super().__init__()
        self.encoder = encoder
        embed = encoder.token_embed
        width = embed.embedding_dim
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.bias = nn.Parameter(torch.zeros(embed.num_embeddings))

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:  # token_ids: (B, T) -> logits (B, T, vocab)
        states = self.transform(self.encoder.token_states(token_ids))  # (B, T, C)
        return states @ self.encoder.token_embed.weight.T + self.bias  # tied to the input embedding


def mask_tokens(
    token_ids: torch.Tensor, ratio: float, mask_id: int, ordinary_from: int, vocab_size: int, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a batch (B, T): (the model's input, the targets: the original token at each chosen place,
    IGNORED elsewhere). Ids below ordinary_from are special and never chosen. Each text with an ordinary token gets at
    least one chosen place, so no batch is without a target."""
    ordinary = token_ids >= ordinary_from
    scores = torch.rand(token_ids.shape, generator=generator)
    chosen = ordinary & (scores < ratio)
    unchosen_rows = ordinary.any(dim=1) & ~chosen.any(dim=1)  # short texts: their most likely place
    lowest = scores.masked_fill(~ordinary, 2.0).argmin(dim=1)
    chosen[unchosen_rows, lowest[unchosen_rows]] = True
    targets = token_ids.masked_fill(~chosen, IGNORED)
    draw = torch.rand(token_ids.shape, generator=generator)
    random_ids = torch.randint(ordinary_from, vocab_size, token_ids.shape, generator=generator)
    inputs = token_ids.masked_fill(chosen & (draw < MASKED), mask_id)
    replaced = chosen & (draw >= MASKED) & (draw < MASKED + RANDOM)
    inputs = torch.where(replaced, random_ids, inputs)
    return inputs, targets


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the cross-entropy over the chosen places, the share of them predicted right) for logits (B, T, vocab)."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORED)
    chosen = targets != IGNORED
    accuracy = (logits.argmax(dim=-1)[chosen] == targets[chosen]).float().mean()
    return loss, accuracy
