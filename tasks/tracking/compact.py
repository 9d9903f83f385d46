"""Which compressed variant becomes the `compact` model, and its registration.

The rule (``choose``), on the variants the compress stage measured (tasks/evaluation/compress.py):
- a variant is eligible when its metric on the validation split (the spec's compress_metric, e.g.
  eval_val_accuracy; never a test figure) is at most ``max_metric_drop`` worse than the float model's, relative
  to it and in the metric's direction (0.02: 2% lower accuracy or BLEU, 2% higher WER; when the float model's metric
  is 0, no drop at all); the float model is always eligible;
- of those, the fastest at batch 32 (p50 latency) wins, then the smallest: latencies within LATENCY_TIE of the
  fastest count as a tie (timings on a CPU vary by a few percent from run to run, sizes do not).
The decision is logged on the run either way: tags ``compact_variant`` and ``compact_reason`` (every variant's
figures and why it won or was left out).

Registration (``register_compact``): the chosen variant's served model ("compact", logged by the compress stage) is
registered as a new version of the task's model ``attnflow-<task>`` with the alias ``compact`` when the model it
compresses is the champion (the run's own model just promoted, or, when only the compression ran again, the cached
model that holds the alias): `compact` then always serves a compressed form of the champion. Otherwise, or when the
compression itself was cached (its model was registered then), the run is tagged ``compact_registration`` with why not.
"""

from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from tasks.names import COMPACT_ARTIFACT
from tasks.schema import REFERENCE_VARIANT
from tasks.tracking.registry import CHAMPION

LATENCY_TIE = 0.05  # p50 latencies within 5% of the fastest eligible variant's are a tie, which size breaks


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
    drops = {row.variant: relative_drop(row.metric, reference, higher_is_better) for row in rows}
    eligible = [row for row in rows if drops[row.variant] <= max_metric_drop or row.variant == REFERENCE_VARIANT]
    excluded = [row for row in rows if row not in eligible]
    fastest = min(row.p50_ms_b32 for row in eligible)
    tied = [row for row in eligible if row.p50_ms_b32 <= fastest * (1 + LATENCY_TIE)]
    best = min(tied, key=lambda row: (row.size_mb, row.p50_ms_b32))

    def figures(row) -> str:
        return (f"{row.variant} ({row.p50_ms_b32:.2f} ms at batch 32, {row.size_mb:.3f} MB, {metric} {row.metric:.4f}, "
                f"{row.metric - reference:+.4f} vs float)")  # fmt: skip

    reason = (f"{figures(best)}: the smallest of the fastest at batch 32 (within {LATENCY_TIE:.0%}) whose {metric} is "
              f"at most {max_metric_drop:.1%} worse than float's {reference:.4f}")  # fmt: skip
    others = [figures(row) for row in eligible if row is not best]
    if others:
        reason += f"; slower or larger: {', '.join(others)}"
    if excluded:
        reason += "; too much worse: " + ", ".join(f"{figures(row)} {drops[row.variant]:.1%} worse" for row in excluded)
    return Choice(best.variant, reason)


def register_compact(client, name: str, run_id: str, compressed: dict, model_run_id: str) -> str | None:
    """Register the compress stage's compact model (compressed: its result) under name with the alias `compact` when
    the model it compresses (registered by model_run_id: the run whose evaluation logged it) is the champion and the
    compression ran in this run; tag the run with what happened. Returns the new version, or None."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion: nothing was registered
        champion = None
    if compressed["run_id"] != run_id:
        why = (f"the compression is cached from run {compressed['run_id']} (its compact model was registered then, "
               f"if its model was the {CHAMPION})")  # fmt: skip
    elif champion is None or champion.run_id != model_run_id:
        why = f"the model it compresses (run {model_run_id}) is not the {CHAMPION}"
    else:
        why = None
    if why:
        client.set_tag(run_id, "compact_registration", f"not registered: {why}; `{COMPACT_ARTIFACT}` is unchanged")
        return None
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.search_logged_models([experiment_id], f"source_run_id = '{run_id}' AND name = '{COMPACT_ARTIFACT}'")
    version = mlflow.register_model(logged[0].model_uri, name).version
    client.set_registered_model_alias(name, COMPACT_ARTIFACT, version)
    client.update_model_version(
        name,
        version,
        description=f"The `{COMPACT_ARTIFACT}` form of version {champion.version} ({CHAMPION}): variant "
        f"{compressed['variant']}. Chosen: {compressed['reason']}",
    )
    client.set_tag(run_id, "compact_registration", f"registered as version {version} with alias `{COMPACT_ARTIFACT}`")
    client.set_tag(run_id, "compact_version", str(version))
    return version
