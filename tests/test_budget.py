"""Time-budgeted training's plan (tasks/training/budget.py) and its params; the loop's side is in tests/test_loop.py."""

import pytest
import torch

from flows.experiments import replay_plan
from tasks.params import ParamsError, override
from tasks.training.budget import (
    PLANNED_STEPS,
    Clock,
    Pace,
    WarmupCosine,
    WarmupStableDecay,
    measured_pace,
    planned_steps,
)
from tests.conftest import IMAGE, tiny_params


def test_the_plan_fills_the_budget_to_the_nearest_step_within_its_bounds():
    pace = Pace(step_seconds=3.0, validation_seconds=8.0)  # an epoch of 10 steps: 38 s
    # 562 s left after the first epoch: 14 whole epochs (532 s), then 22 s for a last one's 7 steps and its validation
    assert planned_steps(562, 10, pace, steps_per_epoch=10, most=1000) == 157
    assert planned_steps(560, 10, Pace(3.2, 8.0), steps_per_epoch=10, most=1000) == 150  # exactly 15 epochs
    assert planned_steps(562, 10, pace, steps_per_epoch=10, most=100) == 100  # the cap (epochs, max_steps)
    assert planned_steps(-140, 10, pace, steps_per_epoch=10, most=100) == 10  # the first epoch alone is over budget
    assert planned_steps(562, 10, pace, steps_per_epoch=10, most=5) == 5  # max_steps inside the first epoch
    assert planned_steps(120, 50, pace, steps_per_epoch=10, most=1000) == 80  # a revision after 5 epochs


def test_the_pace_leaves_out_what_the_first_batches_cost_once_then_follows_the_latest_epochs():
    # 10 batches: the first five took 8 s (start-up), the last five 5 s; validation 1 s
    assert measured_pace(10, halfway=8.0, trained=13.0, validated=14.0) == Pace(1.0, 1.0)
    assert measured_pace(1, halfway=0.0, trained=3.0, validated=4.0) == Pace(3.0, 1.0)  # one batch: all of it
    clock = Clock()
    clock.epoch(started=100.0, trained=13.0)
    assert clock.pace(10, halfway=8.0, now=114.0) == (Pace(1.0, 1.0), 14.0)
    clock.epoch(started=116.0, trained=12.0)  # 16 s a cycle: training 13, validation 1, report and saved state 2
    pace, used = clock.pace(10, halfway=6.0, now=129.0)  # slower now; this epoch's report and state are to come
    assert pace == Pace(1.2, 3.0) and used == pytest.approx(31.0)


def test_the_cosine_schedule_warms_up_then_decays_to_zero_and_its_plan_is_saved_with_it():
    plan = WarmupCosine(total_steps=100, warmup_steps=10)
    assert [plan(step) for step in (0, 9)] == [0.1, 1.0]
    assert plan(55) == pytest.approx(0.5) and plan(100) == pytest.approx(0.0)
    assert plan.free_until() == 10  # a plan may change in warm-up only
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    plan.total_steps = 40  # a budget's plan
    restored = WarmupCosine(total_steps=100, warmup_steps=10)
    torch.optim.lr_scheduler.LambdaLR(optimizer, restored).load_state_dict(schedule.state_dict())
    assert restored.total_steps == 40


def test_the_wsd_schedule_keeps_the_full_rate_until_its_last_fifth_so_its_plan_can_change_until_then():
    plan = WarmupStableDecay(total_steps=110, warmup_steps=10)
    assert plan.free_until() == 90  # the decay: the last 20 of the 100 steps after warm-up
    assert [plan(step) for step in (0, 9, 10, 89, 90)] == [0.1, 1.0, 1.0, 1.0, 1.0]
    assert plan(100) == pytest.approx(0.5) and plan(110) == pytest.approx(0.0)
    longer = WarmupStableDecay(total_steps=210, warmup_steps=10)
    assert all(longer(step) == plan(step) for step in range(91))  # the rates so far do not depend on the plan
    assert plan.at_least(90) == 110 and plan.at_least(92) == 112  # a shorter plan still decays after what is done
    assert WarmupStableDecay(112, 10).free_until() == 92 > WarmupStableDecay(111, 10).free_until()


def tiny():
    from tasks.params import Params

    return Params.model_validate(tiny_params())


def test_a_budget_needs_a_warmup_epoch_and_a_positive_number_of_minutes():
    cosine = {
        f"tasks.{IMAGE}.train.budget_minutes": 10,
        f"tasks.{IMAGE}.train.warmup_epochs": 0,
        f"tasks.{IMAGE}.train.lr_schedule": "cosine",
    }
    with pytest.raises(ParamsError, match=rf"tasks\.{IMAGE}\.train.*warmup_epochs >= 1"):
        override(tiny(), cosine)
    override(tiny(), {**cosine, f"tasks.{IMAGE}.train.lr_schedule": "wsd"})  # its plan waits for the decay, not warm-up
    with pytest.raises(ParamsError, match=rf"tasks\.{IMAGE}\.train\.budget_minutes"):
        override(tiny(), {f"tasks.{IMAGE}.train.budget_minutes": 0})


def test_reproduce_trains_the_recorded_plan_without_the_budget():
    budget = {
        f"tasks.{IMAGE}.train.budget_minutes": 10,
        f"tasks.{IMAGE}.train.epochs": 100,
        f"tasks.{IMAGE}.train.warmup_epochs": 1,
    }
    budgeted = override(tiny(), budget)
    replayed = replay_plan(budgeted, IMAGE, {PLANNED_STEPS: 157.0, "test_accuracy": 0.9})
    train = replayed.task(IMAGE).train
    assert (train.max_steps, train.budget_minutes, train.lr_schedule) == (157, None, "wsd")
    assert replay_plan(tiny(), IMAGE, {PLANNED_STEPS: 157.0}) == tiny()  # no budget: as recorded
