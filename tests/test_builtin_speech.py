import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tasks.data.builtin_speech import generate_speech_dataset

SMALL = dict(words=["yes", "no", "stop"], speakers_per_word=7, val_fraction=0.3, test_fraction=0.3)


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _speaker(relative_path: str) -> str:
    return relative_path.split("/")[1].split("_nohash_")[0]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("speech") / "data"
    summary = generate_speech_dataset(out_dir, **SMALL)
    return out_dir, summary


def test_layout_and_summary(small_dataset):
    out_dir, summary = small_dataset
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "no",
        "stop",
        "testing_list.txt",
        "validation_list.txt",
        "word_spans.tsv",
        "yes",
    ]
    clips = sorted(f"{p.parent.name}/{p.name}" for p in out_dir.glob("*/*.wav"))
    assert len(clips) == summary["num_clips"] == 3 * 7
    assert summary["num_speakers"] == 7
    assert sum(summary["splits"].values()) == summary["num_clips"]
    for word in SMALL["words"]:
        speakers = {_speaker(c) for c in clips if c.startswith(f"{word}/")}
        assert len(speakers) == 7  # every speaker says every word once
    for clip in clips:
        assert len(_speaker(clip)) == 8 and int(_speaker(clip), 16) >= 0
        assert clip.endswith("_nohash_0.wav")


def test_split_lists_are_sorted_and_speaker_disjoint(small_dataset):
    out_dir, summary = small_dataset
    validation = (out_dir / "validation_list.txt").read_text().splitlines()
    testing = (out_dir / "testing_list.txt").read_text().splitlines()
    assert validation == sorted(validation) and testing == sorted(testing)
    assert all((out_dir / line).is_file() for line in validation + testing)
    assert len(validation) == summary["splits"]["validation"] > 0
    assert len(testing) == summary["splits"]["test"] > 0
    all_clips = {f"{p.parent.name}/{p.name}" for p in out_dir.glob("*/*.wav")}
    train = all_clips - set(validation) - set(testing)
    assert len(train) == summary["splits"]["train"] > 0
    speaker_sets = [{_speaker(c) for c in split} for split in (train, validation, testing)]
    assert not (
        speaker_sets[0] & speaker_sets[1] or speaker_sets[0] & speaker_sets[2] or speaker_sets[1] & speaker_sets[2]
    )


def test_wavs_are_16k_mono_int16_one_second_and_not_silent(small_dataset):
    out_dir, _ = small_dataset
    for path in out_dir.glob("*/*.wav"):
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
        audio, _ = soundfile.read(path, dtype="float32")
        assert 0.5 < np.abs(audio).max() <= 1.0
        frame_energy = (audio.reshape(-1, 160) ** 2).mean(axis=1)
        assert frame_energy.max() > 10 * np.percentile(frame_energy, 10)  # a word stands out of the noise


def test_same_arguments_give_byte_identical_files(small_dataset, tmp_path):
    out_dir, _ = small_dataset
    generate_speech_dataset(tmp_path / "again", **SMALL)
    assert _file_hashes(tmp_path / "again") == _file_hashes(out_dir)


def test_different_seed_gives_different_audio(small_dataset, tmp_path):
    out_dir, _ = small_dataset
    generate_speech_dataset(tmp_path / "other", **SMALL, seed=1)
    original = _file_hashes(out_dir)
    other = _file_hashes(tmp_path / "other")
    assert len(other) == len(original)
    original_audio = {digest for name, digest in original.items() if name.endswith(".wav")}
    other_audio = {digest for name, digest in other.items() if name.endswith(".wav")}
    assert original_audio.isdisjoint(other_audio)
    assert {_speaker(name) for name in original if name.endswith(".wav")}.isdisjoint(
        _speaker(name) for name in other if name.endswith(".wav")
    )


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("words", []),
        ("val_fraction", 1.5),
        ("test_fraction", -0.1),
        ("voices", ["en+no-such-variant"]),
        ("voices", ["xx-no-such-voice"]),
        ("speakers_per_word", 0),
        ("rate_range", (300, 100)),
    ],
)
def test_bad_argument_raises_value_error_naming_it(tmp_path, argument, value):
    with pytest.raises(ValueError, match=argument):
        generate_speech_dataset(tmp_path / "bad", **{argument: value})
    assert not (tmp_path / "bad").exists()


def test_refuses_non_empty_out_dir(tmp_path):
    (tmp_path / "stale.txt").write_text("old")
    with pytest.raises(ValueError, match="out_dir"):
        generate_speech_dataset(tmp_path, words=["yes"], speakers_per_word=1)


def test_word_spans_say_where_each_word_is(small_dataset):
    """word_spans.tsv covers every clip once, each span inside the clip; the clip is louder inside its span than
    outside (the rest is noise)."""
    from tasks.data.builtin_speech import read_word_spans

    out_dir, summary = small_dataset
    spans = read_word_spans(out_dir)
    assert sorted(spans) == sorted(f"{p.parent.name}/{p.name}" for p in out_dir.glob("*/*.wav"))
    for clip, (start, end) in spans.items():
        samples, rate = soundfile.read(out_dir / clip)
        assert 0 <= start < end <= len(samples) == rate
        inside = np.sqrt(np.mean(samples[start:end] ** 2))
        outside = np.sqrt(np.mean(np.concatenate([samples[:start], samples[end:]]) ** 2)) if end - start < rate else 0
        assert inside > outside, clip
    assert not (out_dir / ".word_spans").exists()


# sha256 over the (path, md5) of every file of the SMALL dataset, as this lock builds it.
SMALL_DATASET_DIGEST = "f8cf1adad236b932b47f0b2e646f3562ee201869b782632c7496e3dee4ecb679"  # with word_spans.tsv


def test_the_audio_is_the_same_as_the_locked_espeak_makes_it(small_dataset):
    """The built-in speech data, and so the md5 in data.dvc, is byte-identical only with the same eSpeak NG build:
    why pyproject pins espeakng-loader (which ships the library and its voices). Another build (or numpy, scipy or
    libsndfile changing their output) fails here, before a fresh clone's data stops matching data.dvc."""
    out_dir, _ = small_dataset
    digest = hashlib.sha256(repr(sorted(_file_hashes(out_dir).items())).encode()).hexdigest()
    assert digest == SMALL_DATASET_DIGEST
