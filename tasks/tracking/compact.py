"""Which compressed variant becomes the `compact` model, and its registration.

The rule (``choose``), on the variants the compress stage measured (tasks/evaluation/compress.py):
- a variant is eligible when its test metric is at most ``max_metric_drop`` worse than the float model's, relative
  to it and in the metric's direction (0.02: 2% lower accuracy or BLEU, 2% higher WER; when the float model's metric
  is 0, no drop at all); the float model is always eligible;
- of those, the fastest at batch 32 (p50 latency) wins, then the smallest.
The decision is logged on the run either way: tags ``compact_variant`` and ``compact_reason`` (every variant's
figures and why it won or was left out).

Registration (``register_compact``): the chosen variant's served model ("compact", logged by the compress stage) is
registered as a new version of the task's model ``attnflow-<task>`` with the alias ``compact``, only when the run's own
model became the champion: `compact` then always serves a compressed form of the champion. Otherwise the run is
tagged ``compact_registration`` with why not.
"""

from dataclasses import dataclass

import mlflow

from tasks.names import COMPACT_ARTIFACT
from tasks.schema import REFERENCE_VARIANT
from tasks.tracking.registry import CHAMPION


@dataclass(frozen=True)
class Choice:
    variant: str
    reason: str


def relative_drop(metric: float, reference: float, higher_is_better: bool) -> float:
    """How much worse metric is than reference, as a fraction of it (0 or below: not worse; inf: worse than 0)."""
    worse = (reference - metric) if higher_is_better else (metric - reference)
    if worse <= 0:
        return 0.0
    return worse / abs(reference) if reference else float("inf")


def choose(rows: list, max_metric_drop: float, metric: str, higher_is_better: bool = True) -> Choice:
    """The compact variant among the measured rows (objects with variant, size_mb, p50_ms_b32, metric; the float
    model's among them), by the rule in the module docstring."""
    reference = next(row for row in rows if row.variant == REFERENCE_VARIANT).metric
    eligible, excluded = [], []
    for row in rows:
        drop = relative_drop(row.metric, reference, higher_is_better)
        (eligible if drop <= max_metric_drop or row.variant == REFERENCE_VARIANT else excluded).append((row, drop))
    best, _ = min(eligible, key=lambda pair: (pair[0].p50_ms_b32, pair[0].size_mb))

    def figures(row, drop) -> str:
        return (f"{row.variant} ({row.p50_ms_b32:.2f} ms at batch 32, {row.size_mb:.3f} MB, {metric} "
                f"{row.metric:.4f}, {drop:.1%} worse)")  # fmt: skip

    others = [figures(row, drop) for row, drop in eligible if row is not best]
    reason = (f"{figures(best, relative_drop(best.metric, reference, higher_is_better))}: the fastest at batch 32 "
              f"(then the smallest) within {max_metric_drop:.1%} of float's {metric} {reference:.4f}")  # fmt: skip
    if others:
        reason += f"; slower: {', '.join(others)}"
    if excluded:
        reason += f"; too much worse: {', '.join(figures(row, drop) for row, drop in excluded)}"
    return Choice(best.variant, reason)


def register_compact(client, name: str, run_id: str, compressed: dict, promotion: dict | None) -> str | None:
    """Register the compress stage's compact model (compressed: its result) under name with the alias `compact`
    when promotion (the promote stage's result for run_id, None when the run was cached) made the run's model the
    champion; tag the run with what happened. Returns the new version, or None."""
    if promotion is None or promotion["alias"] != CHAMPION:
        why = "the run's model was not registered (cached)" if promotion is None else (
            f"the run's model is {promotion['alias']}, not {CHAMPION}")  # fmt: skip
        client.set_tag(run_id, "compact_registration", f"not registered: {why}; `{COMPACT_ARTIFACT}` is unchanged")
        return None
    experiment_id = client.get_run(compressed["run_id"]).info.experiment_id
    logged = client.search_logged_models(
        [experiment_id], f"source_run_id = '{compressed['run_id']}' AND name = '{COMPACT_ARTIFACT}'"
    )
    version = mlflow.register_model(logged[0].model_uri, name).version
    client.set_registered_model_alias(name, COMPACT_ARTIFACT, version)
    client.update_model_version(
        name,
        version,
        description=f"The `{COMPACT_ARTIFACT}` form of version {promotion['version']} ({CHAMPION}): variant "
        f"{compressed['variant']}. Chosen: {compressed['reason']}",
    )
    client.set_tag(run_id, "compact_registration", f"registered as version {version} with alias `{COMPACT_ARTIFACT}`")
    client.set_tag(run_id, "compact_version", str(version))
    return version
