"""The pipeline: prepare data for the selected tasks, version it with DVC once, then pretrain (a task with a
`pretrain` section), train, evaluate, explain, compress and promote each task in its own subflow (and register the
compact model of a new champion). MLflow: one "pipeline" run in `tracking.experiment`; each task's run goes to the
task's experiment (`<tracking.experiment>-<task>`, where runs of a task are compared) and is linked to the pipeline
run by the tags `pipeline_run_id` and `mlflow.parentRunId` (the pipeline run holds `run_id.<task>` tags back).

Stages are cached across flow runs (see tasks/caching.py): unchanged stages show as Cached in
Prefect, and the task run records which run produced the result (tag ``cached_from_run_id``).
A task that fails is marked FAILED in MLflow and does not stop the others; the pipeline then
fails, naming the tasks that did.

The task subflows run one after another in this process, or at once on a Dask cluster (``global.executor``,
tasks/executor.py); data preparation, DVC and the pipeline's own MLflow run stay in this process either way.
"""

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.caching import call_cached, digest
from tasks.errors import EXIT_FAILED, AttnflowError
from tasks.executor import THREADS_TAG, exclusive, open_executor, use_worker_threads
from tasks.lineage import lineage_tags
from tasks.locking import project_lock
from tasks.params import Params, load_params, project_root
from tasks.stages.compress import compress_model, register_compact_model
from tasks.stages.evaluate import evaluate_model
from tasks.stages.explain import explain_model
from tasks.stages.prepare import data_recipe, dataset_matches, prepare_data
from tasks.stages.pretrain import lineage_tags as pretrain_lineage
from tasks.stages.pretrain import pretrain_model
from tasks.stages.promote import promote_model
from tasks.stages.report import report_results
from tasks.stages.train import TRAINING_ENVIRONMENT, train_model
from tasks.stages.version import version_data
from tasks.tracking.checkpoints import fetch_trained
from tasks.tracking.pipeline_runs import NOT_REGISTERED, PipelineRun, TaskRun


class PipelineFailed(AttnflowError, RuntimeError):
    """A task failed (the others ran); its MLflow run is FAILED with the error."""

    exit_code = EXIT_FAILED


@flow(name="task-pipeline", flow_run_name="{task}")
def task_pipeline(
    task: str,
    params: Params,
    root: Path,
    parent_run_id: str,
    lineage: dict,
    data_recipe: dict,
    force: bool = False,
    tags: dict | None = None,
    register: bool = True,
) -> dict:
    """Train, evaluate and promote one task, recorded as one MLflow run in the task's experiment. register=False
    leaves the model out of the registry (a sweep registers its winner only, ``register_model``)."""
    spec = params.kind(task)
    metrics = (*spec.metrics, *spec.val_metrics)
    run_tags = {"prefect_flow_run_id": flow_run.get_id(), **(tags or {})}
    run = TaskRun.open(root, params, task, parent_run_id, lineage, run_tags)
    with run.failing():
        stage_inputs = dict(task=task, params=params, root=root, run_id=run.run_id, data_recipe=data_recipe)
        fetched = lambda r: fetch_trained(run.client, root, r, get_run_logger())  # noqa: E731
        pretrained = None
        if getattr(params.task(task), "pretrain", None) is not None:  # its own run; cached: the run that pretrained
            pretrained = call_cached(pretrain_model, force=force, outputs_exist=fetched, **stage_inputs)
            run.set_tags(pretrain_lineage(pretrained))
        trained = call_cached(  # a checkpoint trained in another clone is fetched from the run that trained it
            train_model, force=force, outputs_exist=fetched, pretrained=pretrained, **stage_inputs
        )
        environment = {key: trained[key] for key in TRAINING_ENVIRONMENT}  # where the model was trained
        run.set_tags(environment)
        evaluated = call_cached(
            evaluate_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
        )
        if spec.explainer:  # cached: its curves and viewer are in the run that made them
            explained = call_cached(
                explain_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
            )
            run.adopt(explained, explained["metrics"], {"explained_in_run_id": explained["run_id"]})
        compressed = None
        if params.global_.compress.enabled:  # cached: its table, plot and compact model are in the run that made it
            compressed = call_cached(
                compress_model, force=force, outputs_exist=lambda r: True, trained=trained, **stage_inputs
            )
            run.adopt(compressed, compressed["metrics"], {"compressed_in_run_id": compressed["run_id"],
                      "compact_variant": compressed["variant"], "compact_reason": compressed["reason"]})  # fmt: skip
        # every stage came from the cache: point at the run that made (and promoted) the result
        figures = {name: evaluated[name] for name in metrics}
        cached = run.adopt(evaluated, figures, {"cached_from_run_id": evaluated["run_id"]})
        cached_from = evaluated["run_id"] if cached else None
        run.name_as(cached_from)  # before promotion: the model card shows the name
        if register:
            promotion = register_model(task, params, root, run.run_id, evaluated["run_id"], compressed)
        else:
            promotion = None
            run.set_tags({"registration": NOT_REGISTERED})
    run.finish()
    return {
        "run_id": run.run_id,
        "cached_from_run_id": cached_from,
        "promotion": promotion,
        "compressed": compressed,
        **environment,
        **{name: evaluated[name] for name in metrics},
    }


def register_model(task: str, params: Params, root: Path, run_id: str, evaluated_run_id: str,
                   compressed: dict | None) -> dict | None:  # fmt: skip
    """Promote the run's model (not when its evaluation is cached from another run, which was promoted then), and
    register its compact form when that model is the champion; returns the promotion (None when none ran)."""
    promotion = None
    if evaluated_run_id == run_id:
        with exclusive(f"attnflow-promote-{root}-{task}"):  # parallel runs of a task take turns
            promotion = promote_model(task, params, root, run_id)
    if compressed:  # tagged either way; registered with the alias `compact` when it compresses the champion
        with exclusive(f"attnflow-promote-{root}-{task}"):
            register_compact_model(task, params, root, run_id, compressed, evaluated_run_id)
    return promotion


@task(name="task-pipeline-on-worker", task_run_name="{task}", cache_policy=NO_CACHE)
def task_on_worker(
    task: str,
    params: Params,
    root: Path,
    parent_run_id: str,
    lineage: dict,
    data_recipe: dict,
    force: bool,
    tags: dict | None,
    slots_by_host: dict[str, int],
    register: bool = True,
) -> dict:
    """A task's subflow in a Dask worker (Prefect submits tasks to a task runner, not flows), with the worker's
    torch threads set first and recorded on its MLflow run (tag torch_threads)."""
    threads = use_worker_threads(slots_by_host)
    get_run_logger().info("%s: training with %d torch threads on this worker", task, threads)
    tags = {**(tags or {}), THREADS_TAG: str(threads)}
    return task_pipeline(task, params, root, parent_run_id, lineage, data_recipe, force, tags, register)


@flow(name="attention-pipeline")
def attention_pipeline(
    params_path: str = "params.yaml",
    tasks: list[str] | None = None,
    force: bool = False,
    params: Params | None = None,
    tags: dict | None = None,
    register: bool = True,
) -> dict:
    """Prepare -> version -> (train -> evaluate -> promote) per task; returns each task's run id, test
    metrics, validation figures and promotion decision.

    ``params`` replaces the file's contents when given (reproduce, sweeps); the project is still the
    folder of ``params_path``. ``tags`` are added to every MLflow run (``sweep_id`` picks out a sweep's
    runs for ``attnflow compare --sweep``); ``force`` ignores the stage cache; ``register=False`` registers no model
    (a sweep's configurations: the sweep registers its winner). The tasks run one after another, or at once on a
    Dask cluster (global.executor, tasks/executor.py).
    """
    logger = get_run_logger()
    params = params or load_params(params_path)  # invalid params stop here, before any work
    root = project_root(params_path)
    selected = selected_tasks(params, tasks)
    with (
        project_lock(root, on_wait=logger.warning),  # one pipeline at a time per project (tasks/locking.py)
        open_executor(params.global_.executor, logger) as executor,  # a scheduler that does not answer stops here
    ):
        return run_pipelines([(params, tags)], root, selected, force, logger, executor, register)[0]


def selected_tasks(params: Params, tasks: list[str] | None) -> list[str]:
    """The tasks to run: those asked for (--task), else params.yaml's selection (Params.selected_tasks)."""
    for name in tasks or ():
        params.task(name)  # an unknown one: ParamsError naming the tasks there are
    return list(tasks or params.selected_tasks())


def run_pipelines(runs: list[tuple[Params, dict | None]], root: Path, selected: list[str], force: bool, logger,
                  executor, register: bool = True) -> list[dict]:  # fmt: skip
    """Pipeline runs (one per (params, tags): the pipeline, or a sweep's configurations), under the project lock.

    Runs that read the same data share one preparation and one DVC version, in this process; their task
    pipelines then go to the executor together. Runs whose data differ take turns, as data/ holds one version.
    Returns each run's result, in order; a run whose tasks failed raises PipelineFailed once all have ended.
    """
    results, failures = [None] * len(runs), []
    for group in same_data(runs, root, selected):
        recipes, lineage_of = prepare_and_version(group, runs, root, selected, force)
        opened = {}
        try:  # interrupted, or a worker's error escaped: no run of the group is left RUNNING
            for index in group:
                params, tags = runs[index]
                tags = {"prefect_flow_run_id": flow_run.get_id(), **lineage_of[index], **(tags or {})}
                opened[index] = PipelineRun.open(root, params, selected, tags, logger)
            arguments = jobs(opened, runs, root, selected, recipes, lineage_of, force, register)
            outcomes = executor.run(task_pipeline, task_on_worker, arguments)
        except BaseException as error:
            for pipeline_run in opened.values():
                pipeline_run.fail(error)
            raise
        errors = []
        for index, pipeline_run in opened.items():  # each closed, whatever happens to the others
            mine = {name: outcomes[(index, name)] for name in selected}
            try:
                results[index] = close_pipeline_run(pipeline_run, runs[index][0], root, mine, lineage_of[index], logger)
            except BaseException as error:
                errors.append(error)
        failures += [error for error in errors if isinstance(error, PipelineFailed)]
        for error in errors:
            if not isinstance(error, PipelineFailed):
                raise error
    if failures:
        raise failures[0] if len(failures) == 1 else PipelineFailed("; ".join(map(str, failures)))
    return results


def jobs(opened: dict, runs: list, root: Path, selected: list[str], recipes: dict, lineage_of: dict, force: bool,
         register: bool = True):  # fmt: skip
    """The arguments of each (run, task)'s task pipeline."""
    return {
        (index, name): dict(
            task=name,
            params=runs[index][0],
            root=root,
            parent_run_id=pipeline_run.run_id,
            lineage=lineage_of[index],
            data_recipe=recipes[name],
            force=force,
            tags=runs[index][1],
            register=register,
        )  # fmt: skip
        for index, pipeline_run in opened.items()
        for name in selected
    }


def same_data(runs: list[tuple[Params, dict | None]], root: Path, selected: list[str]) -> list[list[int]]:
    """The runs' indices grouped by the data they read (every selected task's recipe), in order of appearance."""
    groups = {}
    for index, (params, _) in enumerate(runs):
        groups.setdefault(digest({m: data_recipe(m, params, root) for m in selected}), []).append(index)
    return list(groups.values())


def prepare_and_version(group: list[int], runs: list, root: Path, selected: list[str], force: bool):
    """Prepare the group's data (cached) and version it with DVC once, in this process; returns each task's recipe
    and each run's lineage tags."""
    params = runs[group[0]][0]
    recipes = {
        m: call_cached(
            prepare_data,
            force=force,
            outputs_exist=lambda recipe: dataset_matches(root, recipe),
            task=m,
            params=params,
            root=root,
            recipe=data_recipe(m, params, root),
        )
        for m in selected
    }
    md5 = version_data(root)
    return recipes, {index: lineage_tags(root, runs[index][0], md5) for index in group}


def close_pipeline_run(pipeline_run: PipelineRun, params: Params, root: Path, outcomes: dict, lineage: dict,
                       logger) -> dict:  # fmt: skip
    """Record the task runs' outcomes on the pipeline run and close it, FINISHED, or FAILED naming the tasks
    that failed (PipelineFailed); whatever goes wrong here, the run is closed, never left RUNNING."""
    results, failed = {}, []
    with pipeline_run.failing():
        for name, outcome in outcomes.items():
            if isinstance(outcome, BaseException):  # its worker was lost: nothing closed its run
                logger.error("%s: its Dask worker was lost: %s", name, outcome)
                pipeline_run.close_open_task_runs(outcome, name)
                failed.append(name)
            elif outcome.is_completed():
                results[name] = outcome.result()
            else:
                failed.append(name)
        # the pipeline run lists the training environments of its task runs
        pipeline_run.set_tags({key: ",".join(sorted({result[key] for result in results.values()}))
                               for key in TRAINING_ENVIRONMENT})  # fmt: skip
        report_results(params, root, results, failed)  # in the Prefect UI: metrics table, promotions, links
        if failed:
            raise PipelineFailed(f"tasks failed: {', '.join(failed)} (see their MLflow runs and Prefect logs)")
    pipeline_run.finish()
    for name, result in results.items():
        cached = f", cached from run {result['cached_from_run_id']}" if result["cached_from_run_id"] else ""
        figures = ", ".join(f"{metric} {result[metric]:.4f}" for metric in params.kind(name).metrics)
        logger.info("%s: %s (MLflow run %s%s)", name, figures, result["run_id"], cached)
    return {"parent_run_id": pipeline_run.run_id, "data_md5": lineage["data_md5"], "tasks": results}
