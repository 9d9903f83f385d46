"""Explain stage: the trained model's attention maps, by every attribution method, scored for faithfulness
(deletion and insertion curves) and, on built-in data, localization (its kind's ``explainer``:
tasks/evaluation/explain.py). Metrics ``attn_*`` and the files under ``explain/`` go to the task's run.

Cached like the other stages on what it reads: the checkpoint, the data recipe, global.explain and the seed, and its
code (this module, the kind's, the model's and the kind's explainer, with what they import).
"""

from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import Stage
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.checkpoints import checkpoint_path as trained_checkpoint
from tasks.tracking.mlflow_tracking import connect, log_metrics

STAGE = Stage(
    "explain",
    params=("data", "model", "global.explain", "global.seed"),
    upstream=("trained", "data_recipe"),
    module=__name__,
    spec_code=("explainer",),
)


@task(**STAGE.task_options())
def explain_model(task: str, params: Params, root: Path, run_id: str, trained: dict, data_recipe: dict) -> dict:
    """Returns the attn_* metrics and the id of the MLflow run that holds them with the curves and the viewer."""
    from tasks.kinds import load_trained
    from tasks.kinds.base import Explanation, load_object

    spec, section = params.kind(task), params.task(task)
    checkpoint_path, data_dir = trained_checkpoint(root, trained), ProjectPaths(root).task_data(task)
    model, checkpoint, tokenizer, _, splits = load_trained(checkpoint_path, data_dir, section, params.global_.seed)
    client, _ = connect(root, params, task)
    settings, builtin = params.global_.explain, data_recipe["source"] == "builtin"
    explanation = Explanation(
        client, run_id, model, checkpoint, splits, section, tokenizer, settings, params.global_.seed, builtin, data_dir
    )
    metrics = load_object(spec.explainer)(spec, explanation)
    log_metrics(client, run_id, metrics)
    get_run_logger().info(
        "%s attention on %d test examples: deletion AUC %s (random %.3f)",
        task,
        min(settings.samples, len(splits.test)),
        ", ".join(f"{m} {metrics[f'attn_deletion_auc.{m}']:.3f}" for m in spec.explain_headline),
        metrics["attn_deletion_auc.random"],
    )
    return {"metrics": metrics, "run_id": run_id}
