"""Defaults that travel (tasks/defaults.py): `auto` keys resolved from the prepared data by documented rules, what the
checkpoint and the MLflow run hold, and the messages of a wrong value."""

import itertools
import logging

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from tokenizers import Tokenizer

from tasks.data.builtin_image import generate_image_dataset
from tasks.data.builtin_text import generate_text_dataset
from tasks.data.builtin_translation import generate_translation_dataset
from tasks.data.datasets import image_transforms, rand_augment, read_text_csv
from tasks.defaults import (
    AUTO,
    LENGTH_KEYS,
    LENGTH_RANGE,
    MIN_EPOCHS,
    MIN_STEPS,
    RESOLVED_PREFIX,
    SIZE_TIERS,
    augment_strength,
    auto_epochs,
    auto_patience,
    heads_for,
    length_values,
    model_size,
    short_training,
    steps_per_epoch,
    token_length,
)
from tasks.kinds import get, load_trained
from tasks.kinds.asr import decoder_depth
from tasks.kinds.base import auto_keys
from tasks.kinds.image import ImageAugment, patch_size_for
from tasks.names import CHECKPOINT, TOKENIZER
from tasks.params import ParamsError, load_params, override
from tasks.schema import TrainParams
from tasks.training import distributed
from tasks.training.job import train_and_save
from tests.conftest import ASR, IMAGE, REPO, SPEECH, TEXT, TRANSLATION, tiny_params, write_params

SIZES = [1, 10, 500, 1_999, 2_000, 5_000, 9_999, 10_000, 49_999, 50_000, 120_000, 249_999, 250_000, 10**7]


# ---- the rules ---------------------------------------------------------------------------------------------------
def test_model_size_grows_with_the_data_within_bounds_and_heads_divide_the_width():
    sizes = [model_size(n) for n in SIZES]
    for smaller, larger in itertools.pairwise(sizes):
        assert smaller.embed_dim <= larger.embed_dim and smaller.depth <= larger.depth
        assert smaller.num_heads <= larger.num_heads
    assert sizes[0] == model_size(0) and sizes[-1] == model_size(10**12)  # bounded at both ends
    assert 32 <= sizes[0].embed_dim < sizes[-1].embed_dim <= 512 and 1 <= sizes[0].depth < sizes[-1].depth <= 24
    for size in sizes:
        assert size.embed_dim % size.num_heads == 0 and size.embed_dim // size.num_heads >= 8
    assert len({model_size(n) for n in SIZES}) == len(SIZE_TIERS)  # every tier is reached


def test_explicit_values_win_and_the_rest_still_fit_them():
    assert model_size(100_000, embed_dim=100) == model_size(100_000, embed_dim=100, depth=AUTO)
    size = model_size(100_000, embed_dim=100)
    assert size.embed_dim == 100 and 100 % size.num_heads == 0  # heads: a divisor of the user's width
    size = model_size(500, num_heads=6)
    assert size.num_heads == 6 and size.embed_dim % 6 == 0 and size.embed_dim >= model_size(500).embed_dim
    assert model_size(500, depth=7).depth == 7
    for width in range(8, 600):
        heads = heads_for(width)
        assert width % heads == 0 and 1 <= heads <= 8 and width // heads >= 8


def test_auto_epochs_give_tiny_data_enough_steps_and_large_data_a_bounded_number_of_epochs():
    # the dataset: 31 utterances, batch 32, trained 5 steps with the shipped 5 epochs
    assert auto_epochs(31, 32) == 480 and 480 * steps_per_epoch(31, 32) == MIN_STEPS == 480 > 5
    assert auto_epochs(3_072, 32) == 5  # connected-digits' training split: its tuned 5 epochs, unchanged
    assert auto_epochs(100_000, 32) == MIN_EPOCHS == 5  # 15,625 steps, not more
    for examples in (1, 30, 31, 300, 1_000, 3_072, 10_000, 100_000, 10**7):
        for batch_size in (8, 32, 64, 256):
            epochs = auto_epochs(examples, batch_size)
            assert epochs * steps_per_epoch(examples, batch_size) >= MIN_STEPS  # never a handful of steps
            assert MIN_EPOCHS <= epochs <= MIN_STEPS  # bounded at both ends
            assert (epochs - 1) * steps_per_epoch(examples, batch_size) < MIN_STEPS or epochs == MIN_EPOCHS


def test_auto_patience_waits_a_quarter_of_the_plan_and_follows_epochs():
    assert auto_patience(480) == 120 and auto_patience(5) == 5 and auto_patience(48) == 12
    train = TrainParams(batch_size=32, lr=0.001, label_smoothing=0.0)  # epochs and patience left out: auto
    assert length_values(train, 31) == {"train.epochs": 480, "train.patience": 120}
    explicit = train.model_copy(update={"epochs": 5})
    assert length_values(explicit, 31) == {"train.patience": None}  # a number of epochs trains as it always did
    assert length_values(explicit.model_copy(update={"patience": 3}), 31) == {}


def test_a_plan_of_too_few_steps_is_warned_of_naming_the_key_and_a_sensible_one_is_not():
    train = TrainParams(epochs=5, batch_size=32, lr=0.001, label_smoothing=0.0)
    warning = short_training("dictation", train, 31)
    assert "dictation: training is planned for 5 optimizer steps" in warning
    assert f"fewer than the {MIN_STEPS}" in warning and "tasks.dictation.train.epochs (auto: 480 epochs)" in warning
    assert short_training("dictation", train.model_copy(update={"epochs": 480}), 31) is None  # 480 steps: enough
    assert short_training("digits", train.model_copy(update={"epochs": 5}), 3_072) is None  # 5 x 96 steps
    capped = short_training("digits", train.model_copy(update={"epochs": 5, "max_steps": 100}), 3_072)
    assert "planned for 100 optimizer steps" in capped and "tasks.digits.train.max_steps" in capped


def test_augmentation_weakens_as_examples_per_class_grow():
    strengths = [augment_strength(n) for n in (1, 50, 99, 100, 500, 999, 1_000, 4_999, 5_000, 10**6)]
    assert strengths == sorted(strengths, reverse=True) and strengths[0] > 1 > strengths[-1] > 0
    assert augment_strength(500) == 1.0  # the settings as written in the middle of the range


def test_token_length_is_a_high_percentile_rounded_and_capped():
    lengths = [10] * 99 + [1000]  # one outlier does not set the length
    assert token_length(lengths) < 100
    assert token_length([37] * 50) == 40 and token_length([37] * 50, extra=2) == 40 and token_length([39], 2) == 48
    assert token_length([1, 2]) == LENGTH_RANGE[0] and token_length([100_000]) == LENGTH_RANGE[1]
    assert token_length([]) == LENGTH_RANGE[0]
    assert all(token_length(range(n)) <= token_length(range(n + 50)) for n in (1, 30, 200, 700))


def test_patch_size_follows_the_image_size():
    assert [patch_size_for(size, "patch") for size in (8, 28, 32, 64, 96, 224, 256)] == [2, 4, 4, 8, 8, 14, 16]
    for size in range(8, 257):
        patch = patch_size_for(size, "patch")
        assert size % patch == 0
        if size % 2 == 0:
            conv = patch_size_for(size, "conv")
            assert size % conv == 0 and conv >= 2 and conv & (conv - 1) == 0
    assert decoder_depth(1) == 1 and decoder_depth(8) == 4


def test_augmentation_strength_scales_the_image_settings_and_1_keeps_them_exactly():
    augment = ImageAugment(max_shift=0.1, max_rotate=10.0, scale_range=(0.9, 1.2), strength=1.0)
    assert augment.scaled() is augment  # the built-in data's training is bit for bit what it was
    strong = augment.model_copy(update={"strength": 2.0}).scaled()
    assert (strong.max_shift, strong.max_rotate) == (0.2, 20.0) and strong.scale_range == pytest.approx((0.8, 1.4))
    capped = augment.model_copy(update={"strength": 4.0, "max_shift": 0.3}).scaled()
    assert capped.max_shift == 0.5 and capped.scale_range[0] > 0  # within each setting's own limits
    assert (strong.rand_magnitude, capped.rand_magnitude) == (1.0, 1.0)  # RandAugment's 0.5, doubled and capped


def test_rand_augment_ops_follow_their_magnitude_and_the_pipeline_is_seeded():
    """Every operation with a magnitude leaves an image as it is at magnitude 0 and changes it at 1; the transform
    draws rand_ops of them per image, reproducibly from its seed; rand_ops 0 adds nothing."""
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 200 + 20).astype(np.uint8)
    magnitude_free = {"auto_contrast", "equalize"}
    for (name, still), strong in zip(rand_augment(0.0, 3).items(), rand_augment(1.0, 3).values()):
        changed = [not np.array_equal(strong(image=image)["image"], image) for _ in range(20)]
        assert any(changed), name
        if name not in magnitude_free:
            assert np.array_equal(still(image=image)["image"], image), name
    assert set(rand_augment(0.5, 3)) - set(rand_augment(0.5, 1)) == {"saturation"}  # none for a grayscale image

    augment = ImageAugment(rand_ops=2, rand_magnitude=0.9)
    first, second = image_transforms(3, augment, seed=7), image_transforms(3, augment, seed=7)
    assert all(torch.equal(first(image=image)["image"], second(image=image)["image"]) for _ in range(5))
    names = lambda transform: [type(step).__name__ for step in transform.transforms]  # noqa: E731
    assert "SomeOf" in names(first) and "SomeOf" not in names(image_transforms(3, ImageAugment(), seed=7))


# ---- params validation -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            f"tasks.{IMAGE}.model.embed_dim",
            "big",
            f"tasks.{IMAGE}.model.embed_dim: Value error, 'auto' or an integer from 8 to 4096",
        ),
        (
            f"tasks.{TEXT}.model.depth",
            True,
            f"tasks.{TEXT}.model.depth: Value error, 'auto' or an integer from 1 to 24",
        ),
        (
            f"tasks.{SPEECH}.model.num_heads",
            0,
            f"tasks.{SPEECH}.model.num_heads: Value error, 'auto' or an integer from 1 to 512",
        ),
        (
            f"tasks.{TRANSLATION}.model.max_len",
            2.5,
            f"tasks.{TRANSLATION}.model.max_len: Value error, 'auto' or an integer from 4",
        ),
        (
            f"tasks.{IMAGE}.data.augment.strength",
            "strong",
            f"tasks.{IMAGE}.data.augment.strength: Value error, 'auto' or a number",
        ),
        (
            f"tasks.{ASR}.model.augment_strength",
            -1,
            f"tasks.{ASR}.model.augment_strength: Value error, 'auto' or a number from 0 to 4",
        ),
        (
            f"tasks.{SPEECH}.model.background_snr_db",
            [20, 5],
            f"tasks.{SPEECH}.model: Value error, background_snr_db: the low end",
        ),
        (
            f"tasks.{IMAGE}.data.augment.rand_ops",
            5,
            f"tasks.{IMAGE}.data.augment.rand_ops: Input should be less than or equal to 4",
        ),
        (
            f"tasks.{SPEECH}.model.background_mix",
            1.5,
            f"tasks.{SPEECH}.model.background_mix: Input should be less than or equal to 1",
        ),
    ],
)
def test_a_wrong_value_names_the_key_and_what_it_takes(params, key, value, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        override(params, {key: value})


def test_auto_is_accepted_where_documented_and_an_impossible_conv_patch_is_refused(params):
    keys = {
        TEXT: ["model.embed_dim", "model.depth", "model.num_heads", "model.max_len"],
        IMAGE: ["model.embed_dim", "model.depth", "model.num_heads", "model.patch_size", "data.augment.strength"],
        SPEECH: ["model.embed_dim", "model.depth", "model.num_heads", "model.augment_strength"],
        TRANSLATION: ["model.embed_dim", "model.encoder_depth", "model.decoder_depth", "model.num_heads",
                        "model.max_len"],
        ASR: ["model.embed_dim", "model.encoder_depth", "model.decoder_depth", "model.num_heads", "model.max_len",
                "model.augment_strength"],
    }  # fmt: skip
    model_keys = lambda section: sorted(set(auto_keys(section)) - set(LENGTH_KEYS))  # noqa: E731
    for task, names in keys.items():
        assert model_keys(params.task(task)) == []  # params.yaml: the built-in data's tuned numbers
        section = override(params, {f"tasks.{task}.{name}": AUTO for name in names}).task(task)
        assert model_keys(section) == sorted(names)
    with pytest.raises(
        ParamsError, match=f"{IMAGE}: Value error, model.patch_size auto with stem 'conv' needs an even"
    ):
        override(params, {f"tasks.{IMAGE}.model.stem": "conv", f"tasks.{IMAGE}.model.patch_size": AUTO,
                          f"tasks.{IMAGE}.data.image_size": 27})  # fmt: skip


def test_model_keys_left_out_are_auto_and_explicit_ones_are_checked_together(tmp_path):
    raw = tiny_params()
    for key in ("embed_dim", "depth", "num_heads", "patch_size"):
        del raw["tasks"][IMAGE]["model"][key]
    assert set(auto_keys(load_params(write_params(tmp_path, raw)).task(IMAGE))) == {
        "model.embed_dim", "model.depth", "model.num_heads", "model.patch_size", "train.patience"}  # fmt: skip
    raw["tasks"][IMAGE]["model"].update(embed_dim=30, num_heads=4)
    with pytest.raises(ParamsError, match=r"embed_dim \(30\) must be divisible by num_heads \(4\)"):
        load_params(write_params(tmp_path, raw))


# ---- resolved from built data, through to the checkpoint ----------------------------------------------------------
def auto_params(tmp_path, task: str, keys: dict):
    raw = tiny_params()
    raw["global"]["tasks"] = [task]
    raw["tasks"][task]["model"].update(keys)
    return load_params(write_params(tmp_path, raw))


def train_tiny(tmp_path, params, task: str) -> dict:
    """train_and_save on data/<task>/ (one epoch of two batches); the events it reported."""
    events = {}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    train_and_save(task, params, tmp_path, out_dir, None,
                   distributed.Events(handler=lambda name, *args: events.setdefault(name, args)))  # fmt: skip
    return events


def test_text_auto_keys_resolve_from_the_training_split_into_the_checkpoint(tmp_path):
    generate_text_dataset(tmp_path / "data" / TEXT, locales=["en_US", "de_DE"], samples_per_class=40,
                          min_words=20, max_words=30, val_fraction=0.15, test_fraction=0.15, seed=0)  # fmt: skip
    params = auto_params(tmp_path, TEXT, {"embed_dim": AUTO, "depth": AUTO, "num_heads": AUTO, "max_len": AUTO})
    events = train_tiny(tmp_path, params, TEXT)
    resolved = events["started"][0]["resolved"]
    size = model_size(events["started"][0]["train"])
    assert resolved["model.embed_dim"] == size.embed_dim and resolved["model.depth"] == size.depth
    assert resolved["model.num_heads"] == size.num_heads
    texts = read_text_csv(tmp_path / "data" / TEXT / "train.csv")[0]
    counts = [len(e.ids) for e in Tokenizer.from_file(str(tmp_path / "out" / TOKENIZER)).encode_batch(texts)]
    max_len = resolved["model.max_len"]  # 1 % of the texts cut at most, rounded up to a multiple of 8, no more
    assert sum(count > max_len for count in counts) <= 0.01 * len(counts) and max_len % 8 == 0
    assert max_len - 8 < max(counts) and max_len > 20  # 20-30 words each: no more than the texts need

    checkpoint = torch.load(tmp_path / "out" / CHECKPOINT, weights_only=True)
    assert checkpoint["resolved"] == resolved
    assert resolved["train.patience"] is None  # patience auto with epochs 1: off
    for key, value in resolved.items():
        if key.startswith("model."):
            assert checkpoint["model_args"][key.removeprefix("model.")] == value
    model, _, _, _, splits = load_trained(tmp_path / "out" / CHECKPOINT, tmp_path / "data" / TEXT, params.task(TEXT), 0)
    assert max(len(ids) for ids, _ in splits.test) <= resolved["model.max_len"]  # evaluation reads as training did
    assert len(model.encoder.blocks) == resolved["model.depth"]


def test_explicit_numbers_win_over_the_rules(tmp_path):
    generate_image_dataset(tmp_path / "data" / IMAGE, image_size=16, digit_size=None, val_fraction=0.15,
                           test_fraction=0.15, seed=0)  # fmt: skip
    raw = tiny_params()
    raw["global"]["tasks"] = [IMAGE]
    raw["tasks"][IMAGE]["data"]["image_size"] = 16
    raw["tasks"][IMAGE]["data"]["builtin"]["digit_size"] = None
    raw["tasks"][IMAGE]["data"]["augment"]["strength"] = AUTO
    raw["tasks"][IMAGE]["model"].update(embed_dim=24, num_heads=AUTO, depth=AUTO, patch_size=AUTO)
    params = load_params(write_params(tmp_path, raw))
    section, resolved = get("image").resolve(params.task(IMAGE), tmp_path / "data" / IMAGE, None)
    train = len(get("image").split_files(tmp_path / "data" / IMAGE, "train"))
    assert resolved == {"model.num_heads": heads_for(24), "model.depth": model_size(train).depth,
                        "model.patch_size": 4, "data.augment.strength": augment_strength(train / 10)}  # fmt: skip
    splits = get("image").load_splits(tmp_path / "data" / IMAGE, section, 0, None)
    args = get("image").model_args(section, splits, None)
    assert args["embed_dim"] == 24 and args["patch_size"] == 4 and args["num_heads"] == heads_for(24)
    get("image").build_model(args)


def test_translation_max_len_covers_both_sides(tmp_path):
    data_dir = tmp_path / "data" / TRANSLATION
    generate_translation_dataset(data_dir, num_pairs=60, max_phrases=2, val_fraction=0.1, test_fraction=0.1, seed=0)
    params = auto_params(tmp_path, TRANSLATION, {"max_len": AUTO, "encoder_depth": AUTO, "decoder_depth": AUTO})
    spec = get("translation")
    tokenizer = spec.learn_tokenizer(data_dir, params.task(TRANSLATION))
    section, resolved = spec.resolve(params.task(TRANSLATION), data_dir, tokenizer)
    assert resolved["model.encoder_depth"] == resolved["model.decoder_depth"] == model_size(48).depth
    splits = spec.load_splits(data_dir, section, 0, tokenizer)
    targets = sorted(len(target) for _, target in splits.train)
    assert targets[int(0.98 * len(targets))] <= resolved["model.max_len"] == section.model.max_len
    assert "model.embed_dim" not in resolved  # tiny_params sets it
    mixed = override(params, {f"tasks.{TRANSLATION}.model.encoder_depth": 3}).task(TRANSLATION)
    assert spec.resolve(mixed, data_dir, tokenizer)[1]["model.decoder_depth"] == 3  # the decoder follows the encoder


def test_params_yaml_gives_speech_and_asr_the_spec_augment_as_written(params):
    """At strength 1 (params.yaml) the masks are the numbers written, as before the strength existed (image: the
    augmentation object itself, above; text, image, translation weights were compared bit for bit by hand)."""
    from tasks.data.datasets import LabelledItems, Splits, train_tokenizer

    empty = LabelledItems([], [], None)
    splits, tokenizer = Splits(empty, empty, empty, ["a", "b"]), train_tokenizer(["one two three"], 40, reversible=True)
    for task in (SPEECH, ASR):
        model = params.task(task).model
        args = params.kind(task).model_args(params.task(task), splits, tokenizer)
        assert model.augment_strength == 1.0
        assert (args["freq_mask"], args["time_mask"]) == (model.freq_mask, model.time_mask)
        assert type(args["freq_mask"]) is int and type(args["time_mask"]) is int


def test_speech_auto_scales_spec_augment_by_clips_per_class(tmp_path, params):
    """A prepared Speech Commands folder of 3 words, 5 clips each (one in validation, one in testing): 3 training clips
    a class, so the strongest augmentation."""
    import numpy as np
    import soundfile

    data_dir = tmp_path / "speech"
    for word in ("yes", "no", "up"):
        (data_dir / word).mkdir(parents=True)
        for clip in range(5):
            noise = np.random.default_rng(clip).normal(0, 0.1, 16000).astype("float32")
            soundfile.write(data_dir / word / f"s{clip}_nohash_0.wav", noise, 16000, subtype="PCM_16")
    (data_dir / "validation_list.txt").write_text("".join(f"{word}/s3_nohash_0.wav\n" for word in ("yes", "no", "up")))
    (data_dir / "testing_list.txt").write_text("".join(f"{word}/s4_nohash_0.wav\n" for word in ("yes", "no", "up")))
    keys = {f"tasks.{SPEECH}.model.{key}": AUTO for key in ("embed_dim", "depth", "num_heads", "augment_strength")}
    section = override(params, keys).task(SPEECH)
    spec = get("speech")
    resolved_section, resolved = spec.resolve(section, data_dir, None)
    size = model_size(9)  # nine training clips
    assert resolved == {"model.embed_dim": size.embed_dim, "model.num_heads": size.num_heads, "model.depth": size.depth,
                        "model.augment_strength": augment_strength(3)}  # fmt: skip
    args = spec.model_args(resolved_section, spec.load_splits(data_dir, resolved_section, 0, None), None)
    assert args["freq_mask"] == round(section.model.freq_mask * augment_strength(3)) > section.model.freq_mask
    assert args["time_mask"] == round(section.model.time_mask * augment_strength(3)) > section.model.time_mask
    spec.build_model(args)


def test_asr_auto_sizes_the_model_the_transcripts_and_spec_augment(tmp_path, params):
    """A prepared ASR folder (clips and {train,val,test}.tsv) of 12 noise clips with digit transcripts."""
    import numpy as np
    import soundfile

    data_dir = tmp_path / "asr"
    (data_dir / "clips").mkdir(parents=True)
    sentences = [" ".join(["one", "two", "three"][: 1 + i % 3] * (1 + i // 6)) for i in range(12)]
    for i in range(12):
        soundfile.write(data_dir / "clips" / f"{i}.wav", np.zeros(1600, "float32"), 16000, subtype="PCM_16")
    for split, rows in {"train": range(8), "val": range(8, 10), "test": range(10, 12)}.items():
        lines = ["path\tsentence\tspeaker"] + [f"clips/{i}.wav\t{sentences[i]}\ts{i}" for i in rows]
        (data_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    keys = ("embed_dim", "num_heads", "encoder_depth", "decoder_depth", "max_len", "augment_strength")
    section = override(params, {f"tasks.{ASR}.model.{key}": AUTO for key in keys}).task(ASR)
    spec = get("asr")
    tokenizer = spec.learn_tokenizer(data_dir, section)
    resolved_section, resolved = spec.resolve(section, data_dir, tokenizer)
    assert resolved["model.encoder_depth"] == model_size(8).depth
    assert resolved["model.decoder_depth"] == decoder_depth(model_size(8).depth)
    assert resolved["model.max_len"] == LENGTH_RANGE[0]  # at most 6 words: the shortest length
    assert resolved["model.augment_strength"] == augment_strength(8)
    args = spec.model_args(resolved_section, spec.load_splits(data_dir, resolved_section, 0, tokenizer), tokenizer)
    assert args["freq_mask"] == round(section.model.freq_mask * augment_strength(8))
    spec.build_model(args)


def test_a_section_without_auto_is_left_as_it_is(params, tmp_path):
    for task in params.tasks:
        section = params.task(task)
        assert params.kind(task).resolve(section, tmp_path / "no data", None) == (section, {})  # reads nothing


# ---- the record on the MLflow run ---------------------------------------------------------------------------------
@pytest.mark.integration
class LinesOf(logging.Handler):
    """The messages a logger emits while in a with block."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logging.INFO)
        self.logger, self.messages, self.warnings = logger, [], []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_the_train_stage_logs_and_records_what_auto_resolved_to(tmp_path, prefect_server, monkeypatch):
    """The train stage's own body in a flow (no cache), on tiny built-in text data, logging to a sqlite store."""
    from prefect import flow

    from tasks.stages.train import SHORT_TRAINING_TAG, train_model
    from tasks.tracking.mlflow_tracking import connect

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    generate_text_dataset(tmp_path / "data" / TEXT, locales=["en_US", "de_DE"], samples_per_class=30, min_words=3,
                          max_words=8, val_fraction=0.15, test_fraction=0.15, seed=0)  # fmt: skip
    params = auto_params(tmp_path, TEXT, {"embed_dim": AUTO, "depth": AUTO, "num_heads": AUTO, "max_len": AUTO})
    client, experiment_id = connect(tmp_path, params, TEXT)
    run_id = client.create_run(experiment_id).info.run_id
    lines = LinesOf(logging.getLogger("prefect"))  # what Prefect's console shows, whoever captures it
    with lines:
        flow(name="train-only")(lambda: train_model.fn(TEXT, params, tmp_path, run_id, {}))()
    client.set_terminated(run_id)

    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    recorded = {key: value for key, value in run.data.params.items() if key.startswith(RESOLVED_PREFIX)}
    assert set(recorded) == {RESOLVED_PREFIX + key for key in ("model.embed_dim", "model.depth", "model.num_heads",
                                                                "model.max_len", "train.patience")}  # fmt: skip
    assert recorded.pop(RESOLVED_PREFIX + "train.patience") == "None"  # patience auto with epochs 1: off
    [checkpoint_path] = (tmp_path / "outputs").rglob(CHECKPOINT)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    for key, value in recorded.items():
        assert checkpoint["model_args"][key.removeprefix(RESOLVED_PREFIX + "model.")] == int(value)
    logged = [line for line in lines.messages if "auto: model." in line]
    assert logged and f"model.embed_dim={checkpoint['model_args']['embed_dim']}" in logged[0]
    # one epoch of one batch (42 texts, batch 64): a WARNING naming the task, the steps, the minimum and the key
    [short] = [line for line in lines.warnings if "optimizer steps" in line]
    assert short.startswith(f"{TEXT}: training is planned for 1 optimizer steps") and f"the {MIN_STEPS}" in short
    assert f"tasks.{TEXT}.train.epochs" in short and run.data.tags[SHORT_TRAINING_TAG] == short
