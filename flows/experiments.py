"""Reproduce a tracked run, and sweep a grid of parameters. Both run the same pipeline flow."""

import uuid
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from flows.pipeline import attention_pipeline, register_model, run_pipelines
from tasks import backbones
from tasks.errors import EXIT_CODE_CHANGED, AttnflowError
from tasks.executor import SEQUENTIAL, open_executor
from tasks.kinds import get
from tasks.lineage import code_changes_since, environment_changes
from tasks.locking import project_lock
from tasks.params import Params, configurations, load_params, project_root, with_overrides
from tasks.paths import ProjectPaths
from tasks.tracking.mlflow_tracking import connect
from tasks.training.budget import PLANNED_STEPS, schedule_kind
from tasks.versioning.dvc import checkout_data_version, run_dvc


class CodeChangedError(AttnflowError, RuntimeError):
    """The code differs from the commit a run recorded."""

    exit_code = EXIT_CODE_CHANGED


def read_recorded_run(client: MlflowClient, run_id: str) -> tuple[Params, str, dict]:
    """The effective params, the data.dvc text and the tags a task run recorded."""
    run = client.get_run(run_id)
    if "task" not in run.data.tags:
        raise ValueError(f"run {run_id} is not a task run (it has no 'task' tag)")
    params = Params.model_validate(yaml.safe_load(Path(client.download_artifacts(run_id, "params.yaml")).read_text()))
    dvc_file = Path(client.download_artifacts(run_id, "data.dvc")).read_text()
    return params, dvc_file, run.data.tags


def replay_plan(params: Params, task: str, metrics: dict) -> Params:
    """params with a budgeted training's recorded plan as a fixed number of steps (and no budget), so that a
    reproduction trains what the run trained (tasks/training/budget.py); unchanged when the run had no budget."""
    if params.task(task).train.budget_minutes is None or PLANNED_STEPS not in metrics:
        return params
    train = params.task(task).train
    plan = {"train.max_steps": int(metrics[PLANNED_STEPS]), "train.budget_minutes": None,
            "train.lr_schedule": schedule_kind(train)}  # fmt: skip
    return with_overrides(params, task, plan)


@flow(name="reproduce")
def reproduce(run_id: str, params_path: str = "params.yaml", allow_code_change: bool = False) -> dict:
    """Re-run a task run with its recorded params and data version; compare the test metrics exactly. Under the
    project lock: it checks an old data version out, which no other run may see."""
    logger = get_run_logger()
    root = project_root(params_path)
    with project_lock(root, on_wait=logger.warning):
        return reproduce_locked(run_id, params_path, allow_code_change, root, logger)


def reproduce_locked(run_id: str, params_path: str, allow_code_change: bool, root: Path, logger) -> dict:
    current = load_params(params_path)
    client, _ = connect(root, current)
    recorded_params, dvc_file, tags = read_recorded_run(client, run_id)
    # the run's params, tracked where this project tracks now (the recorded URI is redacted, and may be elsewhere)
    recorded_params = recorded_params.model_copy(
        update={"global_": recorded_params.global_.model_copy(update={"tracking": current.global_.tracking})}
    )
    original = client.get_run(run_id).data.metrics
    recorded_params = replay_plan(recorded_params, tags["task"], original)  # a time budget's epochs, as trained

    task = tags["task"]  # a fine-tuned backbone's files must be the ones the run recorded (their sha256)
    backbones.check_same_files(tags, getattr(recorded_params.task(task).model, "backbone", None), root, task)
    changed = code_changes_since(root, tags["git_sha"]) + environment_changes(tags)
    if changed and not allow_code_change:
        raise CodeChangedError(
            f"the code or its environment differs from what made run {run_id} (commit {tags['git_sha']}): "
            f"{', '.join(changed[:10])}; check that commit out and `make setup`, or pass --allow-code-change"
        )
    if changed:
        logger.warning("going on although the code or environment differs from run %s: %s", run_id, ", ".join(changed))

    logger.info("restoring data version %s (recorded by run %s)", tags["data_md5"], run_id)
    previous_dvc_file = checkout_data_version(root, dvc_file)
    try:
        result = attention_pipeline(
            params_path=params_path,
            tasks=[tags["task"]],
            force=True,
            params=recorded_params,
            tags={"reproduced_from_run_id": run_id},
        )
    finally:
        ProjectPaths(root).data_dvc.write_text(previous_dvc_file)
        run_dvc(root, "checkout", targets=[str(ProjectPaths(root).data_dvc)], force=True)

    new = result["tasks"][tags["task"]]
    comparison = {
        name: {"original": original[name], "reproduced": new[name], "match": original[name] == new[name]}
        for name in get(tags["kind"]).metrics
    }
    return {
        "run_id": new["run_id"],
        "data_md5": tags["data_md5"],
        "restored_data_md5": result["data_md5"],
        "metrics": comparison,
        "match": all(row["match"] for row in comparison.values()),
    }


@flow(name="sweep")
def sweep(task: str, grid: dict[str, list], params_path: str = "params.yaml", register: bool = True) -> dict:
    """Run the pipeline for every combination of the grid, rank the configurations on validation and register the
    winner's model only (none with register=False): otherwise every configuration's model would become a version,
    and the champion would move in whatever order the configurations finish. Data preparation is shared through the
    stage cache."""
    sweep_id, root = uuid.uuid4().hex[:8], project_root(params_path)
    spec = load_params(params_path).kind(task)
    with project_lock(root, on_wait=get_run_logger().warning):
        rows = rank_configurations(sweep_configurations(task, grid, params_path, sweep_id), spec)
        promotion = register_winner(task, grid, rows[0], params_path) if register and rows else None
    return {"sweep_id": sweep_id, "task": task, "keys": list(grid), "rows": rows, "ranked_by": spec.val_metric,
            "registered": register, "promotion": promotion}  # fmt: skip


def rank_configurations(rows: list[dict], spec) -> list[dict]:
    """The configurations' results, best first by the primary metric on the validation split (spec.val_metric), in
    its direction: the test metrics are reported beside it, never ranked by."""
    return sorted(rows, key=lambda row: spec.rank_key(row[spec.val_metric]))


def register_winner(task: str, grid: dict[str, list], winner: dict, params_path: str) -> dict | None:
    """Promote the sweep's best configuration as a pipeline run promotes its model (tasks/stages/promote.py), with
    its compact form. A winner whose every stage came from the cache is the model of the run that made it: that run
    is registered, unless it already was. Returns the promotion, or None when nothing was registered."""
    params = with_overrides(load_params(params_path), task, {key: winner[key] for key in grid})
    root, made_by = project_root(params_path), winner["cached_from_run_id"] or winner["run_id"]
    client, _ = connect(root, params, task)
    if "registered_version" in client.get_run(made_by).data.tags:
        return None
    return register_model(task, params, root, made_by, made_by, winner["compressed"])


def sweep_configurations(task: str, grid: dict[str, list], params_path: str, sweep_id: str) -> list[dict]:
    """Each configuration's pipeline run, tagged with the sweep: one after another, each its own pipeline flow run; or,
    with global.executor's kind dask, all at once on the cluster (``sweep_at_once``)."""
    base = load_params(params_path)
    runs = [
        (overrides, params, {"sweep_id": sweep_id, "sweep_config": ",".join(f"{k}={v}" for k, v in overrides.items())})
        for overrides, params in configurations(base, task, grid)  # all validated first
    ]
    if base.global_.executor.kind != SEQUENTIAL:
        return sweep_at_once(task, runs, params_path, base)
    rows = []
    for overrides, params, tags in runs:
        result = attention_pipeline(params_path=params_path, tasks=[task], params=params, tags=tags, register=False)
        rows.append({**overrides, **result["tasks"][task]})
    return rows


def sweep_at_once(task: str, runs: list[tuple[dict, Params, dict]], params_path: str, base: Params) -> list[dict]:
    """The configurations' task pipelines at once on the cluster: this flow (which holds the project lock)
    prepares and versions their data, and opens and closes their pipeline runs; the workers train and evaluate."""
    logger = get_run_logger()
    with open_executor(base.global_.executor, logger) as executor:
        results = run_pipelines([(params, tags) for _, params, tags in runs], project_root(params_path), [task],
                                False, logger, executor, register=False)  # fmt: skip
    return [{**overrides, **result["tasks"][task]} for (overrides, _, _), result in zip(runs, results)]
