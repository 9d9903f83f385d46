"""Speech recognition data: the prepared layout, the built-in connected digits and the importers.

Layout (like Common Voice's): data/asr/clips/<name>.wav, 16-bit mono at data.sample_rate, and
data/asr/{train,val,test}.tsv with the columns path (relative to data/asr), sentence and speaker; no speaker is in two
splits. The built-in data (``generate_asr_dataset``) and every import layout (``import_asr``: Common Voice, a CSV/TSV
manifest, LibriSpeech) are written this way.

This is the task's data code only, apart from its spec (tasks/kinds/asr.py): the data recipe fingerprints the
generator's and importer's modules with all they import, so keeping the model, loop and serving code out of here
keeps an edit to them from rebuilding data/asr.
"""

import csv
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

from tasks.data.importers import (
    SPLIT_NAMES,
    DataImportError,
    decode_audio,
    fill_splits,
    manifest_file,
    read_manifest,
    require,
    split_name,
)
from tasks.progress import counted

# eSpeak (tasks/data/espeak.py) is imported where it is used: the asr spec imports this module for its layout, and
# the served model must not load the speech synthesiser.

SPLIT_FILES = {"train": "train.tsv", "val": "val.tsv", "test": "test.tsv"}
COLUMNS = ("path", "sentence", "speaker")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh")
SILENCE_SECONDS = (0.05, 0.35)  # before and after an utterance, drawn separately


# ---- built-in data --------------------------------------------------------------------------------------
def generate_asr_dataset(
    out_dir: Path,
    *,
    num_speakers: int = 240,
    utterances_per_speaker: int = 16,
    min_words: int = 2,
    max_words: int = 5,
    vocabulary: Sequence[str] = DIGIT_WORDS,
    voices: Sequence[str] = (),
    rate_range: tuple[int, int] = (120, 220),
    pitch_range: tuple[int, int] = (25, 75),
    noise_snr_db_range: tuple[float, float] = (10.0, 30.0),
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    sample_rate: int = 16000,
    seed: int = 0,
) -> dict:
    """Write the built-in dataset (the module docstring's layout) and return a summary.

    A speaker is a seeded draw of an eSpeak voice, rate, pitch and pitch range (tasks/data/espeak.py) who says
    utterances_per_speaker strings of min_words..max_words words of the vocabulary, each as continuous speech (one
    eSpeak call, so words run into each other as in TIDIGITS), with 0.05-0.35 s of silence either side and noise at a
    drawn SNR. Splits are by speaker. Every draw comes from the seed, so the same arguments give the same bytes.
    """
    from tasks.data.espeak import DEFAULT_VOICES, draw_speaker, run_in_fresh_library_state, split_speakers

    out_dir, voices = Path(out_dir), list(voices) or list(DEFAULT_VOICES)
    check_builtin(out_dir, vocabulary, voices)
    speakers = [draw_speaker(i, seed, voices, tuple(rate_range), tuple(pitch_range)) for i in range(num_speakers)]
    if len({speaker.speaker_id for speaker in speakers}) != len(speakers):
        raise ValueError(f"seed: speaker ids collide for seed {seed}; pick another seed")
    sentences = {s.speaker_id: utterances(s, seed, utterances_per_speaker, min_words, max_words, vocabulary)
                 for s in speakers}  # fmt: skip
    (out_dir / "clips").mkdir(parents=True)
    say = functools.partial(write_utterances, out_dir, seed=seed, sample_rate=sample_rate,
                            snr_db_range=tuple(noise_snr_db_range))  # fmt: skip
    run_in_fresh_library_state([functools.partial(say, s, sentences[s.speaker_id]) for s in speakers],
                               "ASR speech synthesis")  # fmt: skip
    val_ids, test_ids = split_speakers([s.speaker_id for s in speakers], val_fraction=val_fraction,
                                       test_fraction=test_fraction, seed=seed)  # fmt: skip
    rows = {split: [] for split in SPLIT_FILES}
    for speaker in speakers:
        split = "val" if speaker.speaker_id in val_ids else "test" if speaker.speaker_id in test_ids else "train"
        rows[split] += [(clip_path(speaker.speaker_id, n), sentence, speaker.speaker_id)
                        for n, sentence in enumerate(sentences[speaker.speaker_id])]  # fmt: skip
    write_split_files(out_dir, rows)
    seconds = sum(soundfile.info(out_dir / row[0]).duration for split_rows in rows.values() for row in split_rows)
    return {"num_clips": sum(map(len, rows.values())), "num_speakers": num_speakers,
            "audio_minutes": round(float(np.round(seconds / 60, 1)), 1),
            "splits": {split: len(split_rows) for split, split_rows in rows.items()}}  # fmt: skip


def check_builtin(out_dir: Path, vocabulary, voices) -> None:
    from tasks.data.espeak import get_espeak

    if len(set(vocabulary)) != len(vocabulary) or any(not w.strip() or len(w.split()) != 1 for w in vocabulary):
        raise ValueError(f"vocabulary must be distinct single words, got {list(vocabulary)!r}")
    unknown = [voice for voice in voices if not get_espeak().is_known_voice(voice)]
    if unknown:
        raise ValueError(f"voices: unknown eSpeak voice(s) {unknown!r}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"out_dir must be empty or not exist yet: {out_dir}")


def utterances(speaker, seed: int, count: int, min_words: int, max_words: int, vocabulary) -> list[str]:
    from tasks.data.espeak import stable_int

    rng = np.random.default_rng([seed, stable_int("sentences"), speaker.index])
    lengths = rng.integers(min_words, max_words + 1, size=count)
    return [" ".join(vocabulary[i] for i in rng.integers(len(vocabulary), size=n)) for n in lengths]


def clip_path(speaker_id: str, number: int) -> str:
    return f"clips/{speaker_id}_{number}.wav"


def write_utterances(out_dir: Path, speaker, sentences: list[str], *, seed: int, sample_rate: int,
                     snr_db_range: tuple[float, float]) -> None:  # fmt: skip
    """In a forked child (one per speaker): synthesise and write one speaker's utterances, in order."""
    from tasks.data.espeak import mix_noise, stable_int, synthesize

    for number, sentence in enumerate(sentences):
        speech = synthesize(
            sentence, speaker, sample_rate, stable_int(seed, speaker.index, "utterance", number) % 2**31
        )
        if speech.size == 0:
            raise RuntimeError(f"eSpeak voice {speaker.voice!r} said nothing for {sentence!r}")
        rng = np.random.default_rng([seed, stable_int("render"), speaker.index, number])
        before, after = (int(rng.uniform(*SILENCE_SECONDS) * sample_rate) for _ in range(2))
        clip = mix_noise(np.concatenate([np.zeros(before), speech, np.zeros(after)]), speech, rng, snr_db_range)
        pcm = np.round(clip * 32767).astype(np.int16)
        soundfile.write(out_dir / clip_path(speaker.speaker_id, number), pcm, sample_rate, subtype="PCM_16",
                        format="WAV")  # fmt: skip


def write_split_files(out_dir: Path, rows: dict[str, list[tuple[str, str, str]]]) -> None:
    """{train,val,test}.tsv: path, sentence, speaker; rows sorted, so the bytes follow from the content alone."""
    for split, file_name in SPLIT_FILES.items():
        with (out_dir / file_name).open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter="\t", lineterminator="\n")  # a transcript with a quote is quoted
            writer.writerow(COLUMNS)
            writer.writerows(sorted(rows[split]))


def read_split(data_dir: Path, split: str) -> list[dict]:
    """The rows (path, sentence, speaker) of a prepared split."""
    with (data_dir / SPLIT_FILES[split]).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t"))


# ---- users' data ----------------------------------------------------------------------------------------
def import_asr(source: Path, out_dir: Path, *, layout: str = "manifest", audio_column: str = "path",
               transcript_column: str = "sentence", speaker_column: str | None = None,
               split_column: str | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
               seed: int = 0, sample_rate: int = 16000, max_seconds: float = 30.0, **_) -> dict:  # fmt: skip
    """Import a speech corpus with transcripts into the prepared layout; every clip is decoded, resampled to
    sample_rate, downmixed and written as 16-bit WAV. A problem stops it with a DataImportError naming the file."""
    source = Path(source)
    if layout == "common_voice":
        found = common_voice_sources(source)
    elif layout == "librispeech":
        found = librispeech_sources(source)
    else:
        found = manifest_sources(source, audio_column, transcript_column, speaker_column, split_column)
    # (split or None, transcript, audio path, where, speaker): carve the missing splits by speaker
    found = fill_splits(found, val_fraction, test_fraction, seed, groups=[item[4] for item in found])
    for split in SPLIT_FILES:
        if not any(item[0] == split for item in found):
            raise DataImportError(f"{source}: no clips in the {split} split (too few speakers for the fractions?)")
    (out_dir / "clips").mkdir(parents=True)
    rows, written = {split: [] for split in SPLIT_FILES}, {}
    for split, transcript, path, where, speaker in counted(found, "importing clips", "clips"):
        name = f"clips/{path.stem}.wav"
        if name in written:
            raise DataImportError(f"{where}: gives the same output file as {written[name]} ({name})")
        written[name] = where
        samples = decode_audio(path, sample_rate)
        if len(samples) > max_seconds * sample_rate:
            raise DataImportError(
                f"{where}: {path} is {len(samples) / sample_rate:.1f} s long (data.max_seconds is {max_seconds})"
            )
        soundfile.write(out_dir / name, np.round(samples * 32767).astype(np.int16), sample_rate, subtype="PCM_16",
                        format="WAV")  # fmt: skip
        rows[split].append((name, transcript, speaker))
    write_split_files(out_dir, rows)
    return {"num_clips": len(found), "speakers": len({item[4] for item in found}),
            "splits": {split: len(split_rows) for split, split_rows in rows.items()}}  # fmt: skip


def transcript_of(text: str, where: str) -> str:

    transcript = " ".join(text.split())  # tabs, newlines, runs of spaces: one space
    if not transcript:
        raise DataImportError(f"{where}: empty transcript")
    return transcript


def manifest_sources(manifest: Path, audio_column: str, transcript_column: str, speaker_column, split_column):

    columns = {"file": audio_column, "text": transcript_column, "speaker": speaker_column, "split": split_column}
    found = []
    for row in read_manifest(manifest, columns):
        split = split_name(row["split"], row["where"]) if split_column else None
        path = manifest_file(manifest, row["file"], row["where"])
        found.append((split, transcript_of(row["text"], row["where"]), path, row["where"], row["speaker"] or path.stem))
    return found


def common_voice_sources(folder: Path):
    """Common Voice: clips/ and a TSV per split (train, dev, test; other files such as validated.tsv are not read)."""
    require(folder / "clips", "Common Voice clips folder", folder=True)
    found = []
    for split, name in (("train", "train.tsv"), ("val", "dev.tsv"), ("test", "test.tsv")):
        if (folder / name).is_file():
            rows = read_manifest(folder / name, {"file": "path", "text": "sentence", "speaker": "client_id"})
            found += [(split, transcript_of(row["text"], row["where"]),
                       manifest_file(folder / name, f"clips/{row['file']}", row["where"]), row["where"], row["speaker"])
                      for row in rows]  # fmt: skip
    if not any(item[0] == "train" for item in found):
        raise DataImportError(f"{folder}: no train.tsv (a Common Voice folder has train.tsv, dev.tsv, test.tsv)")
    return found


def librispeech_sources(folder: Path):
    """LibriSpeech: transcripts in <speaker>/<chapter>/*.trans.txt ('<utterance id> <TRANSCRIPT>' per line), the
    audio beside them; split folders are named by their first word (train-clean-100 -> train, dev-clean -> val)."""
    require(folder, "LibriSpeech folder", folder=True)
    subsets = {SPLIT_NAMES.get(p.name.split("-")[0]): p for p in sorted(folder.iterdir()) if p.is_dir()}
    roots = {split: path for split, path in subsets.items() if split} or {None: folder}
    found = []
    for split, root in roots.items():
        for listing in sorted(root.rglob("*.trans.txt")):
            for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
                where = f"{listing}, line {number}"
                utterance, _, text = line.strip().partition(" ")
                audio = [listing.parent / f"{utterance}{suffix}" for suffix in (".flac", ".wav")]
                path = next((p for p in audio if p.is_file()), None)
                if path is None:
                    raise DataImportError(f"{where}: no audio file {utterance}.flac beside it")
                found.append((split, transcript_of(text, where), path, where, utterance.split("-")[0]))
    if not found:
        raise DataImportError(f"{folder}: no *.trans.txt transcripts found (expected <speaker>/<chapter>/...)")
    return found
