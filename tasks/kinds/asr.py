"""Speech recognition (built-in: connected digits spoken by eSpeak NG voices, with noise): an attention
encoder-decoder over log-mel frames (attn_models/speech_recognizer.py) with a CTC head, beam search.

Prepared layout (like Common Voice's): clips and {train,val,test}.tsv with path, sentence and speaker; the layout,
the built-in generator and the importers are tasks/data/asr_data.py, apart from this module so that the data recipe
does not follow the model and serving code.

Training: cross-entropy of the decoder (teacher forcing), plus CTC on the encoder and a guided-attention prior
(train.ctc_weight, train.guide_weight): with a budget of a few epochs they decide whether the cross-attention finds
its alignment at all (without CTC the model stays at WER above 0.9; without the prior it says the right digits in
the wrong order: docs/benchmarks.md). Metrics: word and character error rates (jiwer) of the beam-search
transcripts, and WER of greedy decoding; lower is better. Attention map: the cross-attention of each output subword
over the encoder frames, drawn under the spectrogram. Served input: ``{"audio": ...}``, a base64 WAV, FLAC or MP3
(resampled to the model's rate) or float samples at that rate; answer: the transcript and its alignment.
"""

from typing import Literal

from pydantic import Field, model_validator

from tasks.data.asr_data import DIGIT_WORDS, SPLIT_FILES, read_split
from tasks.defaults import AUTO, augment_strength, auto_or_number, is_auto, size_values, token_length
from tasks.kinds.sequence import SequenceKind
from tasks.schema import (
    AttentionParams,
    DataSection,
    DecodeParams,
    Depth,
    Fraction,
    MaskCount,
    MaskWidth,
    Section,
    SplitFraction,
    Strength,
    TaskParams,
    TrainParams,
    check_range,
)


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
    encoder_depth: Depth = AUTO  # auto: the size tier's depth (tasks/defaults.py),
    decoder_depth: Depth = AUTO  # and half of it (decoder_depth)
    vocab_size: int = Field(ge=8, le=100_000)  # BPE subwords of the transcripts (reversible: they detokenize exactly)
    # output subwords per transcript (longer ones are cut); auto: from the training transcripts (tasks/defaults.py)
    max_len: auto_or_number(int, 4, 4096) = 128
    n_mels: int = Field(80, ge=8, le=256)
    subsampling_layers: int = Field(4, ge=0, le=6)  # stride-2 convolutions: 4 = 160 ms a frame
    freq_masks: MaskCount = 1  # SpecAugment, training only: bands of at most freq_mask mel channels
    freq_mask: MaskWidth = 15
    time_masks: MaskCount = 1  # and stretches of at most time_mask frames (10 ms each)
    time_mask: MaskWidth = 10
    # scales freq_mask and time_mask (1: as written); auto: from the training utterances (tasks/defaults.py)
    augment_strength: Strength = 1.0
    memory_positions: bool = False  # positions added to the encoder output too


class AsrTrain(TrainParams):
    ctc_weight: float = Fraction  # the loss: (1 - w) * decoder CE + w * CTC (+ guide_weight * guided attention)
    guide_weight: float = Field(1.0, ge=0)
    guide_sigma: float = Field(0.2, gt=0, le=1)  # how far from the diagonal the prior tolerates attention


class AsrParams(TaskParams):
    kind: Literal["asr"]
    data: AsrData
    model: AsrModel
    train: AsrTrain
    eval: DecodeParams = DecodeParams()


def decoder_depth(depth: int) -> int:
    """The `auto` decoder depth for an encoder of that depth: half of it, at least one layer."""
    return max(1, depth // 2)


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


class Asr(SequenceKind):
    name, order, params = "asr", 50, AsrParams
    metrics = ("test_wer", "test_cer", "test_wer_greedy")  # jiwer's rates of the detokenized transcripts
    higher_is_better = False
    input_column = "audio"
    model_class = "attn_models.speech_recognizer:SpeechRecognizer"
    generator = "tasks.data.asr_data:generate_asr_dataset"
    importer = "tasks.data.asr_data:import_asr"
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

    def auto_values(self, section, data_dir, tokenizer):
        """Model size from the training utterances' count, the decoder half as deep as the encoder (the encoder does
        the acoustics; the decoder writes short transcripts); max_len from the transcripts with [BOS] and [EOS];
        SpecAugment's strength from the utterances (no classes: each utterance counts as one)."""
        sentences = [row["sentence"] for row in read_split(data_dir, "train")]
        m = section.model
        encoder = lambda depth: depth if is_auto(m.encoder_depth) else m.encoder_depth  # noqa: E731
        depths = {"encoder_depth": encoder, "decoder_depth": lambda depth: decoder_depth(encoder(depth))}
        values = size_values(m, len(sentences), depths)
        if is_auto(section.model.max_len):
            counts = [len(encoding.ids) for encoding in tokenizer.encode_batch(sentences)]
            values["model.max_len"] = token_length(counts, extra=2)
        if is_auto(section.model.augment_strength):
            values["model.augment_strength"] = augment_strength(len(sentences))
        return values

    def load_splits(self, data_dir, section, seed, tokenizer):
        import soundfile

        from tasks.data.datasets import DecodedCache, LabelledItems, Splits, encode_targets

        def split(name):
            rows = read_split(data_dir, name)
            targets = encode_targets(tokenizer, [row["sentence"] for row in rows], section.model.max_len)
            return LabelledItems([data_dir / row["path"] for row in rows], targets, DecodedCache(read_waveform))

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
            freq_mask=round(m.freq_mask * m.augment_strength),
            time_masks=m.time_masks,
            time_mask=round(m.time_mask * m.augment_strength),
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

    def split_texts(self, data_dir, section, split):
        rows = read_split(data_dir, split)
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

    def removal_baseline(self, source, e):
        """A silent clip of the same length: a removed encoder frame keeps its position and hears silence. (No
        alignment_evidence: the built-in generator speaks each digit string in one eSpeak call, so where each word
        is spoken is not known.)"""
        import torch

        return torch.zeros_like(source)

    def viewer_source(self, source, units, e):
        """One label per encoder frame: the time it starts at (the frames split the clip evenly)."""
        seconds = len(source) / e.section.data.sample_rate
        return {"source_tokens": [f"{unit * seconds / units:.2f}s" for unit in range(units)]}

    def serving_example(self, data_dir, section):
        import base64

        return base64.b64encode((data_dir / read_split(data_dir, "test")[0]["path"]).read_bytes()).decode()

    def request_source(self, value, checkpoint, tokenizer, limits):
        from tasks.data.requests import read_audio

        return read_audio(value, checkpoint["model_args"]["sample_rate"], limits)


SPEC = Asr()
