"""Scheduled runs: the same `attention_pipeline` flow, served as Prefect deployment(s) on params.yaml's
global.schedule, and the `monitor` flow on global.monitor.cron, against a real Prefect server
(tasks/scheduling/server.py). Either `serve`d (this process runs them) or deployed to a work pool, whose workers run
them (`deploy_to_pool`, docs/how-to/work-pools.md)."""

import inspect
from pathlib import Path

from prefect import Flow, get_client, serve
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron

from flows.monitor import monitor
from flows.pipeline import attention_pipeline
from tasks.params import load_params, project_root
from tasks.scheduling.server import ServerUnavailable, is_up, prefect_server
from tasks.scheduling.status import schedule_status

DEPLOYMENT = "scheduled"
CODE_ROOT = Path(__file__).resolve().parents[1]  # this checkout: a worker runs the flows' code from the same path


class WorkPoolMissing(LookupError):
    """The Prefect server has no work pool of the name given to `attnflow schedule deploy --pool`."""


def from_checkout(flow: Flow) -> Flow:
    """The flow loaded from this checkout's folder, so that its deployment tells a worker where the code is (a
    `set_working_directory` pull step to CODE_ROOT): the worker's machine needs the project's code at that path."""
    entrypoint = f"{Path(inspect.getsourcefile(flow.fn)).resolve().relative_to(CODE_ROOT)}:{flow.fn.__name__}"
    return flow.from_source(str(CODE_ROOT), entrypoint)


def deployments(params_path: str | Path, pool: str | None = None) -> list:
    """One deployment running the selected tasks, or with schedule.per_task one per task (tasks=[name]); and the
    monitor's, on global.monitor.cron (in the schedule's timezone). With a work pool, its workers run them (with the
    code of this checkout); else the process that serves them does."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    schedule = params.global_.schedule
    pipeline, monitoring = (
        (attention_pipeline, monitor) if pool is None else map(from_checkout, (attention_pipeline, monitor))
    )
    groups = {DEPLOYMENT: None}
    if schedule.per_task:
        groups = {f"{DEPLOYMENT}-{name}": [name] for name in params.selected_tasks()}
    return [
        pipeline.to_deployment(
            name=name,
            work_pool_name=pool,
            schedules=[Cron(schedule.cron, timezone=schedule.timezone)],
            tags=["attnflow"],
            parameters={"params_path": str(params_path), "tasks": tasks},
            description=f"attention_pipeline on {params_path}",
        )
        for name, tasks in groups.items()
    ] + [
        monitoring.to_deployment(
            name=DEPLOYMENT,
            work_pool_name=pool,
            schedules=[Cron(params.global_.monitor.cron, timezone=schedule.timezone)],
            tags=["attnflow"],
            parameters={"params_path": str(params_path)},
            description=f"monitor of the served models of {params_path}",
        )
    ]


def serve_pipeline(params_path: str | Path) -> None:
    """Serve the deployments until interrupted; their runs execute in this process's machine."""
    with prefect_server(project_root(params_path)) as api_url:
        print(f"Prefect server: {api_url} (UI: {api_url.removesuffix('/api')})", flush=True)
        serve(*deployments(params_path))


def deploy_to_pool(params_path: str | Path, pool: str) -> tuple[str, list[str]]:
    """Create or update the deployments on the Prefect server for the workers of a work pool; returns the server's
    API URL and the deployments' names. The server must be up and hold the pool: a deployment outlives this command,
    so a server started for it would take the deployment down with it."""
    with prefect_server(project_root(params_path), start=False) as api_url:
        if not is_up(api_url):
            raise ServerUnavailable(f"no Prefect server answers at {api_url} (PREFECT_API_URL)")
        with get_client(sync_client=True) as client:
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                raise WorkPoolMissing(
                    f"the Prefect server at {api_url} has no work pool {pool!r}; create it with "
                    f"`prefect work-pool create {pool} --type process`"
                ) from None
        created = deployments(params_path, pool)
        for deployment in created:
            deployment.apply()
        return api_url, [f"{deployment.flow_name}/{deployment.name}" for deployment in created]


def pipeline_status(params_path: str | Path) -> list[dict]:
    with prefect_server(project_root(params_path), start=False):
        return schedule_status(attention_pipeline.name) + schedule_status(monitor.name)
