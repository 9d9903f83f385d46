"""The built-in digits: the plain upscaled scans, and the cluttered layout (tasks/data/builtin_image.py)."""

import numpy as np
import pytest
from PIL import Image

from tasks.data.builtin_image import generate_image_dataset
from tasks.params import ParamsError, load_params, override
from tests.conftest import IMAGE


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def files(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.png"))}


def test_plain_digits_fill_the_image(tmp_path):
    summary = generate_image_dataset(tmp_path, image_size=16, seed=1)
    assert summary["splits"] == {"train": 1257, "val": 270, "test": 270}
    image = pixels(next((tmp_path / "test" / "0").iterdir()))
    assert image.shape == (16, 16) and image[:, 0].max() == 0 < image[4:12, 4:12].max()


def test_cluttered_digits_are_placed_at_random_among_fragments_and_reproducible(tmp_path):
    first, again, plain = tmp_path / "a", tmp_path / "b", tmp_path / "plain"
    generate_image_dataset(first, image_size=32, digit_size=16, clutter=4, seed=1)
    generate_image_dataset(again, image_size=32, digit_size=16, clutter=4, seed=1)
    generate_image_dataset(plain, image_size=32, digit_size=16, clutter=0, seed=1)
    assert files(first) == files(again)  # byte-identical: the DVC md5 is reproducible
    images = [pixels(p) for p in sorted((plain / "train").rglob("*.png"))[:50]]
    rows = {int(np.nonzero(image.max(axis=1))[0][0]) for image in images}
    assert len(rows) > 5  # the digit's place varies
    assert all((image > 0).sum() <= 16 * 16 for image in images)  # no clutter: only the digit's square is lit
    lit = [(pixels(p) > 0).sum() for p in sorted((first / "train").rglob("*.png"))[:50]]
    assert np.mean(lit) > 1.2 * np.mean([(image > 0).sum() for image in images])  # clutter adds ink


def test_a_digit_larger_than_the_image_is_refused_with_the_keys_named(tmp_path):
    with pytest.raises(ValueError, match="digit_size must be between 8 and image_size"):
        generate_image_dataset(tmp_path, image_size=16, digit_size=24)
    with pytest.raises(ParamsError, match=r"data.builtin.digit_size \(48\) must be at most data.image_size \(32\)"):
        override(load_params("params.yaml"), {f"tasks.{IMAGE}.data.builtin.digit_size": 48})
