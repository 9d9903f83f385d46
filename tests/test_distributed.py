"""Training in several processes (train.distributed.nproc, tasks/training/distributed.py): two CPU ranks over gloo
train the tiny image model to a checkpoint, the same one twice; batches are shared out whole; a failed rank fails
the training with its error; a bad nproc is refused naming the key."""

from types import SimpleNamespace

import pytest
import torch
from torch.multiprocessing import ProcessRaisedException

from tasks.data.builtin_image import generate_image_dataset
from tasks.kinds import get
from tasks.names import CHECKPOINT
from tasks.params import ParamsError, load_params
from tasks.reproducibility import set_seeds
from tasks.training.distributed import Ranks, launch
from tasks.training.job import train_and_save
from tasks.training.loop import LengthBatches, make_loader
from tests.conftest import IMAGE, tiny_params, write_params

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def image_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("ddp")
    raw = tiny_params()
    raw["tasks"][IMAGE]["train"].update(epochs=2, max_batches_per_epoch=3, distributed={"nproc": 2})
    params = load_params(write_params(project, raw))
    generate_image_dataset(
        project / "data" / IMAGE, image_size=params.task(IMAGE).data.image_size, digit_size=26, seed=0
    )
    return project, params


def train_in_two_processes(project, params, name: str) -> tuple[dict, list]:
    out_dir = project / "outputs" / name
    out_dir.mkdir(parents=True)
    events = []
    launch(2, CPU, train_and_save, (IMAGE, params, project, out_dir, None), lambda *event: events.append(event))
    return torch.load(out_dir / CHECKPOINT, weights_only=False), events


@pytest.mark.slow  # two trainings of two processes each (about 15 s): the slow tier
def test_two_processes_train_the_same_checkpoint_twice(image_project):
    project, params = image_project
    first, events = train_in_two_processes(project, params, "first")
    second, _ = train_in_two_processes(project, params, "second")
    assert [name for name, *_ in events] == ["started", "epoch", "epoch", "finished"]  # rank 0's alone
    started, epochs = events[0][1], [args for name, *args in events if name == "epoch"]
    assert started["train"] > 0 and [epoch for epoch, _ in epochs] == [1, 2]
    assert all(0 <= metrics["val_accuracy"] <= 1 for _, metrics in epochs)
    assert first["best_epoch"] in (1, 2) and first["best_val_accuracy"] == second["best_val_accuracy"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    assert all(torch.equal(weights, second["state_dict"][name]) for name, weights in first["state_dict"].items())


def test_the_shuffled_batches_of_several_processes_are_those_of_one_process_shared_out():
    items = list(range(103))
    splits = SimpleNamespace(train=items, lengths=None, collate_fn=lambda batch: batch)
    one = make_loader(items, splits, 10, shuffle=True, seed=3)
    several = [make_loader(items, splits, 10, shuffle=True, seed=3, ranks=Ranks(rank, 2)) for rank in (0, 1)]
    for _ in range(2):  # two epochs: the shuffle is drawn anew alike
        for batch, first, second in zip(one, *several, strict=True):
            padded = batch + batch[: len(batch) % 2]  # the last batch (3 items) repeats its first
            assert (first, second) == (padded[0::2], padded[1::2])


def test_an_items_augmentation_depends_on_the_seed_epoch_and_item_alone(image_project):
    project, params = image_project
    set_seeds(0)
    train = get("image").load_splits(project / "data" / IMAGE, params.task(IMAGE), 0, None).train
    train.set_epoch(2)
    in_order = [train[index][0] for index in (0, 1, 2)]
    alone = train[2][0]  # as a process that loads item 2 without 0 and 1 first
    assert torch.equal(alone, in_order[2])
    train.set_epoch(3)
    assert not torch.equal(train[2][0], alone)  # another epoch, another draw


def test_the_length_bucketed_batches_are_shared_out_whole():
    lengths = [(i * 37) % 100 + 1 for i in range(103)]
    whole = list(LengthBatches(lengths, batch_size=10, seed=3))
    shards = [list(LengthBatches(lengths, batch_size=10, seed=3, ranks=Ranks(rank, 2))) for rank in (0, 1)]
    for batch, first, second in zip(whole, *shards, strict=True):
        assert len(first) == len(second) == (len(batch) + 1) // 2  # the last batch (3 items) repeats one
        assert set(first) | set(second) == set(batch)
        assert len(set(first) & set(second)) == len(batch) % 2


def check_averaged_gradients(events, ranks: Ranks) -> None:
    """Each rank's half of a batch, gradients averaged: the gradients of the whole batch in one process; a layer no
    rank used keeps none."""
    torch.manual_seed(0)
    used, unused, inputs = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), torch.randn(8, 4)
    model = torch.nn.ModuleList([used, unused])
    used(inputs).square().mean().backward()
    whole = used.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    used(inputs[ranks.rank :: ranks.world]).square().mean().backward()
    ranks.average_gradients(model)
    torch.testing.assert_close(used.weight.grad, whole)
    assert unused.weight.grad is None


@pytest.mark.integration  # spawns processes: seconds each, kept out of `make test-fast`
def test_averaged_gradients_are_those_of_the_global_batch():
    launch(2, CPU, check_averaged_gradients, (), lambda *event: None)  # a failed check raises here


def fail_on_rank_one(events, ranks: Ranks) -> None:
    """A training whose second rank breaks while the first waits for it at an all-reduce."""
    if ranks.rank == 1:
        raise RuntimeError("rank one broke")
    ranks.sum(1.0, device=CPU)


@pytest.mark.integration  # spawns processes: seconds each, kept out of `make test-fast`
def test_a_failed_rank_fails_the_training_with_its_error():
    with pytest.raises(ProcessRaisedException, match="rank one broke"):
        launch(2, CPU, fail_on_rank_one, (), lambda *event: None)


@pytest.mark.parametrize(
    "distributed, batch_size, message",
    [
        ({"nproc": 0}, 64, f"tasks.{IMAGE}.train.distributed.nproc: Input should be greater than or equal to 1"),
        (
            {"nproc": 3},
            64,
            f"tasks.{IMAGE}.train: Value error, batch_size (64) must be divisible by distributed.nproc (3)",
        ),
        ({"nproc": 2, "rank": 1}, 64, f"tasks.{IMAGE}.train.distributed.rank: Extra inputs are not permitted"),
    ],
)
def test_a_bad_process_count_is_refused_naming_the_key(tmp_path, distributed, batch_size, message):
    raw = tiny_params()
    raw["tasks"][IMAGE]["train"].update(batch_size=batch_size, distributed=distributed)
    with pytest.raises(ParamsError) as error:
        load_params(write_params(tmp_path, raw))
    assert message in str(error.value)
