"""Unit tests of the shared attention layer and the three classifier models (text, image, speech); the sequence
models have their own: tests/test_translation_model.py, tests/test_speech_recognizer.py."""

import pytest
import torch

from attn_models.attention import MultiHeadAttention, attention_rollout
from attn_models.speech_transformer import SpeechTransformer
from attn_models.text_classifier import EMBED_INIT_STD, TextTransformer
from attn_models.vit import VisionTransformer

torch.manual_seed(0)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_and_explicit_paths_agree(causal):
    attention = MultiHeadAttention(32, 4).eval()
    x = torch.randn(3, 7, 32)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 5:] = True
    fused, no_weights = attention(x, key_padding_mask=padding, causal=causal)
    explicit, weights = attention(x, key_padding_mask=padding, causal=causal, need_weights=True)
    assert no_weights is None
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert weights.shape == (3, 4, 7, 7)


def test_cross_attention_paths_agree_and_rows_sum_to_one():
    attention = MultiHeadAttention(16, 2).eval()
    queries, memory = torch.randn(2, 3, 16), torch.randn(2, 9, 16)
    fused, _ = attention(queries, memory)
    explicit, weights = attention(queries, memory, need_weights=True)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert weights.shape == (2, 2, 3, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 3))


@pytest.mark.parametrize("pool", ["cls", "attention"])
def test_padding_gets_no_attention_and_does_not_change_the_output(pool):
    model = TextTransformer(vocab_size=50, num_classes=3, max_len=16, pool=pool).eval()
    tokens = torch.randint(2, 50, (1, 6))
    padded = torch.cat([tokens, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    logits, attentions, readout = model(padded, return_attention=True)
    for weights in [*attentions, readout]:  # keys 7.. are padding (index 0 is the class token)
        assert torch.all(weights[..., 7:] == 0)
        assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    assert torch.allclose(logits, model(tokens), atol=1e-5)


def test_token_embedding_starts_small_with_a_zero_padding_row():
    """A rare subword keeps about its initial embedding (few optimizer steps reach it), so that must be near silence,
    not PyTorch's N(0, 1) noise (attn_models/text_classifier.py)."""
    weight = TextTransformer(vocab_size=2000, num_classes=3, embed_dim=64, pad_id=1).token_embed.weight
    assert torch.all(weight[1] == 0)
    assert weight[2:].std().item() == pytest.approx(EMBED_INIT_STD, rel=0.05)
    assert EMBED_INIT_STD <= 0.05


def test_causal_mask_hides_the_future():
    _, weights = MultiHeadAttention(8, 2)(torch.randn(1, 5, 8), causal=True, need_weights=True)
    assert torch.all(weights[0, :, 0, 1:] == 0)
    assert torch.all(weights.triu(diagonal=1) == 0)


@pytest.mark.parametrize(
    "model, inputs, tokens",
    [
        (TextTransformer(vocab_size=40, num_classes=5, max_len=12, depth=2), torch.randint(1, 40, (2, 12)), 12),
        (VisionTransformer(num_classes=10, image_size=16, patch_size=4, in_channels=3), torch.randn(2, 3, 16, 16), 16),
        (
            VisionTransformer(num_classes=10, image_size=16, patch_size=4, in_channels=3, stem="conv"),
            torch.randn(2, 3, 16, 16),
            16,
        ),
        (SpeechTransformer(num_classes=4, clip_seconds=0.5, n_mels=20), torch.randn(2, 8000), 26),
        (
            VisionTransformer(num_classes=10, image_size=16, patch_size=4, in_channels=3, pool="attention"),
            torch.randn(2, 3, 16, 16),
            16,
        ),
        (SpeechTransformer(num_classes=4, clip_seconds=0.5, n_mels=20, pool="attention"), torch.randn(2, 8000), 26),
    ],
)
def test_models_classify_and_expose_attention(model, inputs, tokens):
    model.eval()
    logits, attentions, readout = model(inputs, return_attention=True)
    assert logits.shape == (2, model.head.out_features)
    assert len(attentions) == len(model.encoder.blocks)
    assert attentions[0].shape[-2:] == (tokens + 1, tokens + 1)  # + class token
    assert readout.shape == (2, tokens + 1) and torch.allclose(readout.sum(-1), torch.ones(2))
    relevance = model.input_relevance(inputs)
    assert relevance.shape == (2, tokens)
    assert torch.allclose(relevance.sum(-1), torch.ones(2), atol=1e-5)
    if model.pool == "cls":  # the class token's row of the rollout, exactly
        row = attention_rollout(attentions)[:, 0, 1:]
        assert torch.equal(relevance, row / row.sum(-1, keepdim=True))
    assert torch.allclose(model(inputs), logits, atol=1e-5)  # fused path gives the same logits


def test_rollout_by_hand():
    """Two layers, two heads, two tokens. Heads average to A = [[.8, .2], [.3, .7]] and B = [[.6, .4], [.1, .9]];
    with the residual at weight 0.5 they become A' = [[.9, .1], [.15, .85]] and B' = [[.8, .2], [.05, .95]], and the
    rollout is B' @ A' (the later layer on the left) = [[.75, .25], [.1875, .8125]]. The other order, A' @ B', would be
    [[.725, .275], [.1625, .8375]]."""
    first = torch.tensor([[[1.0, 0.0], [0.2, 0.8]], [[0.6, 0.4], [0.4, 0.6]]])[None]  # (B=1, H=2, T, T)
    second = torch.tensor([[[0.6, 0.4], [0.0, 1.0]], [[0.6, 0.4], [0.2, 0.8]]])[None]
    rollout = attention_rollout([first, second], residual_weight=0.5)
    assert torch.allclose(rollout, torch.tensor([[[0.75, 0.25], [0.1875, 0.8125]]]))


def test_augmentation_only_in_training():
    model = SpeechTransformer(num_classes=2, clip_seconds=0.5, freq_mask=10, time_mask=10, time_shift_ms=50,
                              background_mix=1.0)  # fmt: skip
    wave = torch.randn(4, 8000)
    model.eval()
    assert torch.equal(model.features(wave), model.features(wave))
    model.train()
    assert not torch.equal(model.features(wave), model.features(wave))


def test_heads_must_divide_embedding():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)
