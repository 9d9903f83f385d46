"""The attention speech recognizer (SpeechRecognizer on the shared EncoderDecoder): shapes, padding, causality,
decoding, alignment, CTC, and that a tiny model learns to transcribe two synthetic utterances."""

import math

import pytest
import torch
import torch.nn.functional as F

from attn_models.encoder_decoder import EncoderDecoder
from attn_models.speech_recognizer import SpeechRecognizer, guided_attention_loss
from attn_models.translation_transformer import TranslationTransformer

VOCAB, PAD_ID, BOS_ID, EOS_ID = 12, 0, 2, 3
RATE = 16000


def tiny_model(**overrides) -> SpeechRecognizer:
    torch.manual_seed(0)
    args = (
        dict(
            vocab_size=VOCAB,
            n_mels=20,
            embed_dim=32,
            encoder_depth=2,
            decoder_depth=2,
            num_heads=4,
            mlp_ratio=2.0,
            dropout=0.0,
            max_len=32,
        )
        | overrides
    )
    return SpeechRecognizer(**args).eval()


def padded_batch(*clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(waveform (B, longest), lengths (B,)): the clips zero-padded at the end."""
    lengths = torch.tensor([len(clip) for clip in clips])
    waveform = torch.zeros(len(clips), int(lengths.max()))
    for row, clip in enumerate(clips):
        waveform[row, : len(clip)] = clip
    return waveform, lengths


def random_ids(*shape) -> torch.Tensor:
    return torch.randint(4, VOCAB, shape)  # no special tokens


def test_both_models_share_the_decoder_base():
    assert issubclass(SpeechRecognizer, EncoderDecoder) and issubclass(TranslationTransformer, EncoderDecoder)


def test_shapes_of_logits_memory_ctc_and_alignment():
    model = tiny_model()
    source = padded_batch(torch.randn(12000), torch.randn(8000), torch.randn(3000))
    target = random_ids(3, 5)
    assert model(source, target).shape == (3, 5, VOCAB)
    memory, padding = model.encode(source)
    # 10 ms hops over 25 ms windows of real samples only: 1 + (samples - 400) // 160 log-mel frames; each stride-2
    # convolution then keeps (frames - 1) // 2 + 1: 12000 samples -> 73 -> 37 -> 19 memory frames
    assert memory.shape == (3, 19, 32) and padding.shape == (3, 19)
    assert (~padding).sum(dim=1).tolist() == [19, 12, 5] == model.memory_lengths(source).tolist()
    assert torch.equal(model.memory_padding(source), padding)
    log_probs, lengths = model.ctc_log_probs(source)
    assert log_probs.shape == (19, 3, VOCAB) and lengths.tolist() == [19, 12, 5]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(19, 3), atol=1e-5)
    logits, ctc_log_probs, ctc_lengths, attention = model.forward_with_ctc(source, target, need_attention=True)
    assert torch.allclose(logits, model(source, target), atol=1e-5) and torch.allclose(ctc_log_probs, log_probs)
    output = torch.cat([target[:, 1:], torch.full((3, 1), EOS_ID)], dim=1)  # what target (as decoder input) predicts
    target[:, 0] = BOS_ID
    attention = model.forward_with_ctc(source, target, need_attention=True).cross_attention
    assert torch.allclose(attention, model.cross_attention(source, output), atol=1e-5)
    assert model.forward_with_ctc(source, target).cross_attention is None
    assert model.cross_attention(source, target).shape == (3, 5, 19)


def test_a_bare_waveform_is_a_batch_of_full_length_clips():
    model, waveform = tiny_model(), torch.randn(2, 6000)
    target = random_ids(2, 4)
    assert torch.equal(model(waveform, target), model((waveform, torch.tensor([6000, 6000])), target))


def test_padding_frames_get_no_attention_and_change_nothing_for_the_real_part():
    model = tiny_model()
    short, long = torch.randn(7000), torch.randn(13000)
    target = random_ids(1, 4)
    batch = padded_batch(short, long)
    alone_memory, _ = model.encode(padded_batch(short))
    batch_memory, batch_padding = model.encode(batch)
    real = alone_memory.shape[1]
    assert batch_padding[0, real:].all() and not batch_padding[0, :real].any()
    assert torch.allclose(alone_memory[0], batch_memory[0, :real], atol=1e-5)
    logits = model(batch, torch.cat([target, random_ids(1, 4)]))
    assert torch.allclose(model(padded_batch(short), target)[0], logits[0], atol=1e-5)
    alignment = model.cross_attention(batch, torch.cat([target, random_ids(1, 4)]))
    assert torch.all(alignment[0, :, real:] == 0)
    # the short clip decodes the same alone and in the batch
    for decode in (lambda s: model.greedy_decode(s, 8), lambda s: model.beam_search(s, 8, beam_size=3)):
        alone, together = decode(padded_batch(short))[0], decode(batch)[0]
        assert torch.equal(alone, together[: len(alone)]) and (together[len(alone) :] == PAD_ID).all()


def test_samples_past_a_clips_length_are_ignored():
    """Whatever lies beyond lengths[b] (padding need not be zeros) changes nothing."""
    model = tiny_model()
    waveform, lengths = padded_batch(torch.randn(9000), torch.randn(9000))
    lengths = torch.tensor([5000, 9000])
    noisy = waveform.clone()
    noisy[0, 5000:] = torch.randn(4000)
    target = random_ids(2, 3)
    assert torch.allclose(model((waveform, lengths), target), model((noisy, lengths), target), atol=1e-5)


def test_a_later_target_token_does_not_change_earlier_logits():
    model, source, target = tiny_model(), padded_batch(torch.randn(8000), torch.randn(6000)), random_ids(2, 8)
    changed = target.clone()
    changed[:, 5] = (target[:, 5] + 1 - 4) % (VOCAB - 4) + 4
    before, after = model(source, target), model(source, changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-5)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-3)


def test_cross_attention_rows_sum_to_one():
    model, source = tiny_model(), padded_batch(torch.randn(10000), torch.randn(4000))
    alignment = model.cross_attention(source, random_ids(2, 6))
    assert torch.allclose(alignment.sum(-1), torch.ones(2, 6), atol=1e-5)
    assert (alignment >= 0).all()


def test_beam_of_one_is_greedy_and_wider_beams_end_with_eos_then_padding():
    model = tiny_model()
    source = padded_batch(*(torch.randn(n) for n in (9000, 6000, 12000, 4000)))
    greedy = model.greedy_decode(source, 12)
    assert torch.equal(model.beam_search(source, 12, beam_size=1), greedy)
    beams = model.beam_search(source, 12, beam_size=4)
    assert beams.shape[0] == 4 and beams.shape[1] <= 12
    for row in beams:
        eos = (row == EOS_ID).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1 :] == PAD_ID).all()
        assert BOS_ID not in row.tolist()


def test_max_new_tokens_follows_the_memory_frames():
    model = tiny_model(max_len=64)
    source = padded_batch(torch.randn(12000), torch.randn(3000))  # 19 and 5 memory frames
    assert model.max_new_tokens(source, limit=100, ratio=0.5) == 19  # int(0.5 * 19) + 10
    assert model.max_new_tokens(source, limit=7, ratio=0.5) == 7
    assert model.max_new_tokens(padded_batch(torch.randn(64000)), limit=200, ratio=1.0) == 63  # 100 frames; max_len - 1


def test_spec_augment_only_in_training():
    model = tiny_model()
    source = padded_batch(torch.randn(16000), torch.randn(12000))
    evaluated, frames = model.features(source)
    assert torch.equal(evaluated, model.features(source)[0])  # deterministic in eval mode
    model.train()
    torch.manual_seed(1)
    augmented, _ = model.features(source)
    model.eval()
    assert not torch.equal(augmented, evaluated)
    masked = augmented == 0
    assert masked.any() and torch.all(augmented[~masked] == evaluated[~masked])  # only zeroes, nothing else
    assert torch.all(evaluated[1, :, int(frames[1]) :] == 0)  # frames past the clip are 0 either way


def test_guided_attention_loss_prefers_the_diagonal_and_ignores_padding():
    target_in = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 5, PAD_ID, PAD_ID]])
    memory_lengths = torch.tensor([8, 4])
    diagonal, reversed_ = torch.zeros(2, 4, 8), torch.zeros(2, 4, 8)
    for t in range(4):  # row b, position t looks at the frames of its share of the clip (or the opposite share)
        diagonal[0, t, 2 * t : 2 * t + 2] = reversed_[0, t, 6 - 2 * t : 8 - 2 * t] = 0.5
        diagonal[1, t, 2 * min(t, 1) : 2 * min(t, 1) + 2] = reversed_[1, t, 2 - 2 * min(t, 1) : 4 - 2 * min(t, 1)] = 0.5
    good = guided_attention_loss(diagonal, target_in, memory_lengths, PAD_ID)
    bad = guided_attention_loss(reversed_, target_in, memory_lengths, PAD_ID)
    assert 0 <= good < 0.1 < 0.5 < bad
    noisy = diagonal.clone()
    noisy[1, 2:] = torch.rand(2, 8)  # padding positions of row 1: anything there is ignored
    assert torch.isclose(guided_attention_loss(noisy, target_in, memory_lengths, PAD_ID), good)


def test_without_a_ctc_head():
    model = tiny_model(ctc=False)
    assert model.ctc_head is None
    with pytest.raises(ValueError, match="no CTC head"):
        model.ctc_log_probs(torch.randn(1, 4000))


def tones(symbols: list[int], seconds: float = 0.12) -> torch.Tensor:
    """A synthetic 'utterance': one pure tone per symbol (frequency by symbol), with a little noise."""
    t = torch.arange(int(seconds * RATE)) / RATE
    pieces = [torch.sin(2 * math.pi * (250.0 + 300.0 * (s - 4)) * t) for s in symbols]
    generator = torch.Generator().manual_seed(len(symbols))
    return torch.cat(pieces) * 0.5 + 0.01 * torch.randn(len(symbols) * len(t), generator=generator)


def test_a_tiny_model_learns_two_utterances_and_decodes_them_exactly():
    """Hybrid CTC/attention training on two tone sequences of different lengths: greedy, beam search and CTC
    best path all give the targets back."""
    model = tiny_model(encoder_depth=1, decoder_depth=1, freq_masks=0, time_masks=0).train()
    symbols = [[5, 7, 9, 6], [8, 4]]
    source = padded_batch(*(tones(s) for s in symbols))
    wanted = torch.tensor([[5, 7, 9, 6, EOS_ID], [8, 4, EOS_ID, PAD_ID, PAD_ID]])
    target_in = torch.cat([torch.full((2, 1), BOS_ID), wanted[:, :-1]], dim=1)
    ctc_targets, ctc_target_lengths = torch.tensor([[5, 7, 9, 6], [8, 4, 0, 0]]), torch.tensor([4, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits, log_probs, lengths, _ = model.forward_with_ctc(source, target_in)
        loss = 0.7 * F.cross_entropy(logits.reshape(-1, VOCAB), wanted.reshape(-1), ignore_index=PAD_ID)
        loss = loss + 0.3 * F.ctc_loss(log_probs, ctc_targets, lengths, ctc_target_lengths, blank=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert torch.equal(model.greedy_decode(source, 10), wanted)
    assert torch.equal(model.beam_search(source, 10, beam_size=3), wanted)
    assert model.ctc_greedy_decode(source) == symbols
