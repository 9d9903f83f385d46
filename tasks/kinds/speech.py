"""Keyword spotting (built-in: keywords spoken by eSpeak NG voices, with noise): log-mel frames, conv subsampling and
a Transformer encoder with a class token; SpecAugment in training.

Prepared layout (Google Speech Commands): data/speech/<word>/<clip>.wav, 16-bit mono at data.sample_rate, with
validation_list.txt and testing_list.txt (every other clip is training). Attention map: rollout over time, drawn on
the log-mel spectrogram. Served input: ``{"audio": ...}``, a base64 WAV (resampled if needed) or float samples at the
model's sample rate; padded or cut to the clip length.

With ``model.backbone`` (an Audio Spectrogram Transformer: attn_models/pretrained.py, PretrainedAudioClassifier) the
backbone's feature extractor replaces the log-mel front end and the augmentations, and the map has one value per
spectrogram patch (frequency rows by time columns): the figure sums each time column, the viewer lays the patch grid
over the features, and localization reads the samples each patch hears.
"""

import functools
import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.defaults import augment_strength, finetune_defaults, is_auto, size_values
from tasks.kinds.classification import Classifier
from tasks.schema import (
    BackboneParams,
    DataSection,
    MaskCount,
    MaskWidth,
    ModelParams,
    Section,
    SplitFraction,
    Strength,
    TaskParams,
    check_range,
)

NOT_WORDS = {"_background_noise_"}  # Speech Commands' noise recordings; _silence_ and _unknown_ are classes
SPLIT_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}
SILENCE_FRAMES = 100  # a clip's input summary counts silence in this many frames (10 ms each in a 1 s clip)
SILENCE_DB = -50.0  # dB of full scale: a frame quieter than this is near silence
SILENCE_FLOOR_DB = -120.0  # the level of digital silence (no log of 0)


class SpeechBuiltinData(Section):
    """Keywords spoken by eSpeak NG voices, with noise (tasks/data/builtin_speech.py)."""

    words: list[str] = Field(min_length=2)
    speakers_per_word: int = Field(ge=2)
    voices: list[str] = Field(min_length=1)
    rate_range: tuple[int, int]
    pitch_range: tuple[int, int]
    noise_snr_db_range: tuple[float, float]
    val_fraction: float = SplitFraction
    test_fraction: float = SplitFraction

    @model_validator(mode="after")
    def ranges(self):
        for name in ("rate_range", "pitch_range", "noise_snr_db_range"):
            check_range(name, *getattr(self, name))
        return self


class SpeechImport(Section):
    """speech_commands: <path>/<word>/*.wav (+ validation_list.txt, testing_list.txt if the dataset has them);
    csv: a manifest file with an audio path (relative to the manifest's folder) and a label per row.
    Clips are resampled to data.sample_rate, downmixed to mono and written as 16-bit WAV."""

    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["speech_commands", "csv"] = "speech_commands"
    audio_column: str = "audio"  # csv layout only
    label_column: str = "label"
    split_column: str | None = None  # csv: a column holding train/val/test; None: split by speaker and fractions
    val_fraction: float = Field(0.15, gt=0, lt=0.5)  # missing splits: by speaker (file name before _nohash_)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)


class SpeechData(DataSection):
    builtin: SpeechBuiltinData | None = None
    import_from: SpeechImport | None = None  # when set, it is used instead of builtin
    sample_rate: int = Field(16000, ge=8000, le=48000)
    clip_seconds: float = Field(1.0, gt=0, le=10)


class SpeechModel(ModelParams):
    """The augmentations apply in training only, drawn per clip (attn_models/audio_augment.py); the defaults are
    what a params file without the keys trained with."""

    n_mels: int = Field(40, ge=8, le=256)
    freq_masks: MaskCount = 1  # SpecAugment: bands of at most freq_mask mel channels
    freq_mask: MaskWidth = 8
    time_masks: MaskCount = 1  # and stretches of at most time_mask frames (10 ms each)
    time_mask: MaskWidth = 10
    # scales both masks' widest (1: as written); auto: from the training clips per class (tasks/defaults.py)
    augment_strength: Strength = 1.0
    time_shift_ms: float = Field(0.0, ge=0, le=1000)  # each clip moved up to this much either way, silence-filled
    background_mix: float = Field(0.0, ge=0, le=1)  # share of clips given another, played backwards, as background
    background_snr_db: tuple[float, float] = (5.0, 20.0)  # its level below the clip's, drawn per clip
    backbone: BackboneParams | None = None  # fine-tune a pretrained AST (and decode clips with its feature extractor)

    @model_validator(mode="after")
    def snr_range(self):
        check_range("background_snr_db", *self.background_snr_db)
        return self

    @model_validator(mode="after")
    def backbone_sets_the_front_end(self):
        """A backbone brings its own features (its extractor's mel bins) and is fine-tuned without the kind's
        augmentations; its head reads the class and distillation tokens. A key changed from its default would say
        otherwise: ValueError naming it (the defaults, as params.yaml writes them, may stay)."""
        if self.backbone is None:
            return self
        clashing = [name for name in BACKBONE_REPLACES if getattr(self, name) != type(self).model_fields[name].default]
        if clashing:
            raise ValueError(f"{', '.join(clashing)}: not used with model.backbone (leave them at their defaults)")
        return self


BACKBONE_REPLACES = ("n_mels", "freq_masks", "freq_mask", "time_masks", "time_mask", "augment_strength",
                     "time_shift_ms", "background_mix", "pool")  # fmt: skip


class SpeechParams(TaskParams):
    kind: Literal["speech"]
    data: SpeechData
    model: SpeechModel

    _finetune_defaults = model_validator(mode="before")(finetune_defaults)


def listed(data_dir, split: str) -> list[str]:
    """The clips (relative paths) a split list of the prepared data names."""
    return [line for line in (data_dir / SPLIT_LISTS[split]).read_text(encoding="utf-8").splitlines() if line]


def clips(data_dir) -> list:
    """Every clip of a class, sorted: the noise recordings and hidden folders are no class."""
    return sorted(
        path
        for path in data_dir.glob("*/*.wav")
        if path.parent.name not in NOT_WORDS and not path.parent.name.startswith(".")
    )


class Speech(Classifier):
    name, order, params = "speech", 30, SpeechParams
    input_column = "audio"
    model_class = "attn_models.speech_transformer:SpeechTransformer"
    pretrained_class = "attn_models.pretrained:PretrainedAudioClassifier"
    generator = "tasks.data.builtin_speech:generate_speech_dataset"
    importer = "tasks.data.importers:import_speech"
    manifest_layouts = ("csv",)
    serving_input = (
        "a base64 WAV (resampled to the model's rate) or float samples at that rate; padded or cut to clip_seconds"
    )
    limits = (
        "Clips are cut to data.clip_seconds: a keyword later in a longer clip is lost. Rollout is per encoder frame "
        "(20 ms), not a faithful explanation of the decision."
    )

    def builtin_arguments(self, section, seed):
        return super().builtin_arguments(section, seed) | {
            "sample_rate": section.data.sample_rate,
            "clip_seconds": section.data.clip_seconds,
        }

    def import_arguments(self, section, seed):
        return super().import_arguments(section, seed) | {"sample_rate": section.data.sample_rate}

    def split_files(self, data_dir, split):
        """val and test: their list file and the clips it names; train: every other clip of a class."""
        if split in SPLIT_LISTS:
            return [data_dir / SPLIT_LISTS[split]] + [data_dir / name for name in sorted(listed(data_dir, split))]
        held_out = {name for other in SPLIT_LISTS for name in listed(data_dir, other)}
        return [path for path in clips(data_dir) if f"{path.parent.name}/{path.name}" not in held_out]

    def check_backbone(self, section, root, task):
        """The backbone's feature extractor loads and samples at data.sample_rate, and a clip fits its max_length
        frames (the extractor would cut the rest of a longer clip, and a keyword there with it)."""
        from attn_models.pretrained import fbank_frames
        from tasks import backbones
        from tasks.errors import UserError

        data = section.data
        extractor = backbones.feature_extractor(section.model.backbone, root, task, data.sample_rate)
        frames = fbank_frames(int(data.sample_rate * data.clip_seconds), data.sample_rate)
        if frames > extractor["max_length"]:
            most = extractor["max_length"]
            raise UserError(f"tasks.{task}.data.clip_seconds: {data.clip_seconds} s is {frames} filterbank frames; "
                            f"the backbone takes at most {most} (the rest would be cut)")  # fmt: skip

    def auto_values(self, section, data_dir, tokenizer):
        """Model size from the training clips' count, SpecAugment's strength from the training clips per class."""
        train = self.split_files(data_dir, "train")
        if section.model.backbone is not None:
            values = self.backbone_size_values(section, self.backbone_config(section))
        else:
            values = size_values(section.model, len(train))
        if is_auto(section.model.augment_strength):
            classes = len({path.parent.name for path in clips(data_dir)})
            values["model.augment_strength"] = augment_strength(len(train) / max(1, classes))
        return values

    def load_splits(self, data_dir, section, seed, tokenizer):
        from tasks.data.datasets import DecodedCache, LabelledItems, Splits, read_clip

        class_names = sorted({path.parent.name for path in clips(data_dir)})
        split_of = {name: split for split in SPLIT_LISTS for name in listed(data_dir, split)}
        by_split = {"train": [], "val": [], "test": []}
        for path in clips(data_dir):
            by_split[split_of.get(f"{path.parent.name}/{path.name}", "train")].append(path)
        num_samples = int(section.data.sample_rate * section.data.clip_seconds)

        def split(name):
            paths = by_split[name]
            return LabelledItems(
                paths,
                [class_names.index(p.parent.name) for p in paths],
                DecodedCache(lambda p: read_clip(p, num_samples)),
            )

        return Splits(split("train"), split("val"), split("test"), class_names)

    def model_args(self, section, splits, tokenizer):
        m, data = section.model, section.data
        if m.backbone is not None:
            return self.pretrained_audio_args(section, splits)
        return m.attention_args() | dict(
            num_classes=len(splits.class_names),
            sample_rate=data.sample_rate,
            clip_seconds=data.clip_seconds,
            n_mels=m.n_mels,
            depth=m.depth,
            freq_masks=m.freq_masks,
            freq_mask=round(m.freq_mask * m.augment_strength),
            time_masks=m.time_masks,
            time_mask=round(m.time_mask * m.augment_strength),
            time_shift_ms=m.time_shift_ms,
            background_mix=m.background_mix,
            background_snr_db=list(m.background_snr_db),
        )

    def pretrained_audio_args(self, section, splits) -> dict:
        """The fine-tuned AST's arguments: the backbone's config and feature extractor (the checkpoint rebuilds and
        decodes with them, without the source), the classes, the clips' rate and length, the head's dropout."""
        from attn_models.pretrained import backbone_config
        from tasks import backbones

        data = section.data
        extractor = backbones.feature_extractor(section.model.backbone, Path("/"), None, data.sample_rate)
        return {"backbone_config": backbone_config(self.backbone_config(section)), "feature_extractor": extractor,
                "num_classes": len(splits.class_names), "sample_rate": data.sample_rate,
                "clip_seconds": data.clip_seconds, "dropout": section.model.dropout}  # fmt: skip

    def serving_example(self, data_dir, section):
        import base64

        clip = self.split_files(data_dir, "test")[1]  # the first is the list file
        return base64.b64encode(clip.read_bytes()).decode()

    def attention_figure(self, model, inputs, relevance, true, predicted, tokenizer):
        """The log-mel spectrogram with the rollout (one value per encoder frame, or per time column of a backbone's
        patches: its rows summed) as a curve over time."""
        import matplotlib.pyplot as plt
        import numpy as np

        from tasks.evaluation.plots import sample_title

        log_mel = model.front_end(inputs)[0].numpy()  # (n_mels, frames)
        relevance = relevance.reshape(token_grid(model, len(relevance))).sum(axis=0)
        figure, axes = plt.subplots(figsize=(6, 3))
        axes.imshow(log_mel, origin="lower", aspect="auto", cmap="magma")
        times = np.linspace(0, log_mel.shape[1] - 1, len(relevance))
        curve = axes.twinx()
        curve.plot(times, relevance, color="cyan", linewidth=2)
        curve.set_ylim(0, relevance.max() * 1.1)
        curve.set_ylabel("attention")
        axes.set(xlabel="frame (10 ms)", ylabel="mel bin")
        axes.set_title(sample_title(true, predicted), fontsize=9)
        figure.tight_layout()
        return figure

    viewer_kind = "spectrogram"

    def removal_baseline(self, item, e):
        """Silence."""
        import torch

        return torch.zeros_like(item)

    def localization_target(self, index, item, tokens, e):
        """On built-in clips, where the word is (word_spans.tsv): each token's share of its time that is the word;
        the frames split the clip evenly, a backbone's patches hear their time column's samples (token_spans)."""
        import torch

        path = e.splits.test.items[index]
        span = word_spans(e.data_dir).get(path.relative_to(e.data_dir).as_posix()) if e.builtin_data else None
        if span is None:
            return None
        if hasattr(e.model, "token_spans"):
            starts, ends = e.model.token_spans().unbind(dim=1)
        else:
            edges = torch.linspace(0, len(item), tokens + 1)
            starts, ends = edges[:-1], edges[1:]
        overlap = (ends.clamp(max=span[1]) - starts.clamp(min=span[0])).clamp(min=0)
        return overlap / (ends - starts)

    def viewer_input(self, item, tokens, e):
        """The log-mel spectrogram, under one column per encoder frame (the frames are subsampled); a backbone's
        features under its patch grid, low mel bins in the top row as its first patch row is."""
        from tasks.evaluation.plots import png_base64

        log_mel = e.model.front_end(item[None])[0]  # (n_mels, frames)
        grid = token_grid(e.model, tokens)
        return {"picture": png_base64(log_mel.detach().numpy(), flip=grid[0] == 1), "grid": list(grid)}

    def input_features(self, inputs, tokenizer):
        """The clip's level (RMS, dB of full scale) and the share of its frames (a hundredth of the clip each) that are
        near silence: louder noise, a quieter microphone, or clips much shorter than the model's length (padded with
        silence) move them."""
        samples = inputs.double()  # the square of a loud float32 sample may overflow float32
        count = min(SILENCE_FRAMES, len(samples))
        frames = samples[: len(samples) // count * count].reshape(count, -1)
        frame_level = frames.pow(2).mean(dim=1).sqrt()
        return {
            "rms_db": decibels(float(samples.pow(2).mean().sqrt())),
            "silent_share": float((frame_level < 10 ** (SILENCE_DB / 20)).double().mean()),
        }

    def reference_request(self, split, index, tokenizer):
        """With the clip's duration, as request_input records it."""
        import soundfile

        inputs, extra = super().reference_request(split, index, tokenizer)
        return inputs, {"input_summary": {"duration_s": soundfile.info(split.items[index]).duration}}

    def request_input(self, value, model_args, tokenizer, limits):
        """The clip padded or cut to the model's length; its duration before that goes in the answer's summary."""
        from tasks.data.datasets import fit_length
        from tasks.data.requests import read_audio

        num_samples = int(model_args["sample_rate"] * model_args["clip_seconds"])
        clip = read_audio(value, model_args["sample_rate"], limits)
        duration = {"input_summary": {"duration_s": len(clip) / model_args["sample_rate"]}}
        return fit_length(clip, num_samples).unsqueeze(0), duration


def token_grid(model, tokens: int) -> tuple[int, int]:
    """(rows, columns) of the model's map: a backbone's patch grid (frequency rows by time columns), else one row
    of encoder frames."""
    return tuple(getattr(model, "patch_grid", (1, tokens)))


def decibels(rms: float) -> float:
    """An RMS level in dB of full scale, silence floored at SILENCE_FLOOR_DB (log of 0)."""
    return max(SILENCE_FLOOR_DB, 20 * math.log10(rms)) if rms > 0 else SILENCE_FLOOR_DB


def word_spans(data_dir) -> dict:
    """The built-in data's word spans, read once per version of the file (the explain stage asks per example)."""
    from tasks.data.builtin_speech import WORD_SPANS

    path = Path(data_dir) / WORD_SPANS
    stat = path.stat() if path.exists() else None
    return _word_spans(path, stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _word_spans(path: Path, version) -> dict:
    from tasks.data.builtin_speech import read_word_spans

    return read_word_spans(path.parent)


SPEC = Speech()
