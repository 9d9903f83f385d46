"""Built-in image data: scikit-learn's bundled 8x8 handwritten digits (1797 real scans), written as PNGs in the
folder-per-class layout users bring their own images in:

    out_dir/{train,val,test}/<digit>/<index>.png

By default each digit is upscaled to fill the image; almost any model then scores near 100 %, and two models
cannot be told apart. With ``digit_size`` smaller than the image, each digit is drawn at ``digit_size`` pixels at a
random place on a dark canvas, and ``clutter`` fragments of other digits of the same split are scattered around it:
the "cluttered digits" task attention models were first measured on (Mnih et al. 2014, "Recurrent Models of Visual
Attention"). The model has to find the digit before reading it, and its attention map should land on it.

The split is stratified and seeded; each image's placement and clutter come from a generator seeded with
(seed, index), and PNG encoding is deterministic, so the same arguments always give byte-identical files (DVC's
md5 of data/ is reproducible).
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGIT_MAX = 16  # load_digits pixel values run 0..16


def generate_image_dataset(
    out_dir: Path,
    *,
    image_size: int = 32,
    digit_size: int | None = None,
    clutter: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    digit_size = digit_size or image_size
    if not 8 <= digit_size <= image_size:
        raise ValueError(f"digit_size must be between 8 and image_size ({image_size}), got {digit_size}")
    if clutter < 0:
        raise ValueError(f"clutter must be >= 0, got {clutter}")
    digits = load_digits()
    scans = (digits.images * (255 / DIGIT_MAX)).round().astype(np.uint8)
    indices = np.arange(len(digits.target))
    train_val, test = train_test_split(indices, test_size=test_fraction, stratify=digits.target, random_state=seed)
    train, val = train_test_split(
        train_val, test_size=val_fraction / (1 - test_fraction), stratify=digits.target[train_val], random_state=seed
    )
    splits = {"train": train, "val": val, "test": test}
    for split, split_indices in splits.items():
        others = np.sort(split_indices)  # clutter comes from the same split: no test pixels in training images
        for index in others:
            rng = np.random.default_rng([seed, index])
            pixels = draw(scans, index, others, rng, image_size=image_size, digit_size=digit_size, clutter=clutter)
            path = Path(out_dir) / split / str(digits.target[index]) / f"{index:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, format="PNG", optimize=False)
    return {
        "num_images": len(indices),
        "classes": [str(c) for c in digits.target_names],
        "splits": {split: len(ix) for split, ix in splits.items()},
    }


def resized(scan: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(scan).resize((size, size), Image.Resampling.BILINEAR))


def draw(scans, index, others, rng, *, image_size: int, digit_size: int, clutter: int) -> np.ndarray:
    """One image: the digit scans[index] at a random place, over clutter fragments (half a digit's side, cut from
    random other digits); the brighter pixel wins where they overlap."""
    if digit_size == image_size and not clutter:
        return resized(scans[index], image_size)
    canvas = np.zeros((image_size, image_size), dtype=np.uint8)
    piece = digit_size // 2
    for _ in range(clutter):
        source = resized(scans[rng.choice(others[others != index])], digit_size)
        top, left = rng.integers(0, digit_size - piece + 1, size=2)
        paste(canvas, source[top : top + piece, left : left + piece], rng)
    paste(canvas, resized(scans[index], digit_size), rng)
    return canvas


def paste(canvas: np.ndarray, patch: np.ndarray, rng) -> None:
    top, left = rng.integers(0, canvas.shape[0] - patch.shape[0] + 1, size=2)
    region = canvas[top : top + patch.shape[0], left : left + patch.shape[1]]
    np.maximum(region, patch, out=region)
