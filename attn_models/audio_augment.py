"""Training-time augmentation of speech, shared by the keyword model and the recognizer; every draw is per clip,
from torch's generator (seeded by the training, one stream per rank).

- ``spec_augment`` (Park et al., 2019): frequency bands and stretches of time of the log-mel features set to 0.
  Drawn per clip: torchaudio's FrequencyMasking and TimeMasking share one mask across the batch unless asked
  (``iid_masks``), which on small batches is a much weaker augmentation.
- ``time_shift``: each clip moved by up to ``max_shift`` samples earlier or later, the gap filled with silence. A
  keyword's position in a one-second clip varies in real recordings; a model trained on centred words learns a
  position it should not.
- ``mix_background``: another clip of the batch, played backwards, added at a signal-to-noise ratio drawn per clip.
  Backwards speech has speech's spectrum and loudness but says no word, so it is background chatter made from the
  data itself, with no noise recordings needed; the ratio is to the clip's own level, so a quiet clip (a silence
  class) only gets quieter chatter.
"""

import torch


def spec_augment(
    features: torch.Tensor,
    frames: torch.Tensor,
    freq_masks: int,
    freq_mask: int,
    time_masks: int,
    time_mask: int,
    time_mask_fraction: float = 1.0,
) -> torch.Tensor:
    """Zero ``freq_masks`` bands of up to ``freq_mask`` mel channels and ``time_masks`` stretches of up to
    ``time_mask`` frames (and at most ``time_mask_fraction`` of the clip's ``frames`` real frames) of features
    (B, n_mels, F)."""
    B, M, F = features.shape
    device = features.device
    keep = torch.ones(B, M, F, dtype=torch.bool, device=device)
    channel = torch.arange(M, device=device)[None, :]  # (1, M)
    frame = torch.arange(F, device=device)[None, :]  # (1, F)
    for _ in range(freq_masks):
        width = (torch.rand(B, device=device) * (freq_mask + 1)).long()  # 0 .. freq_mask
        start = (torch.rand(B, device=device) * (M - width + 1)).long()
        band = (channel >= start[:, None]) & (channel < (start + width)[:, None])  # (B, M)
        keep &= ~band[:, :, None]
    longest = torch.minimum(torch.full_like(frames, time_mask), (frames * time_mask_fraction).long())  # (B,)
    for _ in range(time_masks):
        width = (torch.rand(B, device=device) * (longest + 1)).long()
        start = (torch.rand(B, device=device) * (frames - width + 1)).long()
        stretch = (frame >= start[:, None]) & (frame < (start + width)[:, None])  # (B, F)
        keep &= ~stretch[:, None, :]
    return features * keep


def time_shift(waveform: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each clip of waveform (B, samples) moved by a whole number of samples in [-max_shift, max_shift], the samples
    moved out dropped and the gap zero."""
    if max_shift <= 0:
        return waveform
    B, N = waveform.shape
    shift = torch.randint(-max_shift, max_shift + 1, (B, 1), device=waveform.device)
    source = torch.arange(N, device=waveform.device)[None, :] - shift  # output sample t reads input t - shift
    inside = (source >= 0) & (source < N)
    return waveform.gather(1, source.clamp(0, N - 1)) * inside


def mix_background(waveform: torch.Tensor, probability: float, snr_db: tuple[float, float]) -> torch.Tensor:
    """With the given probability per clip of waveform (B, samples), another clip of the batch played backwards,
    added at a signal-to-noise ratio drawn uniformly from snr_db (dB, relative to the clip's RMS level)."""
    B = waveform.shape[0]
    if probability <= 0 or B < 2:
        return waveform
    device = waveform.device
    other = (torch.arange(B, device=device) + torch.randint(1, B, (1,), device=device)) % B  # never the clip itself
    background = waveform[other].flip(1)
    level = waveform.pow(2).mean(1, keepdim=True).sqrt()
    background_level = background.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)
    low, high = snr_db
    snr = low + (high - low) * torch.rand(B, 1, device=device)
    gain = level / background_level * 10 ** (-snr / 20)
    chosen = (torch.rand(B, 1, device=device) < probability).to(waveform.dtype)
    return waveform + chosen * gain * background
