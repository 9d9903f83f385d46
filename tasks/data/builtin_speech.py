"""Offline, deterministic spoken-keyword dataset synthesised with eSpeak NG.

The output follows the Google Speech Commands layout so the same loaders work
on both::

    out_dir/
        yes/1a2b3c4d_nohash_0.wav     one folder per word, one clip per speaker
        no/1a2b3c4d_nohash_0.wav
        ...
        validation_list.txt           relative clip paths, sorted, one per line
        testing_list.txt              (every clip in neither list is training)
        word_spans.tsv                path, start, end: the samples where the word is in each clip

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

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

from tasks.data.espeak import (
    DEFAULT_VOICES,
    RATE_LIMITS,
    Speaker,
    check_range,
    draw_speaker,
    get_espeak,
    mix_noise,
    run_in_fresh_library_state,
    split_speakers,
    stable_int,
    synthesize,
)

DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
WORD_SPANS = "word_spans.tsv"  # where each clip's word is: known by construction, for scoring attention maps
SPAN_PARTS = ".word_spans"  # the children's parts, merged into WORD_SPANS and removed


def _render_clip(
    speech: np.ndarray, rng: np.random.Generator, *, clip_samples: int, snr_db_range: tuple[float, float]
) -> tuple[np.ndarray, tuple[int, int]]:
    """The word at a random offset in a clip of clip_samples (cut at a random point if longer), with noise; and
    where the word is (first sample, end sample)."""
    clip = np.zeros(clip_samples)
    if speech.size > clip_samples:
        start = int(rng.integers(speech.size - clip_samples + 1))
        speech = speech[start : start + clip_samples]
    offset = int(rng.integers(clip_samples - speech.size + 1))
    clip[offset : offset + speech.size] = speech
    return mix_noise(clip, speech, rng, snr_db_range), (offset, offset + speech.size)


def _clip_path(word: str, speaker: Speaker) -> str:
    return f"{word}/{speaker.speaker_id}_nohash_0.wav"


def _write_speaker_clips(out_dir: Path, words: list[str], speaker: Speaker, **clip_options) -> None:
    """In a forked child: the speaker's clips, and where each word is in them (merged by the parent)."""
    lines = []
    for word in words:
        start, end = _write_clip(out_dir / _clip_path(word, speaker), word, speaker, **clip_options)
        lines.append(f"{_clip_path(word, speaker)}\t{start}\t{end}\n")
    (out_dir / SPAN_PARTS / f"{speaker.speaker_id}.tsv").write_text("".join(lines))


def _merge_word_spans(out_dir: Path) -> None:
    """word_spans.tsv: path, start, end (samples) of every clip, sorted, from the children's parts."""
    parts = sorted((out_dir / SPAN_PARTS).glob("*.tsv"))
    lines = sorted(line for part in parts for line in part.read_text().splitlines())
    (out_dir / WORD_SPANS).write_text("path\tstart\tend\n" + "".join(f"{line}\n" for line in lines))
    for part in parts:
        part.unlink()
    (out_dir / SPAN_PARTS).rmdir()


def read_word_spans(data_dir: Path) -> dict[str, tuple[int, int]]:
    """{clip path: (first sample, end sample) of the word}, from a built-in dataset's word_spans.tsv; {} for data
    without one (imported clips)."""
    path = Path(data_dir) / WORD_SPANS
    if not path.exists():
        return {}
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {clip: (int(start), int(end)) for clip, start, end in rows}


def _write_clip(
    path: Path,
    word: str,
    speaker: Speaker,
    *,
    seed: int,
    sample_rate: int,
    clip_samples: int,
    snr_db_range: tuple[float, float],
) -> tuple[int, int]:
    word_key = stable_int("word", word)
    speech = synthesize(word, speaker, sample_rate, random_seed=stable_int(seed, speaker.index, word_key) % 2**31)
    rng = np.random.default_rng([seed, speaker.index, word_key])
    clip, span = _render_clip(speech, rng, clip_samples=clip_samples, snr_db_range=snr_db_range)
    soundfile.write(path, np.round(clip * 32767).astype(np.int16), sample_rate, subtype="PCM_16", format="WAV")
    return span


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
    check_range("rate_range", rate_range, *RATE_LIMITS)
    check_range("pitch_range", pitch_range, 0, 100)
    check_range("noise_snr_db_range", noise_snr_db_range, -math.inf, math.inf)
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if isinstance(voices, str) or not voices:
        raise ValueError(f"voices must be a non-empty list of strings, got {voices!r}")
    espeak = get_espeak()
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

    speakers = [draw_speaker(index, seed, voices, rate_range, pitch_range) for index in range(speakers_per_word)]
    if len({speaker.speaker_id for speaker in speakers}) != len(speakers):
        raise ValueError(f"seed: speaker ids collide for seed {seed}; pick another seed")

    for word in words:
        (out_dir / word).mkdir(parents=True)
    (out_dir / SPAN_PARTS).mkdir()
    run_in_fresh_library_state(
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

    _merge_word_spans(out_dir)
    clip_paths = {speaker.speaker_id: [_clip_path(word, speaker) for word in words] for speaker in speakers}
    validation_ids, testing_ids = split_speakers(
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
