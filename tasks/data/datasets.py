"""Readers of prepared data shared by the kinds (tasks/kinds/), which each turn their own layout in
data/<task>/ into ``Splits``: image decoding and albumentations transforms, audio clips, CSV text, parallel
text files, and the BPE tokenizer with its batching."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"  # ids 0, 1 (and 2, 3 in a reversible tokenizer)
MASK = "[MASK]"  # after those, in a tokenizer learned for masked-token pretraining


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    class_names: list[str]
    collate_fn: object = None  # None: torch's default
    lengths: list[int] | None = None  # of the train items: when given, training batches hold similar lengths


DECODED_CACHE_BYTES = 1 << 30  # the most of a split's decoded items one process keeps in memory


class DecodedCache:
    """``read`` (a file's path -> its decoded item: an image's pixels, a clip's samples) done once per file: later
    epochs and later batches of an evaluation take the item from memory, up to max_bytes for the split; past that,
    the rest are read each time. Augmentations run on the item every time, so training sees what it saw before.
    Why: on a 2-core CPU, reading and decoding each file every epoch cost image, speech and asr a fifth to a
    quarter of their training speed against a loop over batches already in memory (docs/benchmarks.md, "Training
    throughput"), and a DataLoader worker would take a core from the model."""

    def __init__(self, read, max_bytes: int = DECODED_CACHE_BYTES):
        self.read, self.max_bytes = read, max_bytes
        self.items, self.bytes = {}, 0

    def __call__(self, key):
        item = self.items.get(key)
        if item is None:
            item = self.read(key)
            if self.bytes + item.nbytes <= self.max_bytes:
                self.items[key] = item
                self.bytes += item.nbytes
        return item


class LabelledItems(Dataset):
    """(input, label index) pairs; ``load`` turns a stored item (a path, a text) into the input.

    augmentation: the seeded random transform ``load`` applies (an albumentations Compose), if any. The training loop
    calls ``set_epoch`` before each epoch, and each item's transform is seeded from the seed, the epoch and the item
    (like PyTorch's DistributedSampler.set_epoch, per item): an item's augmentation in an epoch depends on nothing
    else, so training resumed after epoch k draws exactly what an uninterrupted run draws, and a training split over
    several processes draws for each item what one process draws."""

    def __init__(self, items: list, labels: list[int], load, augmentation=None):
        self.items, self.labels, self.load, self.augmentation = items, labels, load, augmentation
        self.seed = augmentation.seed if augmentation is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if self.augmentation is not None:
            self.augmentation.set_random_seed((self.seed * 100_003 + self.epoch) * 1_000_003 + index)
        return self.load(self.items[index]), self.labels[index]


# ---- image --------------------------------------------------------------------------------
def rand_augment(magnitude: float, channels: int) -> dict:
    """RandAugment's operations (Cubuk et al., 2020) as albumentations transforms, each at ``magnitude`` (0..1, the
    paper's M / 10) of the paper's range: posterize to 8 - 4m bits, solarize above 1 - m of the range, brightness,
    contrast and saturation by up to 0.9m, sharpen by up to m, shear by up to 0.3m (about 17 degrees at m = 1). The
    translation and rotation of the paper are the affine step's own (max_shift, max_rotate). Saturation needs colour:
    a grayscale image draws from the others. By name."""
    import albumentations as A

    m = magnitude
    ops = {
        "auto_contrast": A.AutoContrast(p=1),
        "equalize": A.Equalize(p=1),
        "posterize": A.Posterize(num_bits=(max(1, round(8 - 4 * m)), 8), p=1),
        "solarize": A.Solarize(threshold_range=(1 - m, 1), p=1),
        "brightness": A.RandomBrightnessContrast(brightness_limit=0.9 * m, contrast_limit=0, p=1),
        "contrast": A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.9 * m, p=1),
        "saturation": A.ColorJitter(brightness=0, contrast=0, saturation=0.9 * m, hue=0, p=1),
        "sharpness": A.Sharpen(alpha=(0, m), lightness=(1, 1), p=1),
        "shear_x": A.Affine(shear={"x": (-17 * m, 17 * m), "y": (0, 0)}, p=1),
        "shear_y": A.Affine(shear={"x": (0, 0), "y": (-17 * m, 17 * m)}, p=1),
    }
    if channels != 3:
        del ops["saturation"]
    return ops


def image_transforms(channels: int, augment=None, seed: int = 0, mean=None, std=None, max_pixel: float = 255.0):
    """Normalise to [-1, 1] (or, given a pretrained backbone's processor's mean and std per channel and the pixel
    value its rescaling takes to 1: (pixel / max_pixel - mean) / std); in training first flip (when asked), shift,
    rotate and scale, and RandAugment's operations when ``augment.rand_ops`` > 0 (albumentations, seeded): the
    augmentation works on pixels, before any normalisation."""
    import albumentations as A  # here, not at the top: a cached pipeline run never loads images
    from albumentations.pytorch import ToTensorV2

    steps = []
    if augment is not None and augment.horizontal_flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if augment is not None and augment.rand_ops:
        steps.append(A.SomeOf(list(rand_augment(augment.rand_magnitude, channels).values()), n=augment.rand_ops, p=1))
    if augment is not None:
        steps.append(
            A.Affine(
                translate_percent=(-augment.max_shift, augment.max_shift),
                rotate=(-augment.max_rotate, augment.max_rotate),
                scale=augment.scale_range,
                p=0.9,
            )
        )
    mean, std = mean or (0.5,) * channels, std or (0.5,) * channels
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=max_pixel), ToTensorV2()]
    return A.Compose(steps, seed=seed)


def image_pixels(image: Image.Image, channels: int, size: int, resample: int = Image.Resampling.BILINEAR) -> np.ndarray:
    """An (H, W, C) uint8 array at size x size with the requested channels (resized with PIL's resample filter:
    a pretrained backbone's processor names its own)."""
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling(resample))
    pixels = np.asarray(image)
    return pixels[:, :, None] if channels == 1 else pixels


def read_image(source, channels: int, size: int, resample: int = Image.Resampling.BILINEAR) -> np.ndarray:
    """image_pixels of an image file (a path or a file object)."""
    return image_pixels(Image.open(source), channels, size, resample)


# ---- speech -------------------------------------------------------------------------------
def fit_length(clip: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Exactly num_samples: zero-padded or cut at the end."""
    return torch.nn.functional.pad(clip, (0, max(0, num_samples - len(clip))))[:num_samples]


def read_clip(source, num_samples: int, sample_rate: int | None = None) -> torch.Tensor:
    """A mono float32 clip of exactly num_samples from an audio file (a path or a file object),
    resampled to sample_rate when one is given and the file has another."""
    samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    clip = torch.from_numpy(samples.mean(axis=1))
    return fit_length(resample(clip, rate, sample_rate or rate), num_samples)


RATE_STEP = 50  # Hz: a foreign sample rate is rounded to a multiple of this when resampling it exactly is too costly
MAX_RESAMPLE_PHASES = 1000  # the largest rate / gcd(rate, target rate) resampled exactly (the filter bank's size)


def resample(waveform: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """waveform from rate to target Hz with torchaudio's windowed-sinc filter, at bounded cost: a rate that shares no
    large divisor with the target (44101 Hz against 16000 Hz) would need a polyphase filter bank of gigabytes, so one
    needing more than MAX_RESAMPLE_PHASES phases is taken as the nearest multiple of RATE_STEP (50 Hz: an error of
    at most 0.3 % in speed and pitch at 8 kHz, less above)."""
    if rate // math.gcd(rate, target) > MAX_RESAMPLE_PHASES:
        rate = max(RATE_STEP, round(rate / RATE_STEP) * RATE_STEP)
    if rate == target:
        return waveform
    import torchaudio  # only audio at a foreign rate needs it

    return torchaudio.functional.resample(waveform, rate, target)


# ---- text ---------------------------------------------------------------------------------
def read_text_csv(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def train_tokenizer(texts: list[str], vocab_size: int, reversible: bool = False, masking: bool = False) -> Tokenizer:
    """A byte-pair-encoding subword vocabulary learned from the training texts.

    For classification: NFKC-normalised and split at whitespace and punctuation. ``reversible`` (translation):
    no normalizer and SentencePiece-style Metaspace pieces ("▁" marks a word start) with the matching decoder, so
    ``tokenizer.decode(tokenizer.encode(s).ids) == s`` for text made of characters seen in training; with BOS and
    EOS tokens to start and end a generated sentence. ``masking`` (a pretrain stage's masked-token objective): a
    [MASK] token after the others, the placeholder of a hidden token.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    if reversible:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    else:
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special_tokens = [PAD, UNK, BOS, EOS] if reversible else [PAD, UNK]
    special_tokens += [MASK] * masking
    tokenizer.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False)
    )
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: list[str], max_len: int) -> list[torch.Tensor]:
    return [
        torch.tensor(encoding.ids[:max_len] or [tokenizer.token_to_id(UNK)])
        for encoding in tokenizer.encode_batch(texts)
    ]


def pad_token_batch(batch):
    ids, labels = zip(*batch)
    return pad_sequence(ids, batch_first=True, padding_value=0), torch.tensor(labels)


# ---- translation --------------------------------------------------------------------------
def read_parallel(root: Path, split: str, languages: tuple[str, str]) -> tuple[list[str], list[str]]:
    """The source and target sentences of a prepared split (one per line, line-aligned)."""
    source, target = (
        root.joinpath(f"{split}.{lang}").read_text(encoding="utf-8").split("\n")[:-1] for lang in languages
    )
    return source, target


def encode_targets(tokenizer: Tokenizer, sentences: list[str], max_len: int) -> list[torch.Tensor]:
    """[BOS] target token ids [EOS], at most max_len in all."""
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    return [torch.tensor([bos, *encoding.ids[: max_len - 2], eos]) for encoding in tokenizer.encode_batch(sentences)]


def pad_pair_batch(batch):
    sources, targets = zip(*batch)
    return pad_sequence(sources, batch_first=True, padding_value=0), pad_sequence(
        targets, batch_first=True, padding_value=0
    )
