"""The monitor's parts on known data: answer features, PSI, the KS test, the alert rule, and the request log (rotation,
concurrent writers, no raw input)."""

import json
import math
import multiprocessing
import sqlite3
import traceback
from pathlib import Path

import numpy as np
import pytest

from tasks.evaluation.monitoring import answer_features, attention_entropy, reference
from tasks.monitoring.drift import (
    DRIFT,
    OK,
    PREDICTION,
    TOO_FEW,
    FeatureDrift,
    Thresholds,
    class_psi,
    compare,
    decide,
    feature_psi,
    ks_test,
    psi,
    quantile_edges,
)
from tasks.monitoring.request_log import RequestLog, log_answers

THRESHOLDS = Thresholds(psi=0.2, ks_pvalue=0.01, min_requests=50)
MODEL = {"name": "attnflow-digits", "version": "3", "alias": "champion", "run_id": "r1"}


def test_attention_entropy_is_0_on_one_token_and_1_when_even():
    assert attention_entropy([0.0, 1.0, 0.0]) == 0.0
    assert attention_entropy([0.25] * 4) == pytest.approx(1.0)
    assert attention_entropy([1.0]) == 0.0
    two_of_four = attention_entropy([0.5, 0.5, 0, 0])
    assert two_of_four == pytest.approx(math.log(2) / math.log(4))


def test_psi_by_hand():
    expected, actual = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert psi(expected, actual) == pytest.approx(0.4 * math.log(0.9 / 0.5) - 0.4 * math.log(0.1 / 0.5))
    assert psi(expected, expected) == 0.0


def test_quantile_bins_of_a_discrete_and_a_constant_feature():
    edges = quantile_edges(np.arange(1000))
    assert edges[0] < 0 and list(edges[1:]) == pytest.approx([*np.linspace(99.9, 899.1, 9), 999])
    assert list(quantile_edges([3, 3, 3, 4])[1:]) == pytest.approx([3.0, 3.1, 3.4, 3.7, 4.0])  # 3 is 70 %
    assert len(quantile_edges([1.0] * 50)) == 2  # below the constant, and the constant
    assert feature_psi([1.0] * 50, [1.0] * 20) == 0.0
    assert feature_psi([1.0] * 50, [2.0] * 20) > 5  # every value moved above the reference
    assert feature_psi([1.0] * 50, [0.5] * 20) > 5  # or below it
    assert feature_psi([1.0] * 50, [1.0] * 19 + [0.5]) == pytest.approx(0.05 * math.log(0.05 / 1e-4), rel=0.01)


def test_same_distribution_passes_and_a_shift_is_drift():
    generator = np.random.default_rng(0)
    reference_values = generator.normal(0, 1, 2000)
    same, shifted = generator.normal(0, 1, 500), generator.normal(1, 1, 500)
    assert feature_psi(reference_values, same) < 0.05
    assert ks_test(reference_values, same)[1] > 0.05
    assert feature_psi(reference_values, shifted) > 0.5  # one standard deviation: a large shift
    statistic, pvalue = ks_test(reference_values, shifted)
    assert statistic > 0.3 and pvalue < 1e-20
    wider = generator.normal(0, 3, 500)  # same mean, three times the spread: PSI sees it in the outer deciles
    assert feature_psi(reference_values, wider) > 0.5


def test_class_psi_counts_a_class_the_reference_never_predicted():
    counts = {"a": 50, "b": 50}
    assert class_psi(counts, ["a", "b"] * 20) == 0.0
    assert class_psi(counts, ["a"] * 40) > 1
    assert class_psi(counts, ["a", "b", "c"] * 10) > 0.2


def test_the_alert_rule():
    calm = [FeatureDrift("pixel_mean", 0.01, 0.05, 0.6), FeatureDrift(PREDICTION, 0.03)]
    assert decide(10, calm, THRESHOLDS).status == TOO_FEW
    assert decide(10, [FeatureDrift("pixel_mean", 9.0, 1.0, 0.0)], THRESHOLDS).status == TOO_FEW  # too few to tell
    verdict = decide(50, calm, THRESHOLDS)
    assert verdict.status == OK and verdict.drifted == () and "largest PSI 0.030 (prediction)" in verdict.reason
    by_psi = decide(50, [FeatureDrift("pixel_mean", 0.2, 0.05, 0.5), *calm[1:]], THRESHOLDS)
    assert by_psi.status == DRIFT and by_psi.drifted == ("pixel_mean",) and "PSI 0.200 >= 0.2" in by_psi.reason
    by_ks = decide(50, [FeatureDrift("pixel_std", 0.1, 0.3, 0.001), FeatureDrift(PREDICTION, 0.5)], THRESHOLDS)
    assert by_ks.drifted == ("pixel_std", PREDICTION) and "KS p 0.001 < 0.01" in by_ks.reason


def answer(label: str, summary: dict) -> dict:
    """A classifier's answer as served: its tokens spell out the input, which the log must leave out."""
    probabilities = {"a": 0.8, "b": 0.2} if label == "a" else {"a": 0.3, "b": 0.7}
    return {"label": label, "probabilities": probabilities, "attention": [0.5, 0.5], "attention_method": "rollout",
            "tokens": ["sec", "ret"], "input_summary": summary}  # fmt: skip


def test_reference_and_comparison_of_answers():
    answers = [answer("a", {"x": 1.0}), answer("b", {"x": 2.0}), answer("a", {"x": 3.0})]
    made = reference(answers, ["a", "b", "c"])
    assert made["count"] == 3 and made["predictions"] == {"a": 2, "b": 1, "c": 0}
    assert made["features"] == {"attention_entropy": [1.0] * 3, "confidence": [0.8, 0.7, 0.8], "x": [1.0, 2.0, 3.0]}
    assert answer_features(answers[0]) == {"x": 1.0, "confidence": 0.8, "attention_entropy": 1.0}
    drifts = compare(made, [answer_features(a) for a in answers], ["a", "b", "a"])
    assert [d.name for d in drifts] == ["attention_entropy", "confidence", "x", PREDICTION]
    assert all(d.psi == pytest.approx(0) for d in drifts)


def test_the_log_keeps_features_never_the_input(tmp_path):
    store = RequestLog(tmp_path / "log.sqlite")
    values = ["ein geheimer Satz", "noch einer"]
    logged = log_answers(store, MODEL, values, [answer("a", {"x": 1.0}), answer("b", {"x": 2.0}),
                                                {"translation": "no summary"}])  # fmt: skip
    assert logged == 2
    rows = store.since(0)
    assert [(r["prediction"], r["model"], r["version"], r["alias"], r["run_id"]) for r in rows] == [
        ("a", "attnflow-digits", "3", "champion", "r1"),
        ("b", "attnflow-digits", "3", "champion", "r1"),
    ]
    assert rows[0]["features"] == {"x": 1.0, "confidence": 0.8, "attention_entropy": 1.0}
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("log.sqlite*"))
    assert b"attnflow-digits" in stored  # the files are read as they are, WAL included
    assert not any(value.encode() in stored for value in [*values, "secret", '"sec"'])
    assert store.since(rows[1]["time"] + 1) == []


def test_rotation_keeps_the_newest_rows_and_the_watermark_survives_it(tmp_path):
    store = RequestLog(tmp_path / "log.sqlite", max_rows=5)
    for number in range(8):
        log_answers(store, MODEL, [], [answer("a", {"x": float(number)})])
    rows = store.since(0)
    assert [r["features"]["x"] for r in rows] == [3.0, 4.0, 5.0, 6.0, 7.0]
    store.mark_checked("r1", rows[-1]["id"])
    assert store.unchecked() == []
    log_answers(store, MODEL, [], [answer("b", {"x": 8.0})])
    log_answers(store, MODEL | {"run_id": "r2"}, [], [answer("b", {"x": 9.0})])
    assert [(r["run_id"], r["features"]["x"]) for r in store.unchecked()] == [("r1", 8.0), ("r2", 9.0)]
    with sqlite3.connect(store.path) as db:  # rows older than max_days go too
        db.execute("UPDATE requests SET time = time - 3 * 86400 WHERE id < 9")
    RequestLog(store.path, max_days=2).append([(1e12, "m", "1", None, "r3", "a", "{}")])
    assert [r["features"].get("x") for r in store.since(0)] == [8.0, 9.0, None]


def append_many(path: str, writer: int, count: int) -> None:
    """One writer process; its error, if any, goes to <path>.<writer>.error for the test to show."""
    try:
        store = RequestLog(path)
        for number in range(count):
            log_answers(store, MODEL, [], [answer("a", {"writer": float(writer), "n": float(number)})])
    except BaseException:
        Path(f"{path}.{writer}.error").write_text(traceback.format_exc())
        raise


def test_concurrent_writers_lose_no_row(tmp_path):
    """Four processes (server replicas on one host) append to one log at once. Started fresh ("spawn"), as replicas
    are: forked from this test process, which earlier tests leave with threads and after-fork hooks, a child could
    exit with 1 before it ran a line of the writer (seen after tests/test_monitor.py)."""
    path = tmp_path / "log.sqlite"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=append_many, args=(str(path), writer, 40)) for writer in range(4)]
    for process in writers:
        process.start()
    for writer, process in enumerate(writers):
        process.join(60)
        error = Path(f"{path}.{writer}.error")
        assert process.exitcode == 0, error.read_text() if error.exists() else f"writer {writer}: no error written"
    rows = RequestLog(path).since(0)
    assert len(rows) == 160 and len({r["id"] for r in rows}) == 160
    assert sorted(json.dumps(r["features"], sort_keys=True) for r in rows) == sorted(
        json.dumps({"attention_entropy": 1.0, "confidence": 0.8, "n": float(n), "writer": float(w)}, sort_keys=True)
        for w in range(4)
        for n in range(40)
    )


def test_speech_summary_hears_level_and_silence():
    import torch

    from tasks.kinds import get

    speech, generator = get("speech"), torch.Generator().manual_seed(0)
    quiet = 0.01 * torch.randn(16000, generator=generator)
    summary = speech.input_features(quiet, None)
    assert summary["rms_db"] == pytest.approx(-40, abs=0.5) and summary["silent_share"] == 0.0
    assert speech.input_features(10 * quiet, None)["rms_db"] == pytest.approx(-20, abs=0.5)
    padded = torch.cat([quiet[:4000], torch.zeros(12000)])  # a quarter-second clip, padded to the model's second
    assert speech.input_features(padded, None)["silent_share"] == 0.75
    assert speech.input_features(torch.zeros(16000), None) == {"rms_db": -120.0, "silent_share": 1.0}


def test_text_summary_counts_unknown_subwords():
    from tasks.data.datasets import encode_texts, train_tokenizer
    from tasks.kinds import get

    tokenizer = train_tokenizer(["der schnelle braune fuchs springt"] * 20, 60)
    known, garbage = encode_texts(tokenizer, ["der fuchs", "жжж ѯѯ"], 64)
    assert get("text").input_features(known, tokenizer)["unknown_rate"] == 0.0
    summary = get("text").input_features(garbage, tokenizer)
    assert summary == {"token_count": float(len(garbage)), "unknown_rate": 1.0}
