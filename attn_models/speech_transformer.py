"""Speech Transformer for keyword spotting: waveform -> log-mel frames -> conv subsampling -> encoder.

The log-mel front end is part of the model, so a saved model takes raw 16 kHz samples.
In training mode only, each clip is augmented (attn_models/audio_augment.py): time-shifted and mixed with
background chatter as a waveform, then masked by SpecAugment (frequency and time masking, Park et al., 2019) as
log-mel features. Every augmentation is off at its zero setting.
"""

import torch
import torchaudio
from torch import nn

from attn_models.attention import ClassTokenClassifier
from attn_models.audio_augment import mix_background, spec_augment, time_shift


class LogMelFrontEnd(nn.Module):
    """Log-mel frames every hop_ms over win_ms windows. ``center=True`` (torchaudio's default) reflect-pads the clip
    so frame t is centred on sample t * hop; ``center=False`` frames only real samples, frame t covering samples
    [t * hop, t * hop + window), so zero padding appended to a clip leaves its frames unchanged (what a recognizer
    over padded batches of variable-length clips needs)."""

    def __init__(self, sample_rate: int, n_mels: int, win_ms: float = 25.0, hop_ms: float = 10.0, center: bool = True):
        super().__init__()
        self.hop_length = int(sample_rate * hop_ms / 1000)
        self.n_fft = int(sample_rate * win_ms / 1000)
        self.center = center
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=n_mels, center=center
        )

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of clips of num_samples samples (int tensor); clips shorter than one window give one frame."""
        if self.center:
            return num_samples // self.hop_length + 1
        return (num_samples - self.n_fft).clamp(min=0) // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:  # (B, samples) -> (B, n_mels, frames)
        return torch.log(self.melspec(waveform) + 1e-6)


class SpeechTransformer(ClassTokenClassifier):
    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        n_mels: int = 40,
        embed_dim: int = 64,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        freq_mask: int = 8,
        time_mask: int = 10,
        freq_masks: int = 1,
        time_masks: int = 1,
        time_shift_ms: float = 0.0,
        background_mix: float = 0.0,
        background_snr_db: tuple[float, float] = (5.0, 20.0),
        pool: str = "cls",
    ):
        self.subsampling = 2
        front_end = LogMelFrontEnd(sample_rate, n_mels)
        frames = int(sample_rate * clip_seconds) // front_end.hop_length + 1
        self.num_frames = (frames + self.subsampling - 1) // self.subsampling
        super().__init__(self.num_frames, num_classes, embed_dim, depth, num_heads, mlp_ratio, dropout, pool)
        self.front_end = front_end
        self.freq_masks, self.freq_mask, self.time_masks, self.time_mask = freq_masks, freq_mask, time_masks, time_mask
        self.max_shift = round(sample_rate * time_shift_ms / 1000)
        self.background_mix, self.background_snr_db = background_mix, tuple(background_snr_db)
        self.feature_norm = nn.BatchNorm1d(n_mels)
        self.subsample = nn.Sequential(
            nn.Conv1d(n_mels, embed_dim, kernel_size=3, stride=self.subsampling, padding=1), nn.GELU()
        )

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel features (B, n_mels, frames); in training, of the augmented clips, then masked."""
        if self.training:
            waveform = time_shift(waveform, self.max_shift)
            waveform = mix_background(waveform, self.background_mix, self.background_snr_db)
        features = self.feature_norm(self.front_end(waveform))
        if not self.training:
            return features
        frames = torch.full((features.shape[0],), features.shape[-1], device=features.device)
        return spec_augment(features, frames, self.freq_masks, self.freq_mask, self.time_masks, self.time_mask)

    def forward(self, waveform: torch.Tensor, return_attention: bool = False):  # waveform: (B, samples) float
        frames = self.subsample(self.features(waveform)).transpose(1, 2)  # (B, num_frames, C)
        return self.classify(frames, None, return_attention)
