"""The training loop's batching: batches of similar length for variable-length inputs."""

from tasks.training.loop import LengthBatches


def test_length_batches_cover_every_item_once_with_little_padding():
    lengths = [(i * 37) % 100 + 1 for i in range(103)]  # 1..100, shuffled
    sampler = LengthBatches(lengths, batch_size=10, seed=3)
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(103)) and len(epoch) == len(sampler) == 11
        for batch in epoch:  # similar lengths: within the jitter (10 %) of each other
            assert max(lengths[i] for i in batch) <= 1.1 * min(lengths[i] for i in batch) + 10
    assert first != second  # other batches, in another order, every epoch
    assert first == list(LengthBatches(lengths, batch_size=10, seed=3))  # seeded
