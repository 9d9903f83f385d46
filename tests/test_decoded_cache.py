"""Decoded items kept in memory (tasks/data/datasets.py DecodedCache): each file read once, within the budget, and
an augmented training split that reads from the cache draws exactly what it drew reading every time."""

import numpy as np
import torch

from tasks.data.datasets import DecodedCache
from tasks.kinds import get
from tasks.params import load_params
from tests.conftest import IMAGE, tiny_params, write_params


def test_each_item_is_read_once_until_the_budget_is_spent():
    reads = []

    def read(key):
        reads.append(key)
        return np.zeros(10, dtype=np.uint8)  # 10 bytes

    cache = DecodedCache(read, max_bytes=25)
    for _ in range(3):
        for key in ("a", "b", "c"):
            cache(key)
    assert reads == ["a", "b", "c", "c", "c"]  # two fit in 25 bytes; the third is read every time
    assert cache.bytes == 20


def test_an_augmented_image_split_draws_the_same_from_the_cache(tmp_path):
    from tasks.data.builtin_image import generate_image_dataset

    params = load_params(write_params(tmp_path, tiny_params()))
    generate_image_dataset(tmp_path / "data", image_size=params.task(IMAGE).data.image_size, seed=0)
    spec = get("image")
    for epoch in (1, 2):
        cached = spec.load_splits(tmp_path / "data", params.task(IMAGE), 0, None).train
        cached.set_epoch(epoch)
        first = [cached[index][0] for index in range(8)]  # read and cached
        again = [cached[index][0] for index in range(8)]  # from the cache, augmented again with the same seeds
        assert all(torch.equal(one, other) for one, other in zip(first, again))
