"""The pipeline: prepare data for the selected modalities, version it with DVC once, then train, evaluate, explain,
compress and promote each modality in its own subflow (and register the compact model of a new champion). MLflow:
one "pipeline" run in `tracking.experiment`; each modality's run goes to its task's experiment
(`<tracking.experiment>-<task>`, where runs of a task are compared) and is linked to the pipeline run by the tags
`pipeline_run_id` and `mlflow.parentRunId` (the pipeline run holds `run_id.<modality>` tags back).

Stages are cached across flow runs (see tasks/caching.py): unchanged stages show as Cached in
Prefect, and the modality run records which run produced the result (tag ``cached_from_run_id``).
A modality that fails is marked FAILED in MLflow and does not stop the others; the pipeline then
fails, naming the modalities that did.
"""

from pathlib import Path

import yaml
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.caching import call_cached
from tasks.lineage import lineage_tags
from tasks.locking import project_lock
from tasks.modalities import MODALITIES, get
from tasks.params import Params, load_params, project_root, public_dump
from tasks.stages.compress import compress_model, register_compact_model
from tasks.stages.evaluate import evaluate_model
from tasks.stages.explain import explain_model
from tasks.stages.prepare import data_recipe, dataset_matches, prepare_data
from tasks.stages.promote import promote_model
from tasks.stages.report import report_results
from tasks.stages.train import TRAINING_ENVIRONMENT, train_model
from tasks.stages.version import version_data
from tasks.tracking.checkpoints import fetch_trained
from tasks.tracking.datasets import split_inputs
from tasks.tracking.mlflow_tracking import (
    close_stale_runs,
    connect,
    fail_run,
    log_metrics,
    log_params,
    process_tags,
    run_kind,
    run_name,
)


class PipelineFailed(RuntimeError):
    """A modality failed (the others ran); its MLflow run is FAILED with the error."""


@flow(name="modality-pipeline", flow_run_name="{modality}")
def modality_pipeline(
    modality: str,
    params: Params,
    root: Path,
    parent_run_id: str,
    lineage: dict,
    data_recipe: dict,
    force: bool = False,
    tags: dict | None = None,
) -> dict:
    """Train, evaluate and promote one modality, recorded as one MLflow run in its task's experiment."""
    client, experiment_id = connect(root, params, modality)
    section, metrics = params.section(modality), get(modality).metrics
    run_tags = {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        "pipeline_run_id": parent_run_id,
        "modality": modality,
        "task": section.task,
        "prefect_flow_run_id": flow_run.get_id(),
        **process_tags(root),
        **lineage,
        **(tags or {}),
    }
    run_id = client.create_run(experiment_id, run_name=run_name(modality, section), tags=run_tags).info.run_id
    client.set_tag(parent_run_id, f"run_id.{modality}", run_id)
    try:
        client.log_inputs(run_id, datasets=split_inputs(root, modality, section.task, lineage["data_md5"]))
        log_params(client, run_id, section.model_dump())
        client.log_text(run_id, yaml.safe_dump(public_dump(params), sort_keys=False), "params.yaml")
        client.log_text(run_id, (root / "data.dvc").read_text(), "data.dvc")
        stage_inputs = dict(modality=modality, params=params, root=root, run_id=run_id, data_recipe=data_recipe)
        trained = call_cached(  # a checkpoint trained in another clone is fetched from the run that trained it
            train_model,
            force=force,
            outputs_exist=lambda r: fetch_trained(client, root, r, get_run_logger()),
            **stage_inputs,
        )
        environment = {key: trained[key] for key in TRAINING_ENVIRONMENT}  # where the model was trained
        for key, value in environment.items():
            client.set_tag(run_id, key, value)
        evaluated = call_cached(
            evaluate_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
        )
        if get(modality).explainer:
            explained = call_cached(
                explain_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
            )
            if explained["run_id"] != run_id:  # cached: its curves and viewer are in the run that made them
                log_metrics(client, run_id, explained["metrics"])
                client.set_tag(run_id, "explained_in_run_id", explained["run_id"])
        compressed = None
        if params.global_.compress.enabled:
            compressed = call_cached(
                compress_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
            )
            if compressed["run_id"] != run_id:  # cached: its table, plot and compact model are in the run that made it
                log_metrics(client, run_id, compressed["metrics"])
                client.set_tag(run_id, "compressed_in_run_id", compressed["run_id"])
                client.set_tag(run_id, "compact_variant", compressed["variant"])
                client.set_tag(run_id, "compact_reason", compressed["reason"])
        cached_from = None if evaluated["run_id"] == run_id else evaluated["run_id"]
        client.update_run(run_id, name=f"{run_name(modality, section)} ({run_kind(run_tags, cached_from)})")
        if cached_from:  # every stage came from the cache: point at the run that made (and promoted) the result
            client.set_tag(run_id, "cached_from_run_id", cached_from)
            log_metrics(client, run_id, {name: evaluated[name] for name in metrics})
            promotion = None
        else:
            promotion = promote_model(modality, params, root, run_id)
        if compressed:  # tagged either way; registered with the alias `compact` when it compresses the champion
            register_compact_model(modality, params, root, run_id, compressed, evaluated["run_id"])
    except BaseException as error:
        fail_run(client, run_id, error)
        raise
    client.set_terminated(run_id, "FINISHED")
    return {
        "run_id": run_id,
        "cached_from_run_id": cached_from,
        "promotion": promotion,
        **environment,
        **{name: evaluated[name] for name in metrics},
    }


@flow(name="attention-pipeline")
def attention_pipeline(
    params_path: str = "params.yaml",
    modalities: list[str] | None = None,
    force: bool = False,
    params: Params | None = None,
    tags: dict | None = None,
) -> dict:
    """Prepare -> version -> (train -> evaluate -> promote) per modality; returns each modality's run id, test
    metrics and promotion decision.

    ``params`` replaces the file's contents when given (reproduce, sweeps); the project is still the
    folder of ``params_path``. ``tags`` are added to every MLflow run (``sweep_id`` picks out a sweep's
    runs for ``attnflow compare --sweep``); ``force`` ignores the stage cache.
    """
    logger = get_run_logger()
    params = params or load_params(params_path)  # invalid params stop here, before any work
    root = project_root(params_path)
    selected = modalities or params.global_.modalities
    unknown = sorted(set(selected) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")

    with project_lock(root, on_wait=logger.warning):  # one pipeline at a time per project (tasks/locking.py)
        return run_pipeline(params, root, selected, force, tags, logger)


def run_pipeline(params: Params, root: Path, selected: list[str], force: bool, tags: dict | None, logger) -> dict:
    """The pipeline's work, under the project lock."""
    recipes = {
        m: call_cached(
            prepare_data,
            force=force,
            outputs_exist=lambda recipe: dataset_matches(root, recipe),
            modality=m,
            params=params,
            root=root,
            recipe=data_recipe(m, params, root),
        )
        for m in selected
    }
    lineage = lineage_tags(root, params, version_data(root))

    client, experiment_id = connect(root, params)
    for run_id in close_stale_runs(client, root):
        logger.warning("closed run %s as KILLED: the process that ran it died without closing it", run_id)
    parent = client.create_run(
        experiment_id,
        run_name="pipeline",
        tags={
            "prefect_flow_run_id": flow_run.get_id(),
            "modalities": ",".join(selected),
            **process_tags(root),
            **lineage,
            **(tags or {}),
        },  # fmt: skip
    )
    parent_run_id = parent.info.run_id
    results, failed = {}, []
    try:  # whatever goes wrong from here on, the pipeline's MLflow run is closed, never left RUNNING
        log_params(client, parent_run_id, public_dump(params)["global"])
        for modality in selected:
            state = modality_pipeline(
                modality, params, root, parent_run_id, lineage, recipes[modality], force, tags, return_state=True
            )
            if state.is_completed():
                results[modality] = state.result()
            else:
                failed.append(modality)
        for key in TRAINING_ENVIRONMENT:  # the pipeline run lists those of its modality runs
            client.set_tag(parent_run_id, key, ",".join(sorted({result[key] for result in results.values()})))
        report_results(params, root, results, failed)  # in the Prefect UI: metrics table, promotions, links
        if failed:
            raise PipelineFailed(f"modalities failed: {', '.join(failed)} (see their MLflow runs and Prefect logs)")
    except BaseException as error:
        fail_run(client, parent_run_id, error)
        raise
    client.set_terminated(parent_run_id, "FINISHED")
    for modality, result in results.items():
        cached = f", cached from run {result['cached_from_run_id']}" if result["cached_from_run_id"] else ""
        figures = ", ".join(f"{name} {result[name]:.4f}" for name in get(modality).metrics)
        logger.info("%s: %s (MLflow run %s%s)", modality, figures, result["run_id"], cached)
    return {"parent_run_id": parent_run_id, "data_md5": lineage["data_md5"], "modalities": results}
