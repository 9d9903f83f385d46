"""The training loop: batches of similar length for variable-length inputs, and training resumed after a kill."""

import copy
import math
import pickle

import pytest
import torch

from tasks.data.builtin_image import generate_image_dataset
from tasks.kinds import get
from tasks.params import load_params
from tasks.reproducibility import set_seeds
from tasks.training import ema, loop, resume
from tasks.training.loop import LengthBatches, fit, make_loader
from tests.conftest import IMAGE, tiny_params, write_params


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


# ---- resuming an interrupted training (tasks/training/resume.py) -----------------------------------------------


class Stop(Exception):
    """Stands for a kill: the process ends after an epoch's report, before its state is saved."""


@pytest.fixture(scope="module")
def image_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("resume")
    params = load_params(write_params(project, tiny_params()))
    # a small validation split: every epoch validates, and these tests train many short epochs
    generate_image_dataset(project / "data", image_size=params.task(IMAGE).data.image_size, digit_size=26, seed=0,
                           val_fraction=0.03, test_fraction=0.03)  # fmt: skip
    return project, params.task(IMAGE)


def train_images(project, section, state_file, stop_after: int | None = None, plans: list | None = None,
                 snapshots: dict | None = None, **train):  # fmt: skip
    """A fresh process's training of the image model (augmented, shuffled): 3 epochs of 3 batches unless train says
    otherwise; a time budget's plan (steps, steps per epoch, first epoch's seconds, pace) is appended to plans, and
    each epoch's final weights go to snapshots[epoch]."""
    spec = get("image")
    set_seeds(0)
    splits = spec.load_splits(project / "data", section, 0, None)
    model = spec.build_model(spec.model_args(section, splits, None))
    train = section.train.model_copy(update={"epochs": 3, "max_batches_per_epoch": 3, "patience": None, **train})
    history, resumed = {}, []

    def on_epoch_end(epoch, metrics):
        history[epoch] = {name: value for name, value in metrics.items() if name != "train_samples_per_second"}
        if snapshots is not None:
            snapshots[epoch] = copy.deepcopy(model.state_dict())
        if epoch == stop_after:
            raise Stop

    try:
        best = fit(model, splits, train, torch.device("cpu"), 0, on_epoch_end, spec, state_file, resumed.append,
                   on_plan=lambda *plan: plans.append(plan))  # fmt: skip
    except Stop:
        return None, history, resumed
    return {"best": best, "weights": model.state_dict()}, history, resumed


def test_training_resumed_after_a_kill_ends_exactly_as_an_uninterrupted_one(image_project, tmp_path):
    project, section = image_project
    whole, whole_history, _ = train_images(project, section, tmp_path / "whole.pt")
    state_file = tmp_path / "stopped.pt"
    _, first_history, _ = train_images(project, section, state_file, stop_after=2)  # epoch 1 saved, 2 lost
    assert resume.load(state_file)["epoch"] == 1
    again, again_history, resumed = train_images(project, section, state_file)
    assert resumed == [1] and sorted(again_history) == [2, 3]
    assert {**first_history, **again_history} == whole_history  # the same losses and accuracies, epoch by epoch
    assert again["best"] == whole["best"]
    assert all(torch.equal(again["weights"][name], weights) for name, weights in whole["weights"].items())


def test_early_stopping_stops_after_patience_epochs_without_improvement_and_a_resumed_run_stops_there_too(
    image_project, tmp_path
):
    """A learning rate too small to move a float32 weight: validation never beats epoch 1, so a patience of 2 ends
    the training after epoch 3 of 8, keeping epoch 1."""
    project, section = image_project
    stuck = {"epochs": 8, "patience": 2, "lr": 1e-12, "max_batches_per_epoch": 1}
    whole, whole_history, _ = train_images(project, section, tmp_path / "whole.pt", **stuck)
    assert sorted(whole_history) == [1, 2, 3]
    assert whole["best"]["best_epoch"] == 1 and whole["best"]["stopped_epoch"] == 3
    state_file = tmp_path / "stopped.pt"
    train_images(project, section, state_file, stop_after=3, **stuck)  # killed before epoch 3's state was saved
    again, again_history, resumed = train_images(project, section, state_file, **stuck)
    assert resumed == [2] and sorted(again_history) == [3] and again["best"] == whole["best"]
    # killed after the stopping epoch's state was saved: the resumed run trains nothing more
    after, after_history, resumed = train_images(project, section, tmp_path / "whole.pt", **stuck)
    assert resumed == [3] and after_history == {} and after["best"] == whole["best"]
    # composes with checkpoint averaging: a stop before the last epochs leaves no mean, and the best epoch is kept
    averaged, _, _ = train_images(project, section, None, average_epochs=3, **stuck)
    assert averaged["best"] == whole["best"] and same_weights(averaged["weights"], whole["weights"])


class RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_state_file_crafted_to_run_code_is_refused(tmp_path, capsys):
    crafted = tmp_path / "state.pt"
    torch.save({"epoch": 1, "payload": RunsCode()}, crafted)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        resume.load(crafted)
    assert "this ran while loading" not in capsys.readouterr().out


def test_the_length_bucketing_sampler_resumes_at_its_epoch():
    lengths = list(range(1, 41))
    splits = type("Splits", (), {"train": lengths, "lengths": lengths, "collate_fn": None})()
    loader = make_loader(splits.train, splits, 8, shuffle=True, seed=1)
    list(loader.batch_sampler), list(loader.batch_sampler)
    state = resume.loader_state(loader)
    expected = list(loader.batch_sampler)
    fresh = make_loader(splits.train, splits, 8, shuffle=True, seed=1)
    resume.set_loader_state(fresh, state)
    assert list(fresh.batch_sampler) == expected


# ---- time-budgeted training (tasks/training/budget.py) ----------------------------------------------------------


def same_weights(one: dict, other: dict) -> bool:
    return all(torch.equal(one[name], weights) for name, weights in other.items())


class Clock:
    """A clock for the loop that advances one second each time it is read: the loop reads it at an epoch's start,
    halfway, at the end of its steps and when it plans, so every epoch takes the same made-up time."""

    def __init__(self):
        self.now = -1.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
def test_a_budgeted_training_is_the_training_of_the_steps_it_planned(image_project, monkeypatch, schedule):
    project, section = image_project
    monkeypatch.setattr(loop, "time", Clock())
    plans = []  # 30 s; epoch 1: 0.5 s a step, 1 s to validate; then 3 steps and 2 s between epochs: 4 s an epoch
    budgeted, history, _ = train_images(project, section, None, plans=plans, epochs=40, warmup_epochs=1,
                                        budget_minutes=0.5, lr_schedule=schedule)  # fmt: skip
    # after epoch 1, 27 s left: 10 epochs of 2.5 s and 2 steps; after epoch 2, 22 s: 5 epochs of 4 s
    steps = [steps for _, steps, *_ in plans]
    if schedule == "cosine":  # once, after warm-up
        assert [epoch for epoch, *_ in plans] == [1] and steps == [35]
    else:  # after each epoch while the decay has not begun (it begins after step 17 of 21)
        assert [epoch for epoch, *_ in plans] == [1, 2, 3, 4, 5] and steps == [35, 21, 21, 21, 21]
    epochs = math.ceil(steps[-1] / 3)
    assert sorted(history) == list(range(1, epochs + 1))  # the plan, not the cap, was trained
    fixed, fixed_history, _ = train_images(project, section, None, epochs=40, max_steps=steps[-1], warmup_epochs=1,
                                           lr_schedule=schedule)  # fmt: skip
    assert fixed_history == history and fixed["best"] == budgeted["best"]
    assert same_weights(fixed["weights"], budgeted["weights"])  # the rates trained were the final plan's


def test_max_steps_cuts_the_last_epoch_short(image_project):
    project, section = image_project
    seven, seven_history, _ = train_images(project, section, None, epochs=10, max_steps=7)  # epochs of 3 batches
    nine, nine_history, _ = train_images(project, section, None, epochs=3)
    assert sorted(seven_history) == sorted(nine_history) == [1, 2, 3]
    assert seven_history[3] != nine_history[3] and not same_weights(seven["weights"], nine["weights"])


def test_a_resumed_budgeted_training_keeps_its_plan(image_project, tmp_path):
    project, section = image_project
    state_file, plans = tmp_path / "budgeted.pt", []
    budget = {
        "epochs": 4,
        "budget_minutes": 60.0,
        "warmup_epochs": 1,
    }  # a plan of the cap, 4 epochs, so a stop after 2 leaves 2
    train_images(project, section, state_file, stop_after=2, plans=plans, **budget)
    assert {steps for _, steps, *_ in plans} == {4 * 3}  # 4 epochs of 3 batches
    planned = len(plans)
    fast = {**budget, "budget_minutes": 1e-6}  # the same stage run again would plan 1 epoch; it resumes instead
    again, history, resumed = train_images(project, section, state_file, plans=plans, **fast)
    assert resumed == [1] and sorted(history) == [2, 3, 4] and len(plans) == planned  # no new plan
    whole, _, _ = train_images(project, section, None, epochs=4, warmup_epochs=1, lr_schedule="wsd")
    assert same_weights(whole["weights"], again["weights"])


# ---- weight averaging (tasks/training/ema.py) -------------------------------------------------------------------


def test_the_weight_average_forgets_the_initial_weights_first_then_follows_its_decay():
    assert ema.decay_after(0, 0.999) == 0.1 and ema.decay_after(90, 0.999) == 0.91
    assert ema.decay_after(10**6, 0.999) == 0.999
    model = torch.nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor(0))  # integer buffers are copied, not averaged
    average = ema.averaged(model, decay=0.5)
    history = []
    for step in range(4):
        with torch.no_grad():
            model.weight.fill_(float(step))
            model.count.fill_(step)
        average.update_parameters(model)
        history.append(average.module.weight[0, 0].item())
    # step 0 copies; then the decays are min(0.5, 2/11), min(0.5, 3/12), min(0.5, 4/13)
    expected = [0.0]
    for updates, value in zip((1, 2, 3), (1.0, 2.0, 3.0)):
        decay = min(0.5, (1 + updates) / (10 + updates))
        expected.append(decay * expected[-1] + (1 - decay) * value)
    assert history == pytest.approx(expected) and average.module.count.item() == 3


def test_training_with_a_weight_average_keeps_the_average_and_resumes_exactly(image_project, tmp_path):
    project, section = image_project
    raw, _, _ = train_images(project, section, None, epochs=3)
    whole, whole_history, _ = train_images(project, section, None, epochs=3, ema_decay=0.9)
    assert not same_weights(whole["weights"], raw["weights"])  # the same steps, but the average kept
    state_file = tmp_path / "averaged.pt"
    train_images(project, section, state_file, stop_after=2, ema_decay=0.9)
    again, again_history, resumed = train_images(project, section, state_file, ema_decay=0.9)
    assert resumed == [1] and again_history[3] == whole_history[3] and again["best"] == whole["best"]
    assert same_weights(again["weights"], whole["weights"])


def test_the_checkpoint_mean_is_the_plain_mean_and_starts_again_at_zero():
    model = torch.nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor(0))  # integer buffers are copied, not averaged
    mean = ema.uniform(model)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model.weight.fill_(value)
            model.count.fill_(int(value))
        mean.update_parameters(model)
    assert mean.module.weight[0, 0].item() == pytest.approx(3.0) and mean.module.count.item() == 6
    mean.n_averaged.zero_()
    mean.update_parameters(model)
    assert mean.module.weight[0, 0].item() == 6.0 and int(mean.n_averaged) == 1


def test_the_checkpoint_mean_follows_a_window_that_a_growing_plan_moves():
    model = torch.nn.Linear(1, 1)
    mean = ema.uniform(model)
    for epoch, first in ((1, 3), (2, 3), (3, 3), (4, 3), (5, 5)):  # 4 epochs planned (window 3-4), then 6 (5-6)
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        loop.add_to_mean(mean, model, epoch, first)
    assert int(mean.n_averaged) == 1 and mean.module.weight.item() == 5.0  # epochs 3 and 4 left behind


def test_the_mean_replaces_the_best_epoch_only_when_it_validates_better():
    model = torch.nn.Linear(1, 1)
    mean = ema.uniform(model)
    mean.update_parameters(model)
    mean.update_parameters(model)
    best = {"val_accuracy": 0.5, "epoch": 3, "state": "epoch 3's weights"}
    worse = loop.keep_better_mean(mean, best, {"val_accuracy": 0.4})
    assert worse == {"averaged_val_accuracy": 0.4, "best_val_accuracy": 0.5, "averaged_epochs": 0}
    assert best["state"] == "epoch 3's weights"
    better = loop.keep_better_mean(mean, best, {"val_accuracy": 0.6})
    assert better == {"averaged_val_accuracy": 0.6, "best_val_accuracy": 0.6, "averaged_epochs": 2}
    assert same_weights(best["state"], mean.module.state_dict())


def test_training_with_checkpoint_averaging_keeps_what_validates_better_and_resumes_exactly(image_project, tmp_path):
    project, section = image_project
    snapshots = {}
    whole, whole_history, _ = train_images(project, section, None, epochs=4, average_epochs=3, snapshots=snapshots)
    best = whole["best"]
    mean = {name: (snapshots[2][name] + snapshots[3][name] + snapshots[4][name]) / 3 for name in snapshots[4]}
    best_epoch = max(whole_history, key=lambda epoch: whole_history[epoch]["val_accuracy"])
    assert best["best_val_accuracy"] == max(best["averaged_val_accuracy"], whole_history[best_epoch]["val_accuracy"])
    if best["averaged_epochs"]:  # the mean validated better: its weights are kept (with this seed, it does not)
        assert best["averaged_epochs"] == 3
        assert all(torch.allclose(whole["weights"][name], weights, atol=1e-6) for name, weights in mean.items())
    else:
        assert same_weights(whole["weights"], snapshots[best_epoch])
    state_file = tmp_path / "averaged.pt"
    train_images(project, section, state_file, stop_after=4, epochs=4, average_epochs=3)  # epochs 2 and 3 averaged
    again, _, resumed = train_images(project, section, state_file, epochs=4, average_epochs=3)
    assert resumed == [3] and again["best"] == best and same_weights(again["weights"], whole["weights"])


def test_training_with_batch_mixing_mixes_and_resumes_exactly(image_project, tmp_path):
    project, section = image_project
    mixing = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}
    raw, _, _ = train_images(project, section, None)
    whole, whole_history, _ = train_images(project, section, None, **mixing)
    assert not same_weights(whole["weights"], raw["weights"])
    state_file = tmp_path / "mixed.pt"
    train_images(project, section, state_file, stop_after=2, **mixing)
    again, again_history, resumed = train_images(project, section, state_file, **mixing)
    assert resumed == [1] and again_history[3] == whole_history[3] and again["best"] == whole["best"]
    assert same_weights(again["weights"], whole["weights"])


def test_precision_by_default_is_bf16_on_a_gpu_that_has_it_and_fp32_elsewhere(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert loop.autocast_dtype(None, cpu) is None and loop.autocast_dtype("fp32", gpu) is None
    assert loop.autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # no GPU here to ask
    assert loop.autocast_dtype(None, gpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # e.g. a T4 or V100
    assert loop.autocast_dtype(None, gpu) is None


def test_bf16_training_runs_its_forward_passes_in_bf16_and_is_reproducible(image_project):
    """The CPU's autocast runs the same code path a GPU's does: the forward in bfloat16, the weights in float32."""
    project, section = image_project
    full, full_history, _ = train_images(project, section, None)
    half, half_history, _ = train_images(project, section, None, precision="bf16")
    again, again_history, _ = train_images(project, section, None, precision="bf16")
    assert same_weights(half["weights"], again["weights"]) and half_history == again_history
    assert not same_weights(half["weights"], full["weights"])  # the products were rounded to bf16
    assert all(weights.dtype == full["weights"][name].dtype for name, weights in half["weights"].items())
    assert abs(half_history[3]["train_loss"] - full_history[3]["train_loss"]) < 0.1  # the same training, rounded
