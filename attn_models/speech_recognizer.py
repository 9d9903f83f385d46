"""Attention encoder-decoder speech recognizer (Speech-Transformer, Dong et al., 2018), with an optional CTC head.

    waveform (B, samples) + lengths (B,)
      -> log-mel frames every 10 ms (LogMelFrontEnd, center=False: padding appended to a clip changes none of its
         frames)                                                                                    (B, n_mels, F)
      -> per-utterance mean/variance normalisation over the clip's own frames (no batch statistics, so the padding
         of a batch, and what else is in it, never changes an utterance's features)
      -> SpecAugment (Park et al., 2019) in training only: frequency bands and stretches of time set to 0, drawn per
         utterance and only within its real frames
      -> conv subsampling: ``subsampling_layers`` stride-2 1-D convolutions + GELU, each halving the frame rate
         (2 layers: 40 ms a frame, 4 layers: 160 ms). Fewer frames make the encoder cheaper (it is most of the
         cost) and the decoder's search for the next word shorter; the limit is CTC, which needs at least one frame
         per output token (and a blank between repeats): 4 layers suit whole-word units of connected digits,
         characters need 2                                                                          (B, S, C)
      -> + sinusoidal positions -> the shared ``Encoder`` with the padded frames masked -> memory   (B, S, C)
         (optionally, memory_positions, + sinusoidal positions again: it lets the decoder's queries say "just
         after the frames I attended to last"; on the built-in digits it helped a decoder trained without
         guided_attention_loss and hurt one trained with it, so it is off by default)
      -> the decoder, greedy and beam-search decoding, cross-attention alignment: ``EncoderDecoder``

Between the stages, frames past a clip's length are zeroed, so a clip's memory is the same alone or in a padded
batch. The model's ``source`` is the tuple ``(waveform (B, samples) float, lengths (B,) int64)`` of a zero-padded
batch (a bare waveform tensor means every row is all real audio).

Hybrid CTC/attention (Watanabe et al., 2017): with ``ctc=True`` a linear CTC head reads the encoder output. A
CTC loss weighted into the training loss makes the encoder line its frames up monotonically with the output tokens
from the first steps on, which the attention decoder otherwise has to discover through its cross-attention; with a
small training budget that decides whether the cross-attention finds its alignment at all. ``forward`` stays
logits-only (the EncoderDecoder contract); ``forward_with_ctc`` gives the decoder logits, the CTC log-probabilities
and, when asked, the cross-attention from one encoder pass (what a training loop wants), ``ctc_log_probs`` the CTC
output alone. The CTC blank is ``pad_id`` (padding is never a target). ``guided_attention_loss`` is the other
training aid: a prior that pulls the cross-attention towards the diagonal while it is still a bag of words.

Shapes: B batch, F log-mel frames, S encoder frames (memory), T target tokens, C embedding, V vocabulary.
"""

from typing import NamedTuple

import torch
from torch import nn

from attn_models.attention import Encoder
from attn_models.audio_augment import spec_augment
from attn_models.encoder_decoder import EncoderDecoder, sinusoidal_positions
from attn_models.speech_transformer import LogMelFrontEnd


class HybridOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, V), the decoder's (teacher forcing)
    ctc_log_probs: torch.Tensor  # (S, B, V), log-softmax of the CTC head, blank = pad_id
    ctc_lengths: torch.Tensor  # (B,) memory frames of each clip
    cross_attention: torch.Tensor | None  # (B, T, S) averaged over heads and layers, when asked


def guided_attention_loss(
    cross_attention: torch.Tensor,
    target_in: torch.Tensor,
    memory_lengths: torch.Tensor,
    pad_id: int = 0,
    sigma: float = 0.2,
) -> torch.Tensor:
    """Guided attention (Tachibana et al., 2018): the attention mass far from the diagonal, scaled by each clip's
    output and memory lengths, penalised by 1 - exp(-(s/S - t/T)^2 / (2 sigma^2)); mean over target positions.

    Speech and its transcript run in the same order, so the alignment lies near the diagonal. Left to itself the
    decoder finds this out slowly (for the first epochs its cross-attention is a bag of words: the right digits in
    the wrong order); a loose prior towards the diagonal gets it there in far fewer steps, and does not fight the
    real alignment, which the CE loss then sharpens. cross_attention: (B, T, S); target_in: (B, T) decoder input
    ids ([BOS] y1 .. y_{T-1}, padded with pad_id); memory_lengths: (B,).
    """
    valid = (target_in != pad_id).to(cross_attention.dtype)  # (B, T)
    t = (torch.arange(target_in.shape[1], device=target_in.device)[None, :] + 0.5) / valid.sum(1, keepdim=True)
    s = (torch.arange(cross_attention.shape[2], device=target_in.device)[None, :] + 0.5) / memory_lengths[:, None]
    penalty = 1 - torch.exp(-((s[:, None, :] - t[:, :, None]) ** 2) / (2 * sigma**2))  # (B, T, S)
    return (cross_attention * penalty * valid[:, :, None]).sum() / valid.sum()


def _frame_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, num_frames) bool, True at the first lengths[b] frames of row b."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


class SpeechRecognizer(EncoderDecoder):
    """See the module docstring. SpecAugment's time masks are short by default (one of at most 10 frames = 100 ms):
    in connected digits every word counts and none can be guessed from its neighbours, so masking a whole word
    (a 250 ms mask can) teaches the model to make one up; with a few epochs of training no augmentation at all did
    as well as the usual LibriSpeech-sized masks did badly."""

    def __init__(
        self,
        vocab_size: int,
        sample_rate: int = 16000,
        n_mels: int = 80,
        embed_dim: int = 96,
        encoder_depth: int = 4,
        decoder_depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        max_len: int = 128,
        subsampling_layers: int = 2,
        freq_masks: int = 1,
        freq_mask: int = 15,
        time_masks: int = 1,
        time_mask: int = 10,
        time_mask_fraction: float = 0.2,
        ctc: bool = True,
        memory_positions: bool = False,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
    ):
        super().__init__(
            vocab_size, embed_dim, decoder_depth, num_heads, mlp_ratio, dropout, max_len, pad_id, bos_id, eos_id
        )
        self.front_end = LogMelFrontEnd(sample_rate, n_mels, center=False)
        self.freq_masks, self.freq_mask = freq_masks, freq_mask
        self.time_masks, self.time_mask, self.time_mask_fraction = time_masks, time_mask, time_mask_fraction
        self.subsample = nn.ModuleList(
            nn.Conv1d(n_mels if layer == 0 else embed_dim, embed_dim, kernel_size=3, stride=2, padding=1)
            for layer in range(subsampling_layers)
        )
        self.activation = nn.GELU()
        self.encoder = Encoder(embed_dim, encoder_depth, num_heads, mlp_ratio, dropout)
        self.ctc_head = nn.Linear(embed_dim, vocab_size) if ctc else None
        self.memory_positions = memory_positions

    # ---- lengths ------------------------------------------------------------------------------------------
    @staticmethod
    def _unpack(source) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(source, torch.Tensor):  # a bare waveform: every sample is real
            return source, torch.full((source.shape[0],), source.shape[1], dtype=torch.long, device=source.device)
        waveform, lengths = source
        return waveform, lengths.to(waveform.device)

    @staticmethod
    def _subsampled(frames: torch.Tensor) -> torch.Tensor:  # a kernel 3, stride 2, padding 1 convolution's output
        return (frames - 1) // 2 + 1

    def memory_lengths(self, source) -> torch.Tensor:
        """Encoder frames (B,) of each clip, from its sample count alone."""
        frames = self.front_end.num_frames(self._unpack(source)[1])
        for _ in self.subsample:
            frames = self._subsampled(frames)
        return frames

    def memory_padding(self, source) -> torch.Tensor:
        waveform, lengths = self._unpack(source)
        memory_lengths = self.memory_lengths((waveform, lengths))
        num_frames = self.front_end.num_frames(torch.tensor(max(waveform.shape[1], self.front_end.n_fft)))
        for _ in self.subsample:
            num_frames = self._subsampled(num_frames)
        return ~_frame_mask(memory_lengths, int(num_frames))

    # ---- the encoder --------------------------------------------------------------------------------------
    def features(self, source) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel features (B, n_mels, F), 0 past each clip's frames and SpecAugment-ed in training, and
        the frame counts (B,)."""
        waveform, lengths = self._unpack(source)
        if waveform.shape[1] < self.front_end.n_fft:  # at least one window
            waveform = nn.functional.pad(waveform, (0, self.front_end.n_fft - waveform.shape[1]))
        features = self.front_end(waveform)  # (B, n_mels, F)
        frames = self.front_end.num_frames(lengths)  # (B,)
        valid = _frame_mask(frames, features.shape[-1])[:, None, :].to(features.dtype)  # (B, 1, F)
        count = frames[:, None, None].to(features.dtype)
        mean = (features * valid).sum(-1, keepdim=True) / count  # (B, n_mels, 1)
        variance = ((features - mean) ** 2 * valid).sum(-1, keepdim=True) / count
        features = (features - mean) / (variance + 1e-5).sqrt() * valid
        if self.training:
            features = self.spec_augment(features, frames)
        return features, frames

    def spec_augment(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """SpecAugment drawn per utterance within its real frames, time masks also at most time_mask_fraction of
        the clip (attn_models/audio_augment.py)."""
        return spec_augment(
            features, frames, self.freq_masks, self.freq_mask, self.time_masks, self.time_mask, self.time_mask_fraction
        )

    def encode_with_lengths(self, source) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory (B, S, C) and its lengths (B,) in frames."""
        x, lengths = self.features(source)  # (B, n_mels, F), (B,)
        for conv in self.subsample:
            x = self.activation(conv(x))  # (B, C, F / 2 ** layer)
            lengths = self._subsampled(lengths)
            x = x * _frame_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)  # the next conv sees zeros, as alone
        x = x.transpose(1, 2)  # (B, S, C)
        x = self.drop(x + sinusoidal_positions(x.shape[1], x.shape[2]).to(x.device))
        memory, _ = self.encoder(x, ~_frame_mask(lengths, x.shape[1]))
        if self.memory_positions:  # see the module docstring
            memory = memory + sinusoidal_positions(memory.shape[1], memory.shape[2]).to(memory.device)
        return memory, lengths

    def encode(self, source) -> tuple[torch.Tensor, torch.Tensor]:
        memory, lengths = self.encode_with_lengths(source)
        return memory, ~_frame_mask(lengths, memory.shape[1])

    # ---- CTC ----------------------------------------------------------------------------------------------
    def _ctc(self, memory: torch.Tensor) -> torch.Tensor:
        if self.ctc_head is None:
            raise ValueError("this SpeechRecognizer has no CTC head (built with ctc=False)")
        return self.ctc_head(memory).float().log_softmax(dim=-1).transpose(0, 1)  # (S, B, V), as F.ctc_loss takes

    def ctc_log_probs(self, source) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities (S, B, V) over the vocabulary with blank = pad_id, and their lengths (B,)."""
        memory, lengths = self.encode_with_lengths(source)
        return self._ctc(memory), lengths

    def forward_with_ctc(self, source, target_in: torch.Tensor, need_attention: bool = False) -> HybridOutput:
        """One encoder pass for hybrid training: the decoder logits (B, T, V) as ``forward``, the CTC log-probabilities
        (S, B, V) and their lengths (B,) as ``ctc_log_probs``, and with need_attention the cross-attention (B, T, S)
        averaged over heads and layers, with gradients (for ``guided_attention_loss``). Training loss:
        (1 - w) * CE(logits) + w * CTC [+ g * guided_attention_loss]."""
        memory, lengths = self.encode_with_lengths(source)
        states, cross = self.decode(
            target_in, memory, ~_frame_mask(lengths, memory.shape[1]), need_weights=need_attention
        )
        attention = torch.stack(cross).mean(dim=(0, 2)) if need_attention else None
        return HybridOutput(self.logits(states), self._ctc(memory), lengths, attention)

    @torch.no_grad()
    def ctc_greedy_decode(self, source) -> list[list[int]]:
        """Best-path CTC output of each clip: the most likely token per frame, repeats merged, blanks dropped."""
        log_probs, lengths = self.ctc_log_probs(source)
        best = log_probs.argmax(dim=-1).T  # (B, S)
        outputs = []
        for row, length in zip(best.tolist(), lengths.tolist()):
            merged = [token for t, token in enumerate(row[:length]) if t == 0 or token != row[t - 1]]
            outputs.append([token for token in merged if token != self.pad_id])
        return outputs
