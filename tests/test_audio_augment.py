"""The speech augmentations (attn_models/audio_augment.py) on hand-made clips: what each changes, by how much."""

import math

import torch

from attn_models.audio_augment import mix_background, spec_augment, time_shift


def test_time_shift_moves_each_clip_within_the_limit_and_fills_the_gap_with_silence():
    torch.manual_seed(0)
    clips = torch.arange(1, 101, dtype=torch.float32).repeat(64, 1)  # 1 .. 100: a sample's value says where it was
    shifted = time_shift(clips, max_shift=5)
    shifts = set()
    for row in shifted:
        real = row[row > 0]
        shift = int(torch.nonzero(row)[0]) - (int(real[0]) - 1)  # where the first kept sample went, from where
        assert torch.equal(real, torch.arange(real[0], real[0] + len(real)))  # the clip itself unchanged, in order
        assert len(real) == 100 - abs(shift) and abs(shift) <= 5
        shifts.add(shift)
    assert shifts == set(range(-5, 6))  # every shift drawn, per clip
    assert torch.equal(time_shift(clips, 0), clips)


def test_background_is_another_clip_backwards_at_the_drawn_level_below_the_clip():
    torch.manual_seed(0)
    clips = torch.randn(8, 400) * torch.arange(1, 9)[:, None]  # levels 1 .. 8
    mixed = mix_background(clips, probability=1.0, snr_db=(20.0, 20.0))
    added = mixed - clips
    for index in range(8):
        level = clips[index].pow(2).mean().sqrt()
        assert math.isclose(added[index].pow(2).mean().sqrt() / level, 0.1, rel_tol=1e-4)  # 20 dB below the clip
        others = [other for other in range(8) if other != index]
        sources = [float(torch.nn.functional.cosine_similarity(added[index], clips[o].flip(0), dim=0)) for o in others]
        assert max(sources) > 0.999  # one other clip, reversed
    assert torch.equal(mix_background(clips, probability=0.0, snr_db=(5.0, 20.0)), clips)
    some = mix_background(clips.repeat(50, 1), probability=0.5, snr_db=(5.0, 20.0))
    share = float((some != clips.repeat(50, 1)).any(dim=1).float().mean())
    assert 0.35 < share < 0.65


def test_spec_augment_masks_each_clip_of_a_batch_on_its_own():
    torch.manual_seed(0)
    features = torch.ones(16, 40, 50)
    masked = spec_augment(features, torch.full((16,), 50), freq_masks=2, freq_mask=8, time_masks=2, time_mask=10)
    patterns = {tuple(clip.flatten().tolist()) for clip in masked}
    assert len(patterns) > 8  # the same clip 16 times, masked differently
    assert float(masked.mean()) < 1.0
    bands = (masked == 0).all(dim=2).sum(dim=1)  # mel channels zero in every frame
    assert int(bands.max()) <= 2 * 8
