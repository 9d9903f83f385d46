"""Speech recognition (built-in: connected digits spoken by eSpeak NG voices, with noise): an attention
encoder-decoder over log-mel frames (attn_models/speech_recognizer.py) with a CTC head, beam search.

Prepared layout (like Common Voice's): data/asr/clips/<name>.wav, 16-bit mono at data.sample_rate, and
data/asr/{train,val,test}.tsv with the columns path (relative to data/asr), sentence and speaker; no speaker is in two
splits. The built-in data and every import layout (``import_asr``: Common Voice, a CSV/TSV manifest, LibriSpeech)
are written this way.

Training: cross-entropy of the decoder (teacher forcing), plus CTC on the encoder and a guided-attention prior
(train.ctc_weight, train.guide_weight): with a budget of a few epochs they decide whether the cross-attention finds
its alignment at all (without CTC the model stays at WER above 0.9; without the prior it says the right digits in
the wrong order: docs/benchmarks.md). Metrics: word and character error rates (jiwer) of the beam-search
transcripts, and WER of greedy decoding; lower is better. Attention map: the cross-attention of each output subword
over the encoder frames, drawn under the spectrogram. Served input: ``{"audio": ...}``, a base64 WAV, FLAC or MP3
(resampled to the model's rate) or float samples at that rate; answer: the transcript and its alignment.
"""

import csv
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.modalities.sequence import SequenceTask
from tasks.schema import (
    AttentionParams,
    DataSection,
    DecodeParams,
    Fraction,
    ModalityParams,
    Section,
    SplitFraction,
    TrainParams,
    check_range,
)

SPLIT_FILES = {"train": "train.tsv", "val": "val.tsv", "test": "test.tsv"}
COLUMNS = ("path", "sentence", "speaker")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh")
SILENCE_SECONDS = (0.05, 0.35)  # before and after an utterance, drawn separately
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


# ---- params ---------------------------------------------------------------------------------------------
class AsrBuiltinData(Section):
    """Digit strings spoken as continuous speech by eSpeak NG voices, with noise (``generate_asr_dataset``)."""

    num_speakers: int = Field(ge=3)
    utterances_per_speaker: int = Field(ge=1)
    min_words: int = Field(2, ge=1)
    max_words: int = Field(5, ge=1)
    vocabulary: list[str] = Field(list(DIGIT_WORDS), min_length=2)
    voices: list[str] = []  # eSpeak voices (accent+variant); empty: all 60 of tasks/data/espeak.py DEFAULT_VOICES
    rate_range: tuple[int, int] = (120, 220)  # words per minute
    pitch_range: tuple[int, int] = (25, 75)  # eSpeak's 0..100
    noise_snr_db_range: tuple[float, float] = (10.0, 30.0)
    val_fraction: float = SplitFraction
    test_fraction: float = SplitFraction

    @model_validator(mode="after")
    def ranges(self):
        check_range("min_words/max_words", self.min_words, self.max_words)
        for name in ("rate_range", "pitch_range", "noise_snr_db_range"):
            check_range(name, *getattr(self, name))
        return self


class AsrImport(Section):
    """common_voice: a Common Voice folder: clips/ and train.tsv, dev.tsv, test.tsv (client_id, path, sentence);
    manifest: a CSV or TSV file (by its name) with an audio path (relative to its folder), a transcript and optionally
    a speaker and a split per row; librispeech: <speaker>/<chapter>/<speaker>-<chapter>.trans.txt and the FLAC files
    it names, in split folders (train-clean-100, dev-clean, test-clean: named by their first word) or one.
    Splits the source lacks are carved from train by speaker."""

    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["common_voice", "manifest", "librispeech"] = "manifest"
    audio_column: str = "path"  # manifest only
    transcript_column: str = "sentence"
    speaker_column: str | None = None  # manifest: a column naming the speaker; None: each file is its own speaker
    split_column: str | None = None  # a column holding train/val/test; None: carved
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)


class AsrData(DataSection):
    builtin: AsrBuiltinData | None = None
    import_from: AsrImport | None = None  # when set, it is used instead of builtin
    sample_rate: int = Field(16000, ge=8000, le=48000)
    max_seconds: float = Field(30.0, gt=0, le=600)  # a longer clip stops the import, naming it


class AsrModel(AttentionParams):
    encoder_depth: int = Field(ge=1, le=24)
    decoder_depth: int = Field(ge=1, le=24)
    vocab_size: int = Field(ge=8, le=100_000)  # BPE subwords of the transcripts (reversible: they detokenize exactly)
    max_len: int = Field(128, ge=4, le=4096)  # output subwords per transcript (longer ones are cut)
    n_mels: int = Field(80, ge=8, le=256)
    subsampling_layers: int = Field(4, ge=0, le=6)  # stride-2 convolutions: 4 = 160 ms a frame
    freq_masks: int = Field(1, ge=0)  # SpecAugment, training only: bands of at most freq_mask mel channels
    freq_mask: int = Field(15, ge=0)
    time_masks: int = Field(1, ge=0)  # and stretches of at most time_mask frames (10 ms each)
    time_mask: int = Field(10, ge=0)
    memory_positions: bool = False  # positions added to the encoder output too


class AsrTrain(TrainParams):
    ctc_weight: float = Fraction  # the loss: (1 - w) * decoder CE + w * CTC (+ guide_weight * guided attention)
    guide_weight: float = Field(1.0, ge=0)
    guide_sigma: float = Field(0.2, gt=0, le=1)  # how far from the diagonal the prior tolerates attention


class AsrParams(ModalityParams):
    data: AsrData
    model: AsrModel
    train: AsrTrain
    eval: DecodeParams = DecodeParams()


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
    import numpy as np
    import soundfile

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
    import numpy as np

    from tasks.data.espeak import stable_int

    rng = np.random.default_rng([seed, stable_int("sentences"), speaker.index])
    lengths = rng.integers(min_words, max_words + 1, size=count)
    return [" ".join(vocabulary[i] for i in rng.integers(len(vocabulary), size=n)) for n in lengths]


def clip_path(speaker_id: str, number: int) -> str:
    return f"clips/{speaker_id}_{number}.wav"


def write_utterances(out_dir: Path, speaker, sentences: list[str], *, seed: int, sample_rate: int,
                     snr_db_range: tuple[float, float]) -> None:  # fmt: skip
    """In a forked child (one per speaker): synthesise and write one speaker's utterances, in order."""
    import numpy as np
    import soundfile

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
    import numpy as np
    import soundfile

    from tasks.data.importers import DataImportError, decode_audio, fill_splits
    from tasks.progress import counted

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
    from tasks.data.importers import DataImportError

    transcript = " ".join(text.split())  # tabs, newlines, runs of spaces: one space
    if not transcript:
        raise DataImportError(f"{where}: empty transcript")
    return transcript


def manifest_sources(manifest: Path, audio_column: str, transcript_column: str, speaker_column, split_column):
    from tasks.data.importers import manifest_file, read_manifest, split_name

    columns = {"file": audio_column, "text": transcript_column, "speaker": speaker_column, "split": split_column}
    found = []
    for row in read_manifest(manifest, columns):
        split = split_name(row["split"], row["where"]) if split_column else None
        path = manifest_file(manifest, row["file"], row["where"])
        found.append((split, transcript_of(row["text"], row["where"]), path, row["where"], row["speaker"] or path.stem))
    return found


def common_voice_sources(folder: Path):
    """Common Voice: clips/ and a TSV per split (train, dev, test; other files such as validated.tsv are not read)."""
    from tasks.data.importers import DataImportError, manifest_file, read_manifest, require

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
    from tasks.data.importers import SPLIT_NAMES, DataImportError, require

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


# ---- the spec -------------------------------------------------------------------------------------------
def read_waveform(path, sample_rate: int | None = None):
    """A mono float32 tensor of a clip (a path or a file object), resampled to sample_rate when it has another."""
    import soundfile
    import torch

    from tasks.data.datasets import resample

    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return resample(torch.from_numpy(samples.mean(axis=1)), rate, sample_rate or rate)


def pad_waveforms(waveforms: list) -> tuple:
    """(B, samples) zero-padded and the lengths (B,): the model's source."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    return pad_sequence(waveforms, batch_first=True), torch.tensor([len(w) for w in waveforms])


def pad_pairs(batch):
    from torch.nn.utils.rnn import pad_sequence

    waveforms, targets = zip(*batch)
    return pad_waveforms(list(waveforms)), pad_sequence(targets, batch_first=True, padding_value=0)


class Asr(SequenceTask):
    name, order, params = "asr", 50, AsrParams
    metrics = ("test_wer", "test_cer", "test_wer_greedy")  # jiwer's rates of the detokenized transcripts
    higher_is_better = False
    input_column = "audio"
    model_class = "attn_models.speech_recognizer:SpeechRecognizer"
    generator = "tasks.modalities.asr:generate_asr_dataset"
    importer = "tasks.modalities.asr:import_asr"
    manifest_layouts = ("manifest",)
    outputs_folder, output_field = "transcripts", "transcript"
    serving_input = "a base64 WAV, FLAC or MP3 (resampled to the model's rate) or float samples at that rate"
    limits = (
        "Trained on the words of its training transcripts: other words come out as the nearest it knows. Clips longer "
        "than data.max_seconds were never seen. The alignment shows where the decoder listened, not why."
    )

    def builtin_arguments(self, section, seed):
        return super().builtin_arguments(section, seed) | {"sample_rate": section.data.sample_rate}

    def import_arguments(self, section, seed):
        return super().import_arguments(section, seed) | {"sample_rate": section.data.sample_rate,
                                                          "max_seconds": section.data.max_seconds}  # fmt: skip

    def split_files(self, data_dir, split):
        return [data_dir / SPLIT_FILES[split]] + sorted(data_dir / row["path"] for row in read_split(data_dir, split))

    def learn_tokenizer(self, data_dir, section):
        from tasks.data.datasets import train_tokenizer

        sentences = [row["sentence"] for row in read_split(data_dir, "train")]
        return train_tokenizer(sentences, section.model.vocab_size, reversible=True)

    def load_splits(self, data_dir, section, seed, tokenizer):
        import soundfile

        from tasks.data.datasets import LabelledItems, Splits, encode_targets

        def split(name):
            rows = read_split(data_dir, name)
            targets = encode_targets(tokenizer, [row["sentence"] for row in rows], section.model.max_len)
            return LabelledItems([data_dir / row["path"] for row in rows], targets, read_waveform)

        train = split("train")
        lengths = [soundfile.info(path).frames for path in train.items]  # batches of similar length
        return Splits(train, split("val"), split("test"), [], pad_pairs, lengths)

    def model_args(self, section, splits, tokenizer):
        m = section.model
        return m.attention_args() | dict(
            vocab_size=tokenizer.get_vocab_size(),
            sample_rate=section.data.sample_rate,
            n_mels=m.n_mels,
            encoder_depth=m.encoder_depth,
            decoder_depth=m.decoder_depth,
            max_len=m.max_len,
            subsampling_layers=m.subsampling_layers,
            freq_masks=m.freq_masks,
            freq_mask=m.freq_mask,
            time_masks=m.time_masks,
            time_mask=m.time_mask,
            ctc=section.train.ctc_weight > 0,
            memory_positions=m.memory_positions,
        )

    def training_loss(self, model, inputs, targets, train):
        """(1 - ctc_weight) * label-smoothed CE of the decoder + ctc_weight * CTC of the encoder (blank = [PAD]) +
        guide_weight * the guided-attention prior, from one encoder pass."""
        import torch.nn.functional as F

        from attn_models.speech_recognizer import guided_attention_loss

        target_in, labels = targets[:, :-1], targets[:, 1:]
        if model.ctc_head is None:
            return super().training_loss(model, inputs, targets, train)
        out = model.forward_with_ctc(inputs, target_in, need_attention=train.guide_weight > 0)
        keep = labels != model.pad_id
        logits, kept = out.logits[keep], labels[keep]
        loss = (1 - train.ctc_weight) * F.cross_entropy(logits, kept, label_smoothing=train.label_smoothing)
        words = targets[:, 1:-1].clamp(min=0)  # without [BOS] and [EOS]; the padding after them is never read
        word_lengths = (targets != model.pad_id).sum(dim=1) - 2
        ctc = F.ctc_loss(out.ctc_log_probs, words, out.ctc_lengths, word_lengths, blank=model.pad_id,
                         zero_infinity=True)  # fmt: skip
        loss = loss + train.ctc_weight * ctc
        if train.guide_weight > 0:
            guide = guided_attention_loss(out.cross_attention, target_in, out.ctc_lengths, model.pad_id,
                                          train.guide_sigma)  # fmt: skip
            loss = loss + train.guide_weight * guide
        return loss, logits, kept

    def collate_sources(self, sources):
        return pad_waveforms(sources)

    def test_texts(self, data_dir, section):
        rows = read_split(data_dir, "test")
        return [row["path"] for row in rows], [row["sentence"] for row in rows]

    def score(self, hypotheses, references):
        """Word and character error rates over the corpus (jiwer: edits / reference length)."""
        import jiwer

        return {"test_wer": jiwer.wer(references, hypotheses), "test_cer": jiwer.cer(references, hypotheses)}

    def metric_tags(self, hypotheses, references):
        from importlib.metadata import version

        how = f"jiwer:{version('jiwer')}|corpus|case:mixed|punctuation:kept|whitespace:collapsed"
        return {"test_wer.signature": how, "test_cer.signature": how}

    def source_record(self, source, tokenizer):
        return {"samples": len(source)}

    def alignment_figure(self, record, source, model):
        """The log-mel spectrogram, and under it each output subword's attention over the encoder frames, on one
        time axis."""
        import matplotlib.pyplot as plt
        import numpy as np

        seconds = len(source) / model.front_end.melspec.sample_rate
        log_mel = model.front_end(source[None])[0].numpy()
        weights = np.array(record["alignment"])
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 2.5 * seconds), 5.5), sharex=True,
                                             gridspec_kw={"height_ratios": [2, 3]})  # fmt: skip
        top.imshow(log_mel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, log_mel.shape[0]))
        top.set_ylabel("mel bin")
        plain = {"parse_math": False}
        top.set_title(f"reference: {record['reference']}\ntranscript: {record['transcript']}", fontsize=9, loc="left",
                      **plain)  # fmt: skip
        bottom.imshow(weights, aspect="auto", cmap="Blues", vmin=0, extent=(0, seconds, len(weights) - 0.5, -0.5))
        bottom.set_yticks(range(len(weights)))
        bottom.set_yticklabels(record["output_tokens"], fontsize=8, **plain)
        bottom.set(xlabel="time (s)", ylabel="output subwords")
        figure.tight_layout()
        return figure

    def serving_example(self, data_dir, section):
        import base64

        return base64.b64encode((data_dir / read_split(data_dir, "test")[0]["path"]).read_bytes()).decode()

    def request_source(self, value, checkpoint, tokenizer, limits):
        from tasks.data.requests import check_size, read_audio

        check_size(value, limits)
        return read_audio(value, checkpoint["model_args"]["sample_rate"], limits)


SPEC = Asr()
