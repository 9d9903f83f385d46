"""Built-in image data: scikit-learn's bundled 8x8 handwritten digits (1797 real scans),
upscaled and written as PNGs in the folder-per-class layout users bring their own images in:

    out_dir/{train,val,test}/<digit>/<index>.png

The split is stratified and seeded, and PNG encoding is deterministic, so the same arguments
always give byte-identical files (DVC's md5 of data/ is reproducible).
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGIT_MAX = 16  # load_digits pixel values run 0..16


def generate_image_dataset(
    out_dir: Path, *, image_size: int = 32, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict:
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 (the digits are 8x8), got {image_size}")
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_val, test = train_test_split(indices, test_size=test_fraction, stratify=digits.target, random_state=seed)
    train, val = train_test_split(
        train_val, test_size=val_fraction / (1 - test_fraction), stratify=digits.target[train_val], random_state=seed
    )
    splits = {"train": train, "val": val, "test": test}
    for split, split_indices in splits.items():
        for index in sorted(split_indices):
            pixels = (digits.images[index] * (255 / DIGIT_MAX)).round().astype(np.uint8)
            image = Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BILINEAR)
            path = Path(out_dir) / split / str(digits.target[index]) / f"{index:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="PNG", optimize=False)
    return {
        "num_images": len(indices),
        "classes": [str(c) for c in digits.target_names],
        "splits": {split: len(ix) for split, ix in splits.items()},
    }
