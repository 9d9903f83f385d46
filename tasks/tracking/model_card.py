"""Model cards: the descriptions the registry shows for a task's registered model and for each of its versions,
generated from the run that made the version (its tags, metrics, params and dataset inputs) and the task's
spec (what a request holds, how attention is read, what to mind)."""

from tasks.kinds import get

PROMOTION_RULE = "tasks/tracking/registry.py"


def registered_model_description(task: str, spec) -> str:
    """The registered model's description: the task, its kind (spec) and what its versions' aliases mean."""
    return (
        f"Task **{task}** (kind {spec.name}), trained by attnflow. Serving input (field `{spec.input_column}`): "
        f"{spec.serving_input}. Attention: {spec.attention_method}.\n\n"
        f"The `champion` alias is the best version on its validation data by `{spec.val_metric}` "
        f"({'higher' if spec.higher_is_better else 'lower'} is better; the rule is in {PROMOTION_RULE}); "
        "other versions are `challenger`s. The test metrics are reported, never used to choose. "
        "Each version's description is its model card."
    )


def decided_on(spec) -> str:
    """Which split and figure choose between models (promotion, sweeps, the compact variant): shown wherever test
    figures are, so that no reader takes them for what decided."""
    return f"validation ({spec.val_metric})"


def backbone_line(tags: dict) -> list[str]:
    """The pretrained backbone a fine-tuned model started from (tasks/backbones.py), or nothing."""
    if "backbone_sha256" not in tags:
        return []
    revision = f" at revision `{tags['backbone_revision']}`" if tags.get("backbone_revision") else ""
    return [f"- **Pretrained backbone**: `{tags.get('backbone_source', '?')}`{revision}, files sha256 "
            f"`{tags['backbone_sha256']}` (tag `backbone_files` lists each file's)"]  # fmt: skip


def model_card(run, version: str, alias: str, reason: str) -> str:
    """Markdown for one registered version, from its MLflow run."""
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    spec = get(tags["kind"])
    scores = ", ".join(f"`{name}` {metrics[name]:.4f}" for name in spec.metrics if name in metrics)
    model = ", ".join(f"{key.removeprefix('model.')}={value}" for key, value in sorted(params.items())
                      if key.startswith("model."))  # fmt: skip
    datasets = ", ".join(f"{d.dataset.name} `{d.dataset.digest}`" for d in run.inputs.dataset_inputs)
    return "\n".join([
        f"## {tags['task']} version {version} ({alias})",
        "",
        f"- **Run**: `{run.info.run_id}` ({run.info.run_name}), commit `{tags.get('git_sha', '?')[:12]}`"
        f"{' (with uncommitted changes)' if tags.get('git_dirty') == 'true' else ''}",
        f"- **Test metrics**: {scores} (reported once, never used to choose; "
        f"{'higher' if spec.higher_is_better else 'lower'} is better)",
        f"- **Decided on**: {decided_on(spec)}: {metrics.get(spec.val_metric, float('nan')):.4f}",
        f"- **Promotion**: {alias}: {reason}",
        f"- **Data**: version `{tags.get('data_md5', '?')}` (data.dvc); splits (DVC digests): "
        f"{datasets or 'not recorded'}",
        f"- **Model**: {model}; {int(metrics.get('num_parameters', 0)):,} parameters; trained on "
        f"{tags.get('device', '?')} with torch {tags.get('torch_version', '?')} "
        f"in {metrics.get('train_seconds', 0):.0f} s",
        *backbone_line(tags),
        f"- **Serving input** (field `{spec.input_column}`): {spec.serving_input}",
        f"- **Attention**: {spec.attention_method}",
        f"- **Limits**: {spec.limits} Metrics hold for this test split only: compare versions on the same test data.",
    ])  # fmt: skip
