"""Offline, deterministic spoken-keyword dataset synthesised with eSpeak NG.

The output follows the Google Speech Commands layout so the same loaders work
on both::

    out_dir/
        yes/1a2b3c4d_nohash_0.wav     one folder per word, one clip per speaker
        no/1a2b3c4d_nohash_0.wav
        ...
        validation_list.txt           relative clip paths, sorted, one per line
        testing_list.txt              (every clip in neither list is training)

A "speaker" is a seeded draw of an eSpeak voice (accent + variant), speaking
rate, pitch and pitch range; every speaker says every word once. Splits are by
speaker, so a speaker's clips all land in the same split. Each clip is trimmed,
resampled, placed at a random offset in a fixed-length buffer, mixed with
white + brown noise at a random SNR, peak-normalised and written as 16-bit PCM
mono WAV.

All randomness comes from generators derived from ``seed``, the speaker index
and the word; eSpeak's own random generators are reseeded for every clip; and
each speaker is synthesised in a forked child that starts from the freshly
initialised library. The same arguments therefore always produce
byte-identical files (the directory is versioned by DVC). POSIX only (uses fork).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import espeakng_loader
import numpy as np
import soundfile
from scipy.signal import resample_poly

DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
_VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt")
DEFAULT_VOICES = tuple(f"{accent}+{variant}" for accent in _ACCENTS for variant in _VARIANTS)

PITCH_VARIATION_RANGE = (20, 80)  # espeakRANGE: 0 = monotone, 100 = very lively
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_EE_OK = 0
_ESPEAK_RATE_LIMITS = (80, 450)

_SILENCE_THRESHOLD = 0.01  # fraction of the utterance peak
_TRIM_MARGIN_SECONDS = 0.01
_OUTPUT_PEAK = 0.9

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LIBC = ctypes.CDLL(None)


class _ESpeak:
    """The eSpeak NG library, initialised once per process for synchronous synthesis."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._data_path = Path(espeakng_loader.get_data_path())
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data_path).encode(), _ESPEAK_INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data path {self._data_path}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference alive
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._lock = threading.Lock()

    def _collect(self, wav, num_samples: int, _events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # continue synthesis

    def _set_voice(self, voice: str) -> bool:
        _, _, variant = voice.partition("+")
        if variant and not (self._data_path / "voices" / "!v" / variant).is_file():
            return False  # eSpeak silently ignores unknown variants
        return self._lib.espeak_SetVoiceByName(voice.encode()) == _EE_OK

    def is_known_voice(self, voice: str) -> bool:
        with self._lock:
            return self._set_voice(voice)

    def synthesize(
        self, text: str, *, voice: str, rate: int, pitch: int, pitch_range: int, random_seed: int
    ) -> np.ndarray:
        """Return int16 samples at ``self.sample_rate``."""
        with self._lock:
            if not self._set_voice(voice):
                raise ValueError(f"voices: unknown eSpeak voice {voice!r}")
            self._lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
            self._lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
            self._lib.espeak_SetParameter(_ESPEAK_RANGE, pitch_range, 0)
            self._lib.espeak_ng_SetRandSeed(random_seed)
            _LIBC.srand(random_seed)  # breath noise uses the C library's rand()
            self._chunks = []
            encoded = text.encode() + b"\0"
            status = self._lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed for {text!r} with status {status}")
            return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


_espeak: _ESpeak | None = None
_espeak_lock = threading.Lock()


def _get_espeak() -> _ESpeak:
    global _espeak
    with _espeak_lock:
        if _espeak is None:
            _espeak = _ESpeak()
        return _espeak


@dataclass(frozen=True)
class _Speaker:
    index: int
    speaker_id: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _draw_speaker(
    index: int, seed: int, voices: Sequence[str], rate_range: tuple[int, int], pitch_range: tuple[int, int]
) -> _Speaker:
    rng = np.random.default_rng([seed, index])
    return _Speaker(
        index=index,
        speaker_id=hashlib.sha256(f"speaker:{seed}:{index}".encode()).hexdigest()[:8],
        voice=voices[rng.integers(len(voices))],
        rate=int(rng.integers(rate_range[0], rate_range[1] + 1)),
        pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
        pitch_range=int(rng.integers(PITCH_VARIATION_RANGE[0], PITCH_VARIATION_RANGE[1] + 1)),
    )


def _trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    loudness = np.abs(audio)
    loud = np.flatnonzero(loudness > _SILENCE_THRESHOLD * loudness.max(initial=0.0))
    if loud.size == 0:
        return audio[:0]
    margin = int(_TRIM_MARGIN_SECONDS * sample_rate)
    return audio[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def _background_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Unit-power mix of white and brown (integrated, high-passed) noise."""
    white = rng.standard_normal(num_samples)
    brown = np.cumsum(rng.standard_normal(num_samples))
    brown -= np.convolve(brown, np.ones(256) / 256, mode="same")  # remove slow drift
    mix = rng.uniform(0.0, 1.0)
    noise = mix * white / white.std() + (1.0 - mix) * brown / max(brown.std(), 1e-12)
    return noise / max(noise.std(), 1e-12)


def _render_clip(
    speech: np.ndarray, rng: np.random.Generator, *, clip_samples: int, snr_db_range: tuple[float, float]
) -> np.ndarray:
    clip = np.zeros(clip_samples)
    if speech.size > clip_samples:
        start = int(rng.integers(speech.size - clip_samples + 1))
        speech = speech[start : start + clip_samples]
    offset = int(rng.integers(clip_samples - speech.size + 1))
    clip[offset : offset + speech.size] = speech

    speech_power = float(np.mean(speech**2)) if speech.size else 0.0
    snr_db = rng.uniform(*snr_db_range)
    noise_power = speech_power / 10 ** (snr_db / 10) if speech_power > 0 else 1e-6
    clip += math.sqrt(noise_power) * _background_noise(rng, clip_samples)

    peak = np.abs(clip).max()
    return clip * (_OUTPUT_PEAK / peak) if peak > 0 else clip


def _clip_path(word: str, speaker: _Speaker) -> str:
    return f"{word}/{speaker.speaker_id}_nohash_0.wav"


def _write_speaker_clips(out_dir: Path, words: list[str], speaker: _Speaker, **clip_options) -> None:
    for word in words:
        _write_clip(out_dir / _clip_path(word, speaker), word, speaker, **clip_options)


def _write_clip(
    path: Path,
    word: str,
    speaker: _Speaker,
    *,
    seed: int,
    sample_rate: int,
    clip_samples: int,
    snr_db_range: tuple[float, float],
) -> None:
    espeak = _get_espeak()
    word_key = _stable_int("word", word)
    raw = espeak.synthesize(
        word,
        voice=speaker.voice,
        rate=speaker.rate,
        pitch=speaker.pitch,
        pitch_range=speaker.pitch_range,
        random_seed=_stable_int(seed, speaker.index, word_key) % 2**31,
    )
    speech = _trim_silence(raw.astype(np.float64) / 32768.0, espeak.sample_rate)
    common = math.gcd(sample_rate, espeak.sample_rate)
    speech = resample_poly(speech, sample_rate // common, espeak.sample_rate // common)
    clip = _render_clip(
        speech,
        np.random.default_rng([seed, speaker.index, word_key]),
        clip_samples=clip_samples,
        snr_db_range=snr_db_range,
    )
    pcm = np.round(clip * 32767).astype(np.int16)
    soundfile.write(path, pcm, sample_rate, subtype="PCM_16", format="WAV")


def _run_in_fresh_library_state(jobs: list[Callable[[], None]]) -> None:
    """Run each job in its own forked child, one per CPU at a time.

    eSpeak keeps hidden state between utterances (pitch-flutter phase, gain
    control, filter memories), so an utterance depends on everything spoken
    before it. The parent initialises the library but never speaks; every child
    starts from that same pristine state, so a speaker's clips depend only on
    that speaker and the word list, not on other speakers or earlier calls.
    One fork per speaker rather than per clip keeps this cheap even when the
    parent process is large (e.g. has torch loaded).
    """
    _get_espeak()  # initialise once in the parent so children inherit it
    max_running = max(len(os.sched_getaffinity(0)), 1)
    running: deque[int] = deque()
    failures = 0
    for job in jobs:
        if len(running) >= max_running:
            failures += not _child_succeeded(running.popleft())
        pid = os.fork()
        if pid == 0:
            _run_child(job)
        running.append(pid)
    while running:
        failures += not _child_succeeded(running.popleft())
    if failures:
        raise RuntimeError(f"synthesis failed for {failures} speaker(s); see stderr")


def _run_child(job: Callable[[], None]) -> NoReturn:
    try:
        job()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _child_succeeded(pid: int) -> bool:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _split_speakers(
    speaker_ids: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    shuffled = list(np.random.default_rng([seed, _stable_int("split")]).permutation(sorted(speaker_ids)))
    num_val = round(len(shuffled) * val_fraction)
    num_test = round(len(shuffled) * test_fraction)
    return set(shuffled[:num_val]), set(shuffled[num_val : num_val + num_test])


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value!r}")


def _validate(
    out_dir: Path,
    words: Sequence[str],
    speakers_per_word: int,
    sample_rate: int,
    clip_seconds: float,
    voices: Sequence[str],
    rate_range,
    pitch_range,
    noise_snr_db_range,
    val_fraction: float,
    test_fraction: float,
) -> None:
    if isinstance(words, str) or not words:
        raise ValueError(f"words must be a non-empty list of strings, got {words!r}")
    if len(set(words)) != len(words):
        raise ValueError(f"words must be unique, got {list(words)!r}")
    for word in words:
        if not word or word.startswith(("_", ".")) or "/" in word or "\\" in word:
            raise ValueError(f"words: {word!r} cannot be used as a folder name")
    if speakers_per_word < 1:
        raise ValueError(f"speakers_per_word must be >= 1, got {speakers_per_word}")
    if sample_rate < 1000:
        raise ValueError(f"sample_rate must be >= 1000 Hz, got {sample_rate}")
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    _check_range("rate_range", rate_range, *_ESPEAK_RATE_LIMITS)
    _check_range("pitch_range", pitch_range, 0, 100)
    _check_range("noise_snr_db_range", noise_snr_db_range, -math.inf, math.inf)
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if isinstance(voices, str) or not voices:
        raise ValueError(f"voices must be a non-empty list of strings, got {voices!r}")
    espeak = _get_espeak()
    for voice in voices:
        if not espeak.is_known_voice(voice):
            raise ValueError(f"voices: unknown eSpeak voice {voice!r}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"out_dir must be empty or not exist yet: {out_dir}")


def generate_speech_dataset(
    out_dir: Path,
    *,
    words: Sequence[str] = DEFAULT_WORDS,
    speakers_per_word: int = 60,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    voices: Sequence[str] = DEFAULT_VOICES,
    rate_range: tuple[int, int] = (120, 220),
    pitch_range: tuple[int, int] = (25, 75),
    noise_snr_db_range: tuple[float, float] = (10.0, 30.0),
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Write the dataset to ``out_dir`` (see the module docstring) and return a summary.

    ``rate_range`` is in words per minute; ``pitch_range`` is eSpeak's 0-100 pitch
    scale; ``voices`` are eSpeak voice names, optionally with a ``+variant``.
    """
    out_dir = Path(out_dir)
    rate_range, pitch_range = tuple(rate_range), tuple(pitch_range)
    noise_snr_db_range = tuple(noise_snr_db_range)
    _validate(
        out_dir,
        words,
        speakers_per_word,
        sample_rate,
        clip_seconds,
        voices,
        rate_range,
        pitch_range,
        noise_snr_db_range,
        val_fraction,
        test_fraction,
    )

    speakers = [_draw_speaker(index, seed, voices, rate_range, pitch_range) for index in range(speakers_per_word)]
    if len({speaker.speaker_id for speaker in speakers}) != len(speakers):
        raise ValueError(f"seed: speaker ids collide for seed {seed}; pick another seed")

    for word in words:
        (out_dir / word).mkdir(parents=True)
    _run_in_fresh_library_state(
        [
            functools.partial(
                _write_speaker_clips,
                out_dir,
                sorted(words),
                speaker,
                seed=seed,
                sample_rate=sample_rate,
                clip_samples=round(clip_seconds * sample_rate),
                snr_db_range=noise_snr_db_range,
            )
            for speaker in speakers
        ]
    )

    clip_paths = {speaker.speaker_id: [_clip_path(word, speaker) for word in words] for speaker in speakers}
    validation_ids, testing_ids = _split_speakers(
        list(clip_paths), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    for list_name, ids in ((VALIDATION_LIST, validation_ids), (TESTING_LIST, testing_ids)):
        lines = sorted(path for speaker_id in ids for path in clip_paths[speaker_id])
        (out_dir / list_name).write_text("".join(f"{line}\n" for line in lines))

    clips_per_speaker = len(words)
    num_validation = len(validation_ids) * clips_per_speaker
    num_test = len(testing_ids) * clips_per_speaker
    num_clips = len(speakers) * clips_per_speaker
    return {
        "num_clips": num_clips,
        "num_speakers": len(speakers),
        "splits": {"train": num_clips - num_validation - num_test, "validation": num_validation, "test": num_test},
    }
