"""The pipeline: prepare data for the selected modalities, version it with DVC once, then train, evaluate and
promote each modality in its own subflow. MLflow: one "pipeline" run in `tracking.experiment`; each modality's run
goes to its task's experiment (`<tracking.experiment>-<task>`, where runs of a task are compared) and is linked
to the pipeline run by the tag `pipeline_run_id` (the pipeline run holds `run_id.<modality>` tags back).

A modality that fails is marked FAILED in MLflow and does not stop the others; the pipeline then fails,
naming the modalities that did.
"""
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.data.prepare import prepare_data
from tasks.evaluation.evaluate import evaluate_model
from tasks.lineage import git_sha
from tasks.params import MODALITIES, Params, load_params, project_root
from tasks.tracking.mlflow_tracking import connect, fail_run, log_params, run_name
from tasks.tracking.registry import promote_model
from tasks.training.train import train_model
from tasks.versioning.dvc import version_data


@flow(name="modality-pipeline", flow_run_name="{modality}")
def modality_pipeline(modality: str, params: Params, root: Path, parent_run_id: str, lineage: dict) -> dict:
    """Train, evaluate and promote one modality, recorded as one MLflow run in its task's experiment."""
    client, experiment_id = connect(root, params, modality)
    section = params.section(modality)
    tags = {"pipeline_run_id": parent_run_id, "modality": modality, "task": section.task,
            "prefect_flow_run_id": flow_run.get_id(), **lineage}
    run_id = client.create_run(experiment_id, run_name=run_name(modality, section), tags=tags).info.run_id
    client.set_tag(parent_run_id, f"run_id.{modality}", run_id)
    try:
        log_params(client, run_id, section.model_dump())
        checkpoint = train_model(modality, params, root, run_id, root / "outputs" / run_id)
        metrics = evaluate_model(modality, params, root, run_id, checkpoint)
        promotion = promote_model(modality, params, root, run_id)
    except BaseException as error:
        fail_run(client, run_id, error)
        raise
    client.set_terminated(run_id, "FINISHED")
    return {"run_id": run_id, **metrics, "promotion": promotion}


@flow(name="attention-pipeline")
def attention_pipeline(params_path: str = "params.yaml", modalities: list[str] | None = None,
                       sweep: str | None = None) -> dict:
    """Prepare -> version -> (train -> evaluate -> promote) per modality; returns each modality's run id, test
    metrics and promotion decision. `sweep` tags every run, so `attnflow compare --sweep` can pick them out."""
    logger = get_run_logger()
    params = load_params(params_path)  # invalid params stop here, before any work
    root = project_root(params_path)
    selected = modalities or params.global_.modalities
    unknown = sorted(set(selected) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")

    for modality in selected:
        prepare_data(modality, params, root)
    lineage = {"data_md5": version_data(root), "git_sha": git_sha(root), **({"sweep": sweep} if sweep else {})}

    client, experiment_id = connect(root, params)
    parent = client.create_run(experiment_id, run_name="pipeline", tags={
        "prefect_flow_run_id": flow_run.get_id(), "modalities": ",".join(selected), **lineage})
    parent_run_id = parent.info.run_id
    log_params(client, parent_run_id, params.global_.model_dump())

    results, failed = {}, []
    for modality in selected:
        state = modality_pipeline(modality, params, root, parent_run_id, lineage, return_state=True)
        if state.is_completed():
            results[modality] = state.result()
        else:
            failed.append(modality)
    if failed:
        error = RuntimeError(f"modalities failed: {', '.join(failed)} (see their MLflow runs and Prefect logs)")
        fail_run(client, parent_run_id, error)
        raise error
    client.set_terminated(parent_run_id, "FINISHED")
    for modality, result in results.items():
        logger.info("%s: test accuracy %.4f, macro F1 %.4f (MLflow run %s)", modality, result["test_accuracy"],
                    result["test_macro_f1"], result["run_id"])
    return {"parent_run_id": parent_run_id, "data_md5": lineage["data_md5"], "modalities": results}
