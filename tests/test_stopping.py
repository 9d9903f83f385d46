"""A SIGTERM whose exception was lost (swallowed where the handler happened to run) still stops the training, at the
next batch (tasks/stopping.py); a stop handled before the training began does not."""

import os
import signal

import pytest
import torch

from tasks import stopping
from tasks.kinds import get
from tasks.reproducibility import set_seeds
from tasks.training.loop import fit
from tests.test_loop import image_project  # noqa: F401 (the fixture)


class Stopped(BaseException):
    """What the test's SIGTERM handler raises, as Prefect's raises TerminationSignal."""


@pytest.fixture
def watching():
    """The command's setup (flows/cli.py main): the signals written to the pipe, a SIGTERM handler that raises;
    both put back afterwards."""
    previous = signal.signal(signal.SIGTERM, lambda number, frame: (_ for _ in ()).throw(Stopped(number)))
    previous_fd = signal.set_wakeup_fd(-1)
    stopping.watch()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous)
        stopping._pipe = None


def sigterm_swallowed() -> None:
    """A SIGTERM delivered while code that swallows every exception runs (as a __del__ called by the collector)."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs, and raises, before the next line
    except Stopped:  # lost, as "Exception ignored in ..." loses it
        return
    raise AssertionError("the handler did not run")


def test_a_stop_whose_exception_was_lost_raises_at_the_next_check(watching):
    sigterm_swallowed()
    with pytest.raises(Stopped):
        stopping.raise_if_stopped()
    stopping.raise_if_stopped()  # read once: it is not raised again


def test_a_stop_before_the_training_began_is_forgotten(watching):
    sigterm_swallowed()
    stopping.forget()
    stopping.raise_if_stopped()


def test_the_training_loop_stops_at_the_next_batch_when_a_stop_was_lost(watching, image_project):  # noqa: F811
    project, section = image_project
    spec = get("image")
    set_seeds(0)
    splits = spec.load_splits(project / "data", section, 0, None)
    model = spec.build_model(spec.model_args(section, splits, None))
    train = section.train.model_copy(update={"epochs": 3, "max_batches_per_epoch": 2, "patience": None})
    epochs = []

    def lose_a_stop_in_epoch_one(epoch, metrics):
        epochs.append(epoch)
        if epoch == 1:
            sigterm_swallowed()

    with pytest.raises(Stopped):
        fit(model, splits, train, torch.device("cpu"), 0, lose_a_stop_in_epoch_one, spec)
    assert epochs == [1]  # the second epoch's first batch raised
