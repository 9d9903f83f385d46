"""Drift: how far the answers a served model gave since the last check are from its reference (the features of its
answers to the test split, tasks/evaluation/monitoring.py), and the rule that turns that into an alert (``decide``).

Per feature two figures: the population stability index over bins cut at the reference's deciles (how much the
distribution moved: 0.1 is usually read as a small change, 0.2 as a large one), and the two-sample Kolmogorov-Smirnov
test's p-value (whether the two samples could come from one distribution at all). The predicted classes get a PSI
over the classes. Pure functions: the monitor flow reads the log and the reference, and logs what these return.
"""

from dataclasses import dataclass

import numpy as np

PSI_BINS = 10  # deciles of the reference
PROPORTION_FLOOR = 1e-4  # an empty bin's share: PSI takes the log of each share, so none may be 0
PREDICTION = "prediction"  # the name the predicted-class distribution's figures go under

OK, DRIFT, TOO_FEW = "ok", "drift", "not enough requests"


def quantile_edges(reference, bins: int = PSI_BINS) -> np.ndarray:
    """The bin edges: just below the reference's minimum, its inner quantiles (1/bins, ..., (bins-1)/bins) and its
    maximum, each once. So values below or above everything the reference holds fall in bins of their own (a shift
    of a constant feature, like a clip's duration, shows), and a feature with few values (a token count) gets fewer
    bins."""
    values = np.asarray(reference, dtype=float)
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique([np.nextafter(values.min(), -np.inf), *inner, values.max()])


def shares(values, edges: np.ndarray) -> np.ndarray:
    """The share of values in each bin: bin i holds the values above exactly i edges, (edge i-1, edge i]."""
    bins = np.searchsorted(edges, np.asarray(values, dtype=float), side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins: sum of (a - e) * ln(a / e), shares
    floored at PROPORTION_FLOOR."""
    expected, actual = np.maximum(expected, PROPORTION_FLOOR), np.maximum(actual, PROPORTION_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_psi(reference, current, bins: int = PSI_BINS) -> float:
    """PSI of a feature's current values against its reference values, in the reference's quantile bins."""
    edges = quantile_edges(reference, bins)
    return psi(shares(reference, edges), shares(current, edges))


def ks_test(reference, current) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical distributions) and its
    p-value."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
    return float(result.statistic), float(result.pvalue)


def class_psi(reference_counts: dict[str, int], predictions: list[str]) -> float:
    """PSI of the predicted classes against the reference's (a class the reference never predicted counts as one
    more bin, so predictions of it show)."""
    classes = sorted({*reference_counts, *predictions})
    expected = np.array([reference_counts.get(name, 0) for name in classes], dtype=float)
    actual = np.array([predictions.count(name) for name in classes], dtype=float)
    return psi(expected / max(1, expected.sum()), actual / max(1, actual.sum()))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks_statistic: float | None = None  # None for the predicted classes: no order, so no KS test
    ks_pvalue: float | None = None


def compare(reference: dict, features: list[dict[str, float]], predictions: list[str]) -> list[FeatureDrift]:
    """Each feature the reference and the current answers both have, then the predicted classes."""
    drifts = []
    for name, expected in sorted(reference["features"].items()):
        current = [row[name] for row in features if name in row]
        if current and expected:
            drifts.append(FeatureDrift(name, feature_psi(expected, current), *ks_test(expected, current)))
    return drifts + [FeatureDrift(PREDICTION, class_psi(reference["predictions"], predictions))]


@dataclass(frozen=True)
class Thresholds:
    psi: float  # a feature whose PSI is at or above this has drifted
    ks_pvalue: float  # or whose KS p-value is below this
    min_requests: int  # below this many answers nothing is decided


@dataclass(frozen=True)
class Verdict:
    status: str  # OK, DRIFT or TOO_FEW
    drifted: tuple[str, ...]
    reason: str


def crossed(drift: FeatureDrift, thresholds: Thresholds) -> list[str]:
    """Which thresholds a feature crossed, as figures for the reason."""
    found = []
    if drift.psi >= thresholds.psi:
        found.append(f"PSI {drift.psi:.3f} >= {thresholds.psi:g}")
    if drift.ks_pvalue is not None and drift.ks_pvalue < thresholds.ks_pvalue:
        found.append(f"KS p {drift.ks_pvalue:.2g} < {thresholds.ks_pvalue:g}")
    return found


def decide(requests: int, drifts: list[FeatureDrift], thresholds: Thresholds) -> Verdict:
    """The alert rule: fewer than min_requests answers -> not enough to tell, pass; else drift when any feature (or
    the predicted classes) crossed a threshold (PSI at or above psi, or KS p-value below ks_pvalue), naming each
    with its figures; else ok."""
    if requests < thresholds.min_requests:
        return Verdict(TOO_FEW, (), f"not enough requests: {requests} < min_requests {thresholds.min_requests}")
    reasons = {drift.name: crossed(drift, thresholds) for drift in drifts}
    drifted = tuple(name for name, found in reasons.items() if found)
    if not drifted:
        worst = max(drifts, key=lambda drift: drift.psi, default=None)
        largest = f"; largest PSI {worst.psi:.3f} ({worst.name})" if worst else ""
        return Verdict(OK, (), f"no drift in {len(drifts)} features over {requests} requests{largest}")
    details = "; ".join(f"{name} ({', '.join(reasons[name])})" for name in drifted)
    return Verdict(DRIFT, drifted, f"drift in {', '.join(drifted)} over {requests} requests: {details}")
