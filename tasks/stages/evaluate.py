"""Evaluate stage: the task's test metrics, its primary metric on the validation split (``val_metrics``: what models
are chosen by) and attention maps (its spec's ``evaluate``), and the model, logged twice: with mlflow.pytorch
("model") and as the pyfunc wrapper that takes raw inputs ("serving", tasks/serving/).

torch and mlflow's model flavors are imported inside the task body: a cached run never enters it, and leaving them
out of module scope saves seconds of start-up on every run.
"""

import hashlib
import json
from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import Stage
from tasks.names import LABELS
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.checkpoints import checkpoint_path as trained_checkpoint
from tasks.tracking.mlflow_tracking import connect, log_metrics, log_pytorch_model

STAGE = Stage(
    "evaluate",
    params=("data", "model", "eval", "global.seed", "global.device", "global.serving"),
    upstream=("trained", "data_recipe"),
    module=__name__,
)


def split_md5(spec, data_dir: Path, split: str) -> str:
    """md5 over one split alone (file names and bytes; spec: the task's kind): two figures on a split are comparable
    only when it matches (tags test_data_md5 and val_data_md5; promotion compares validation figures)."""
    digest = hashlib.md5()
    for path in spec.split_files(data_dir, split):
        digest.update(path.relative_to(data_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@task(**STAGE.task_options())
def evaluate_model(task: str, params: Params, root: Path, run_id: str, trained: dict, data_recipe: dict) -> dict:
    """Returns the test metrics, the validation figures and the id of the MLflow run that holds them with the models
    and figures."""
    import attn_models
    from tasks.kinds import load_trained
    from tasks.kinds.base import Evaluation
    from tasks.reproducibility import resolve_device
    from tasks.serving.pyfunc_model import MODEL_PACKAGES, log_serving_model, pinned

    spec, section = params.kind(task), params.task(task)
    checkpoint_path, data_dir = trained_checkpoint(root, trained), ProjectPaths(root).task_data(task)
    model, checkpoint, tokenizer, tokenizer_path, splits = load_trained(
        checkpoint_path, data_dir, section, params.global_.seed
    )
    client, _ = connect(root, params, task)
    metrics = spec.evaluate(
        Evaluation(
            client,
            run_id,
            model,
            checkpoint,
            splits,
            section,
            tokenizer,
            resolve_device(params.global_.device),
            data_dir,
        )
    )
    get_run_logger().info(
        "%s on %d test examples: %s (on %d validation examples: %s)",
        task,
        len(splits.test),
        ", ".join(f"{name} {metrics[name]:.4f}" for name in spec.metrics),
        len(splits.val),
        ", ".join(f"{name} {metrics[name]:.4f}" for name in spec.val_metrics),
    )
    log_metrics(client, run_id, metrics)
    for split in ("test", "val"):
        client.set_tag(run_id, f"{split}_data_md5", split_md5(spec, data_dir, split))

    labels_file = checkpoint_path.parent / LABELS
    labels_file.write_text(json.dumps(checkpoint["class_names"]))
    extra_files = [str(labels_file)] + ([str(tokenizer_path)] if tokenizer else [])
    example, signature = spec.model_example(model, splits)
    log_pytorch_model(
        run_id,
        model,
        input_example=example,
        signature=signature,
        code_paths=[str(Path(attn_models.__file__).parent)],
        extra_files=extra_files,
        pip_requirements=pinned(MODEL_PACKAGES),
    )
    example = spec.serving_example(data_dir, section)
    config = {**(spec.serving_config(section) or {}), "limits": params.global_.serving.model_dump()}
    answers = spec.serve(model, checkpoint, tokenizer, config, [example])
    log_serving_model(
        run_id,
        checkpoint_path,
        tokenizer_path if tokenizer else None,
        config,
        spec.input_column,
        example,
        answers,
        spec.serving_params,
    )
    return {**metrics, "run_id": run_id}
