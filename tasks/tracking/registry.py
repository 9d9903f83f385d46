"""Model registry: one registered model per task, and the promotion rule for its `champion` alias.

The rule (``decide``) compares the task's primary metric on the validation split (its spec's ``val_metric``:
eval_val_accuracy for classifiers, eval_val_bleu for translation, eval_val_wer for speech recognition;
``higher_is_better`` says which way is better, lower for error rates). The test split never decides: a model chosen
on it would make its test figure an optimistic one. The test metrics are logged on the run and reported as they are.
- no champion yet                     -> the new version becomes champion;
- same validation data (val_data_md5) -> champion only if strictly better, otherwise challenger (a tie keeps the
                                         incumbent: a new model has to earn the move);
- different validation data           -> challenger: figures on different validation sets are not comparable, so
                                         the champion is kept and the decision says so; promote by hand after
                                         checking (``MlflowClient().set_registered_model_alias(name, "champion",
                                         version)``). A champion from before validation figures were logged has none,
                                         so it counts as different data.
The decision is logged on the new run: tags ``promotion`` (the alias), ``promotion_reason``, ``registered_model``,
``registered_version``, ``champion_version_before``; metrics ``promotion_new_<metric>`` and
``promotion_champion_<metric>`` (both validation figures, e.g. ``promotion_new_eval_val_accuracy``).
"""

import math
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from tasks.names import SERVING_ARTIFACT
from tasks.params import Params
from tasks.tracking.mlflow_tracking import experiment_name, log_metrics

CHAMPION, CHALLENGER = "champion", "challenger"


def registered_model_name(params: Params, task: str) -> str:
    return experiment_name(params, task)  # one registered model per task, named like its experiment


NOT_RECORDED = "not recorded"  # the val_data_md5 of a run made before it was tagged


@dataclass(frozen=True)
class Candidate:
    score: float  # the primary metric on the validation split (nan when the run has none)
    val_data_md5: str


@dataclass(frozen=True)
class Decision:
    alias: str  # champion | challenger
    reason: str


def decide(new: Candidate, champion: Candidate | None, metric: str, higher_is_better: bool = True) -> Decision:
    """The promotion rule (see the module docstring); metric names the figures in the reason."""
    if champion is None:
        return Decision(CHAMPION, f"first model: no champion yet ({metric} {new.score:.4f})")
    figures = f"new {metric} {new.score:.4f} vs champion {champion.score:.4f}"
    if new.val_data_md5 != champion.val_data_md5:
        return Decision(
            CHALLENGER,
            f"different validation data (val_data_md5 {new.val_data_md5[:8]} vs champion's "
            f"{champion.val_data_md5[:8]}): {figures} are not comparable; champion kept",
        )
    if new.score == champion.score:
        return Decision(
            CHALLENGER, f"equal on the same validation data: {figures}; champion kept (must be strictly better)"
        )
    direction = "higher" if higher_is_better else "lower"
    if (new.score > champion.score) == higher_is_better:
        return Decision(CHAMPION, f"better on the same validation data ({direction} is better): {figures}")
    return Decision(CHALLENGER, f"worse on the same validation data ({direction} is better): {figures}; champion kept")


def candidate(client, run_id: str, metric: str) -> Candidate:
    """A run's validation figure and the md5 of its validation data. A champion from before they were logged has
    neither (nan, NOT_RECORDED): no new run's data matches it, so the new one is a challenger."""
    run = client.get_run(run_id)
    return Candidate(run.data.metrics.get(metric, float("nan")), run.data.tags.get("val_data_md5", NOT_RECORDED))


def register_and_promote(
    client, name: str, run_id: str, metric: str, higher_is_better: bool = True
) -> tuple[str, Decision, str | None]:
    """Register the run's serving model under `name`, move `champion` or set `challenger` by the rule on `metric` (a
    validation figure, the spec's val_metric); log the decision."""
    experiment_id = client.get_run(run_id).info.experiment_id
    served = client.search_logged_models([experiment_id], f"source_run_id = '{run_id}' AND name = '{SERVING_ARTIFACT}'")
    version = mlflow.register_model(served[0].model_uri, name).version
    try:
        holder = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        holder = None
    new = candidate(client, run_id, metric)
    if math.isnan(new.score):
        raise ValueError(f"run {run_id} has no {metric} to decide its promotion on (the evaluate stage logs it)")
    champion = candidate(client, holder.run_id, metric) if holder else None
    decision = decide(new, champion, metric, higher_is_better)
    client.set_registered_model_alias(name, decision.alias, version)
    for key, value in {
        "promotion": decision.alias,
        "promotion_reason": decision.reason,
        "registered_model": name,
        "registered_version": version,
        "champion_version_before": holder.version if holder else "none",
    }.items():
        client.set_tag(run_id, key, str(value))  # tags, not params: they would crowd the UI's compare plots
    log_metrics(
        client,
        run_id,
        {
            f"promotion_new_{metric}": new.score,
            **({f"promotion_champion_{metric}": champion.score} if champion and not math.isnan(champion.score) else {}),
        },
    )
    return version, decision, holder.version if holder else None
