"""Compress stage: smaller, faster variants of the trained model (float, int8, pruned, pruned+int8: global.compress),
each measured on the CPU for size, latency and its metric on the validation split (tasks/evaluation/compress.py); the
best within ``max_metric_drop`` of the float model's validation figure is chosen by a pure rule
(tasks/tracking/compact.py) and logged as the served model "compact". The test split never chooses. The run gets the
table (compress/variants.json), a metric per variant and figure (compress_p50_ms_b32.int8, ...), the trade-off plot
(compress/tradeoff.png), what pruning kept (compress/pruning.json) and the decision (tags compact_variant,
compact_reason).

Cached like the other stages on the checkpoint, the data recipe, global.compress, the data, model and eval sections
(the metric decodes with the eval settings, the served model carries them) and its code. ``register_compact`` (not
cached) then registers the compact model with the alias `compact` when the model it compresses is the champion.
"""

from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import Stage
from tasks.params import Params
from tasks.paths import ProjectPaths
from tasks.tracking.checkpoints import checkpoint_path as trained_checkpoint
from tasks.tracking.mlflow_tracking import connect, log_metrics

STAGE = Stage(
    "compress",
    params=("data", "model", "train", "eval", "global.compress", "global.seed", "global.serving"),
    upstream=("trained", "data_recipe"),
    module=__name__,
)
FOLDER = "compress"  # the run's artifact folder of this stage


@task(**STAGE.task_options())
def compress_model(task: str, params: Params, root: Path, run_id: str, trained: dict, data_recipe: dict) -> dict:
    """Returns the variants' metrics, the chosen variant and why, and the id of the MLflow run that holds them with
    the table, the plot and the compact model."""
    import json

    import matplotlib.pyplot as plt
    import torch

    from tasks.evaluation.compress import build_variants, measure_variants, tradeoff_figure
    from tasks.kinds import load_trained
    from tasks.kinds.base import Evaluation
    from tasks.tracking.compact import choose

    spec, section, settings = params.kind(task), params.task(task), params.global_.compress
    checkpoint_path, data_dir = trained_checkpoint(root, trained), ProjectPaths(root).task_data(task)
    model, checkpoint, tokenizer, tokenizer_path, splits = load_trained(
        checkpoint_path, data_dir, section, params.global_.seed
    )
    client, _ = connect(root, params, task)
    cpu = torch.device("cpu")
    evaluation = Evaluation(client, run_id, model, checkpoint, splits, section, tokenizer, cpu, data_dir)
    variants, pruning = build_variants(model, spec, splits, section, settings, params.global_.seed)
    rows = measure_variants(variants, spec, evaluation, settings)
    choice = choose(rows, settings.max_metric_drop, spec.compress_metric, spec.higher_is_better)

    metrics = {key: value for row in rows for key, value in row.as_metrics().items()}
    log_metrics(client, run_id, metrics)
    table = {"metric": spec.compress_metric, "threads": settings.threads, "variants": [row.__dict__ for row in rows]}
    client.log_dict(run_id, table, f"{FOLDER}/variants.json")
    if pruning:
        client.log_dict(run_id, pruning, f"{FOLDER}/pruning.json")
    figure = tradeoff_figure(rows, spec.compress_metric, f"{task}: compressed variants ({settings.threads} thread)")
    client.log_figure(run_id, figure, f"{FOLDER}/tradeoff.png")
    plt.close(figure)
    client.set_tag(run_id, "compact_variant", choice.variant)
    client.set_tag(run_id, "compact_reason", choice.reason)
    answers = log_compact_model(root, params, task, run_id, checkpoint, tokenizer_path if tokenizer else None,
                                variants[choice.variant], pruning, choice.variant)  # fmt: skip
    client.log_text(run_id, json.dumps(answers), f"{FOLDER}/compact_example_answers.json")
    get_run_logger().info(
        "%s compressed: %s",
        task,
        "; ".join(f"{r.variant} {r.size_mb:.2f} MB {r.p50_ms_b32:.1f} ms/32 {r.metric:.4f}" for r in rows),
    )
    get_run_logger().info("%s compact: %s", task, choice.reason)
    return {"metrics": metrics, "variant": choice.variant, "reason": choice.reason, "run_id": run_id}


def log_compact_model(root, params, task, run_id, checkpoint, tokenizer_path, variant, pruning, name) -> list:
    """Log the chosen variant as the run's served model "compact": a checkpoint of its float weights (the pruned
    model's, with the heads each layer kept) and, in the model config, whether to quantize them at load. Returns its
    answers to the input example, from the variant as measured (the served model must give them too)."""
    import torch

    from attn_models.compression import quantize_int8
    from tasks.names import COMPACT_ARTIFACT, COMPACT_CHECKPOINT
    from tasks.schema import VARIANTS
    from tasks.serving.pyfunc_model import log_serving_model

    spec, section = params.kind(task), params.task(task)
    model, quantize = variant
    kept = pruning["kept_heads"] if VARIANTS[name][0] else None
    compact = {**checkpoint, "state_dict": model.state_dict(), "kept_heads": kept}
    path = ProjectPaths(root).run_outputs(run_id) / COMPACT_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(compact, path)
    config = {**(spec.serving_config(section) or {}), "limits": params.global_.serving.model_dump(),
              "variant": name, "quantize": quantize}  # fmt: skip
    example = spec.serving_example(ProjectPaths(root).task_data(task), section)
    tokenizer = None
    if tokenizer_path:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    served = quantize_int8(model) if quantize else model
    answers = spec.serve(served, compact, tokenizer, config, [example])
    log_serving_model(run_id, path, tokenizer_path, config, spec.input_column, example, answers, spec.serving_params,
                      name=COMPACT_ARTIFACT)  # fmt: skip
    return answers


@task(name="register-compact", task_run_name="register-compact-{task}")
def register_compact_model(task: str, params: Params, root: Path, run_id: str, compressed: dict,
                           model_run_id: str) -> str | None:  # fmt: skip
    """Register the compact model as a version with the alias `compact` when the model it compresses (the one
    model_run_id evaluated and registered) is the champion."""
    from tasks.tracking.compact import register_compact
    from tasks.tracking.registry import registered_model_name

    client, _ = connect(root, params, task)
    name = registered_model_name(params, task)
    version = register_compact(client, name, run_id, compressed, model_run_id)
    get_run_logger().info(
        "%s: %s", task, f"{name} version {version} is compact" if version else "compact model not registered"
    )
    return version
