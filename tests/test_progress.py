"""Progress of long loops is logged as throttled lines with the count, the rate and the time left."""

import logging

from tasks import progress


def test_a_long_loop_logs_count_rate_and_time_left(monkeypatch, caplog):
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)  # log every update
    with caplog.at_level(logging.INFO, logger="attnflow"):
        for _ in progress.counted(list(range(4)), "importing images", "images"):
            pass
    lines = [record.getMessage() for record in caplog.records if record.name == "attnflow"]
    assert lines and lines[-1].startswith("importing images: 4/4 images (100%)")
    assert all("left" in line and "images/s" in line for line in lines)


def test_a_short_loop_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="attnflow"), progress.progress(3, "epoch 1/1", "batch") as bar:
        bar.update(3)
    assert not [record for record in caplog.records if record.name == "attnflow"]
