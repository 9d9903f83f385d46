"""Promote stage: register a task run's served model as a new version of its task's registered model, apply the
promotion rule (tasks/tracking/registry.py) on the task's primary metric on the validation split (never the test
split's), in its direction, and write the descriptions the registry shows: the task's, and the version's model card
(tasks/tracking/model_card.py)."""

from pathlib import Path

from prefect import get_run_logger, task

from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect
from tasks.tracking.model_card import model_card, registered_model_description
from tasks.tracking.registry import register_and_promote, registered_model_name


@task(name="promote", task_run_name="promote-{task}")
def promote_model(task: str, params: Params, root: Path, run_id: str) -> dict:
    """Register the new model version and decide whether it takes the `champion` alias."""
    client, _ = connect(root, params, task)
    spec, name = params.kind(task), registered_model_name(params, task)
    version, decision, _ = register_and_promote(client, name, run_id, spec.val_metric, spec.higher_is_better)
    client.update_registered_model(name, description=registered_model_description(task, spec))
    card = model_card(client.get_run(run_id), version, decision.alias, decision.reason)
    client.update_model_version(name, version, description=card)
    get_run_logger().info("%s: %s version %s is %s (%s)", task, name, version, decision.alias, decision.reason)
    return {"registered_model": name, "version": version, "alias": decision.alias, "reason": decision.reason}
