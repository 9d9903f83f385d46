"""eSpeak NG speech synthesis for the built-in speech datasets (keyword spotting, speech recognition), offline
through ctypes (``espeakng_loader`` ships the library and its voices), and the pieces both generators share:
seeded speakers, silence trimming, background noise, and synthesis in forked children.

Determinism: every random draw comes from generators derived from the dataset seed, the speaker and the utterance;
eSpeak's own random generators are reseeded for every utterance; and each speaker is synthesised in a forked child
that starts from the freshly initialised library (``run_in_fresh_library_state``), because eSpeak keeps hidden state
between utterances. The same arguments therefore give byte-identical audio. POSIX only (fork).
"""

from __future__ import annotations

import ctypes
import hashlib
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

_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
_VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt")
DEFAULT_VOICES = tuple(f"{accent}+{variant}" for accent in _ACCENTS for variant in _VARIANTS)

PITCH_VARIATION_RANGE = (20, 80)  # espeakRANGE: 0 = monotone, 100 = very lively
RATE_LIMITS = (80, 450)  # words per minute eSpeak accepts

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_EE_OK = 0

_SILENCE_THRESHOLD = 0.01  # fraction of the utterance peak
_TRIM_MARGIN_SECONDS = 0.01
OUTPUT_PEAK = 0.9

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LIBC = ctypes.CDLL(None)


class ESpeak:
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


_instance: ESpeak | None = None
_lock = threading.Lock()


def get_espeak() -> ESpeak:
    global _instance
    with _lock:
        if _instance is None:
            _instance = ESpeak()
        return _instance


@dataclass(frozen=True)
class Speaker:
    index: int
    speaker_id: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int


def stable_int(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw_speaker(
    index: int, seed: int, voices: Sequence[str], rate_range: tuple[int, int], pitch_range: tuple[int, int]
) -> Speaker:
    rng = np.random.default_rng([seed, index])
    return Speaker(
        index=index,
        speaker_id=hashlib.sha256(f"speaker:{seed}:{index}".encode()).hexdigest()[:8],
        voice=voices[rng.integers(len(voices))],
        rate=int(rng.integers(rate_range[0], rate_range[1] + 1)),
        pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
        pitch_range=int(rng.integers(PITCH_VARIATION_RANGE[0], PITCH_VARIATION_RANGE[1] + 1)),
    )


def trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    loudness = np.abs(audio)
    loud = np.flatnonzero(loudness > _SILENCE_THRESHOLD * loudness.max(initial=0.0))
    if loud.size == 0:
        return audio[:0]
    margin = int(_TRIM_MARGIN_SECONDS * sample_rate)
    return audio[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def background_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Unit-power mix of white and brown (integrated, high-passed) noise."""
    white = rng.standard_normal(num_samples)
    brown = np.cumsum(rng.standard_normal(num_samples))
    brown -= np.convolve(brown, np.ones(256) / 256, mode="same")  # remove slow drift
    mix = rng.uniform(0.0, 1.0)
    noise = mix * white / white.std() + (1.0 - mix) * brown / max(brown.std(), 1e-12)
    return noise / max(noise.std(), 1e-12)


def mix_noise(
    clip: np.ndarray, speech: np.ndarray, rng: np.random.Generator, snr_db_range: tuple[float, float]
) -> np.ndarray:
    """clip plus background noise (``background_noise``) at an SNR drawn from snr_db_range, relative to the power
    of speech; then peak-normalised to OUTPUT_PEAK."""
    speech_power = float(np.mean(speech**2)) if speech.size else 0.0
    snr_db = rng.uniform(*snr_db_range)
    noise_power = speech_power / 10 ** (snr_db / 10) if speech_power > 0 else 1e-6
    clip = clip + np.sqrt(noise_power) * background_noise(rng, clip.size)
    peak = np.abs(clip).max()
    return clip * (OUTPUT_PEAK / peak) if peak > 0 else clip


def synthesize(text: str, speaker: Speaker, sample_rate: int, random_seed: int) -> np.ndarray:
    """The speaker saying text: float samples at sample_rate, silence trimmed (empty if eSpeak said nothing)."""
    from scipy.signal import resample_poly  # here: scipy.signal takes a second to import

    espeak = get_espeak()
    raw = espeak.synthesize(
        text,
        voice=speaker.voice,
        rate=speaker.rate,
        pitch=speaker.pitch,
        pitch_range=speaker.pitch_range,
        random_seed=random_seed,
    )
    speech = trim_silence(raw.astype(np.float64) / 32768.0, espeak.sample_rate)
    common = np.gcd(sample_rate, espeak.sample_rate)
    return resample_poly(speech, sample_rate // common, espeak.sample_rate // common)


def run_in_fresh_library_state(jobs: list[Callable[[], None]], description: str = "speech synthesis") -> None:
    """Run each job in its own forked child, one per CPU at a time.

    eSpeak keeps hidden state between utterances (pitch-flutter phase, gain
    control, filter memories), so an utterance depends on everything spoken
    before it. The parent initialises the library but never speaks; every child
    starts from that same pristine state, so a speaker's clips depend only on
    that speaker and the word list, not on other speakers or earlier calls.
    One fork per speaker rather than per clip keeps this cheap even when the
    parent process is large (e.g. has torch loaded).
    """
    import scipy.signal  # noqa: F401  (synthesize resamples with it: imported once here, not in every child)

    from tasks.progress import progress

    get_espeak()  # initialise once in the parent so children inherit it
    max_running = max(len(os.sched_getaffinity(0)), 1)
    running: deque[int] = deque()
    failures = 0
    with progress(len(jobs), description, "speakers") as bar:  # the parent counts the children that finished
        for job in jobs:
            if len(running) >= max_running:
                failures += not _child_succeeded(running.popleft())
                bar.update()
            pid = os.fork()
            if pid == 0:
                _run_child(job)
            running.append(pid)
        while running:
            failures += not _child_succeeded(running.popleft())
            bar.update()
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


def split_speakers(
    speaker_ids: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    shuffled = list(np.random.default_rng([seed, stable_int("split")]).permutation(sorted(speaker_ids)))
    num_val = round(len(shuffled) * val_fraction)
    num_test = round(len(shuffled) * test_fraction)
    return set(shuffled[:num_val]), set(shuffled[num_val : num_val + num_test])


def check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value!r}")
