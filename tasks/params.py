"""params.yaml: its schema, validated on load, and where the project's paths come from.

Every stage reads its own section. Unknown keys, wrong types and out-of-range values stop
the run before any work, with the offending key named (``ParamsError``).
"""
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MODALITIES = ("text", "image", "speech", "translation")
Fraction = Field(ge=0.0, lt=1.0)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- global -------------------------------------------------------------------------------
class TrackingParams(Section):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "attnflow"


class ScheduleParams(Section):
    """When `attnflow serve` runs the pipeline: a cron string read in an IANA timezone."""
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    per_modality: bool = False  # true: one deployment per modality, each with modalities=[m]

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, cron: str) -> str:
        try:
            CronSim(cron, datetime(2000, 1, 1))
        except CronSimError as error:
            raise ValueError(f"not a cron schedule: {error}") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def valid_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return timezone


class GlobalParams(Section):
    seed: int = Field(42, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    modalities: list[Literal["text", "image", "speech", "translation"]] = list(MODALITIES)
    tracking: TrackingParams = TrackingParams()
    schedule: ScheduleParams = ScheduleParams()


# ---- shared stage sections ----------------------------------------------------------------
class TrainParams(Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    label_smoothing: float = Fraction
    max_batches_per_epoch: int | None = Field(None, ge=1)  # shrinks epochs for smoke tests


class EvalParams(Section):
    batch_size: int = Field(256, ge=1)
    attention_maps: int = Field(4, ge=0, le=32)  # test samples drawn with their attention


class AttentionParams(Section):
    """What every attention model's section has: width, heads, MLP width and dropout."""
    embed_dim: int = Field(ge=8)
    num_heads: int = Field(ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Fraction

    @model_validator(mode="after")
    def heads_divide_embedding(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        return self


class ModelParams(AttentionParams):
    depth: int = Field(ge=1, le=24)


class ModalityParams(Section):
    """What every modality's section has besides its own data and model sub-sections."""

    task: str = Field(min_length=1)  # what the model predicts; names the MLflow runs
    train: TrainParams
    eval: EvalParams = EvalParams()


def check_range(name: str, low, high) -> None:
    if low > high:
        raise ValueError(f"{name}: the low end ({low}) is above the high end ({high})")


# ---- text ---------------------------------------------------------------------------------
class TextBuiltinData(Section):
    locales: list[str] = Field(min_length=2)
    samples_per_class: int = Field(ge=10)
    min_words: int = Field(ge=1)
    max_words: int = Field(ge=1)
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)

    @model_validator(mode="after")
    def word_range(self):
        check_range("min_words/max_words", self.min_words, self.max_words)
        return self


class TextFile(Section):
    """A CSV or TSV file (or a folder of {train,val,test}.csv|tsv) with one example per row."""
    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["csv", "tsv"] = "csv"
    has_header: bool = True  # without a header, columns are 0-based integer positions
    text_columns: list[str | int] = Field(["text"], min_length=1)  # joined with a space
    label_column: str | int = "label"

    @model_validator(mode="after")
    def columns_match_header(self):
        columns = [*self.text_columns, self.label_column]
        wanted, kind = (str, "names") if self.has_header else (int, "integer positions (has_header is false)")
        wrong = [column for column in columns if not isinstance(column, wanted)]
        if wrong:
            raise ValueError(f"text_columns/label_column must be column {kind}, got {wrong}")
        if not self.has_header and any(column < 0 for column in columns):
            raise ValueError("column positions must be 0 or more")
        return self


INHERITED_BY_SPLIT_FILES = ("layout", "has_header", "text_columns", "label_column")


class TextImport(TextFile):
    """`path` holds the training rows (or every split); `val` / `test` name separate files for those splits. A split
    file reads like the main one (layout, header, columns) unless it sets its own: a three-file TSV dataset needs only
    the paths, while AG News (a headerless TSV to train on, a CSV with a header to test on) sets the test file's own."""
    val: TextFile | None = None
    test: TextFile | None = None
    val_fraction: float = Field(0.15, gt=0, lt=0.5)  # carved from train when the split is missing
    test_fraction: float = Field(0.15, gt=0, lt=0.5)

    @model_validator(mode="before")
    @classmethod
    def split_files_inherit(cls, data):
        """Fill what a split file leaves out from the main spec (its value as given, else its default)."""
        if not isinstance(data, dict):
            return data
        inherited = {key: data.get(key, cls.model_fields[key].get_default()) for key in INHERITED_BY_SPLIT_FILES}
        return data | {split: inherited | data[split] for split in ("val", "test") if isinstance(data.get(split), dict)}


class DataSection(Section):
    """A modality's data: built-in generated data (builtin) or the user's own (import_from, which wins when set)."""

    @model_validator(mode="after")
    def one_source(self):
        if self.builtin is None and self.import_from is None:
            raise ValueError("give data.builtin (generated data) or data.import_from (your own data)")
        return self


class TextData(DataSection):
    builtin: TextBuiltinData | None = None
    import_from: TextImport | None = None  # when set, it is used instead of builtin


class TextModel(ModelParams):
    vocab_size: int = Field(ge=32, le=100_000)
    max_len: int = Field(ge=4, le=4096)


class TextParams(ModalityParams):
    data: TextData
    model: TextModel


# ---- image --------------------------------------------------------------------------------
class ImageBuiltinData(Section):
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)


class ImageAugment(Section):
    horizontal_flip: bool = False  # natural images (CIFAR) yes; digits no
    max_shift: float = Field(0.1, ge=0, le=0.5)  # fraction of the image size
    max_rotate: float = Field(10.0, ge=0, le=180)  # degrees
    scale_range: tuple[float, float] = (0.9, 1.1)


class ImageImport(Section):
    """folders: <path>/{train,val,test}/<class>/<image> (missing splits carved from train) or <path>/<class>/<image>;
    csv: a manifest file with an image path (relative to the manifest's folder) and a label per row."""
    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["folders", "csv"] = "folders"
    image_column: str = "image"  # csv layout only
    label_column: str = "label"
    split_column: str | None = None  # csv: a column holding train/val/test; None: split by the fractions
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)


class ImageData(DataSection):
    builtin: ImageBuiltinData | None = None
    import_from: ImageImport | None = None  # when set, it is used instead of builtin
    image_size: int = Field(32, ge=8, le=256)  # images are read at image_size x image_size, whatever their source
    channels: int = Field(1, ge=1, le=3)
    augment: ImageAugment = ImageAugment()


class ImageModel(ModelParams):
    patch_size: int = Field(ge=1)
    stem: Literal["patch", "conv"] = "patch"  # conv: 3x3 stride-2 convolutions down to the patch grid (small data)

    @model_validator(mode="after")
    def conv_stem_patch_size(self):
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"stem 'conv' needs a power-of-two patch_size >= 2 (got {self.patch_size})")
        return self


class ImageParams(ModalityParams):
    data: ImageData
    model: ImageModel

    @model_validator(mode="after")
    def patches_tile_image(self):
        if self.data.image_size % self.model.patch_size:
            raise ValueError(f"model.patch_size ({self.model.patch_size}) must divide "
                             f"data.image_size ({self.data.image_size})")
        return self


# ---- speech -------------------------------------------------------------------------------
class SpeechBuiltinData(Section):
    words: list[str] = Field(min_length=2)
    speakers_per_word: int = Field(ge=2)
    voices: list[str] = Field(min_length=1)
    rate_range: tuple[int, int]
    pitch_range: tuple[int, int]
    noise_snr_db_range: tuple[float, float]
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)

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
    n_mels: int = Field(40, ge=8, le=256)
    freq_mask: int = Field(8, ge=0)  # SpecAugment, applied in training only
    time_mask: int = Field(10, ge=0)


class SpeechParams(ModalityParams):
    data: SpeechData
    model: SpeechModel


# ---- translation --------------------------------------------------------------------------
class TranslationBuiltinData(Section):
    """German-English phrases built from CLDR data (tasks/data/builtin_translation.py)."""
    num_pairs: int = Field(ge=30)
    max_phrases: int = Field(3, ge=1, le=6)  # phrases (a date, an amount, a country, ...) per sentence
    val_fraction: float = Field(gt=0, lt=0.5)
    test_fraction: float = Field(gt=0, lt=0.5)


class TranslationImport(Section):
    """Line-aligned parallel files per split: <path>/<stem>.<lang>, plain or gzipped (<stem>.<lang>.gz)."""
    path: str = Field(min_length=1)  # relative paths are read from the project root
    source_lang: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    target_lang: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    splits: dict[Literal["train", "val", "test"], str] = {"train": "train", "val": "val", "test": "test"}
    val_fraction: float = Field(0.05, gt=0, lt=0.5)  # carved from train (seeded) when splits has no val
    test_fraction: float = Field(0.05, gt=0, lt=0.5)

    @model_validator(mode="after")
    def has_train_and_two_languages(self):
        if "train" not in self.splits:
            raise ValueError("splits must name the train file stem")
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang and target_lang are both {self.source_lang!r}")
        return self


class TranslationData(DataSection):
    builtin: TranslationBuiltinData | None = None
    import_from: TranslationImport | None = None  # when set, it is used instead of builtin


class TranslationModel(AttentionParams):
    encoder_depth: int = Field(ge=1, le=24)
    decoder_depth: int = Field(ge=1, le=24)
    vocab_size: int = Field(ge=32, le=100_000)  # one joint BPE vocabulary for both languages, tied embeddings
    max_len: int = Field(ge=4, le=4096)  # subword tokens per sentence (longer ones are cut)


class TranslationEval(EvalParams):
    beam_size: int = Field(4, ge=1, le=32)
    length_penalty: float = Field(0.6, ge=0)  # GNMT: scores divided by ((5 + length) / 6) ** length_penalty
    max_decode_len: int = Field(128, ge=1)  # at most this many tokens per output,
    decode_len_ratio: float = Field(1.5, gt=0)  # and at most ratio * source tokens + 10


class TranslationParams(ModalityParams):
    data: TranslationData
    model: TranslationModel
    eval: TranslationEval = TranslationEval()


class Params(Section):
    """A modality's section may be left out when the modality is not run (e.g. a params file for one dataset)."""
    global_: GlobalParams = Field(GlobalParams(), alias="global")
    text: TextParams | None = None
    image: ImageParams | None = None
    speech: SpeechParams | None = None
    translation: TranslationParams | None = None

    @model_validator(mode="after")
    def selected_modalities_have_sections(self):
        missing = [modality for modality in self.global_.modalities if getattr(self, modality) is None]
        if missing:
            raise ValueError(f"global.modalities lists {missing} but the file has no section for "
                             f"{'it' if len(missing) == 1 else 'them'}")
        return self

    def section(self, modality: str) -> TextParams | ImageParams | SpeechParams | TranslationParams:
        section = getattr(self, modality)
        if section is None:
            raise ParamsError(f"params have no `{modality}` section (needed to run {modality})")
        return section

    def present_modalities(self) -> list[str]:
        return [modality for modality in MODALITIES if getattr(self, modality) is not None]


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and key."""


def load_params(path: str | Path) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {error}") from error
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        problems = [
            f"  {'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            + ("" if problem["type"] == "missing" or isinstance(problem["input"], dict) else f" (got {problem['input']!r})")
            for problem in error.errors()
        ]
        raise ParamsError(f"{path}: invalid params:\n" + "\n".join(problems)) from None


def project_root(params_path: str | Path) -> Path:
    """The project is the folder holding params.yaml: data/, data.dvc and mlflow.db live beside it."""
    return Path(params_path).resolve().parent
