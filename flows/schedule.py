"""Scheduled runs: the same `attention_pipeline` flow, served as Prefect deployment(s) on params.yaml's
global.schedule, and the `monitor` flow on global.monitor.cron, against a real Prefect server
(tasks/scheduling/server.py)."""

from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from flows.monitor import monitor
from flows.pipeline import attention_pipeline
from tasks.params import load_params, project_root
from tasks.scheduling.server import prefect_server
from tasks.scheduling.status import schedule_status

DEPLOYMENT = "scheduled"


def deployments(params_path: str | Path) -> list:
    """One deployment running every modality, or with schedule.per_modality one per modality (modalities=[m]); and the
    monitor's, on global.monitor.cron (in the schedule's timezone)."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    schedule = params.global_.schedule
    groups = (
        {f"{DEPLOYMENT}-{m}": [m] for m in params.global_.modalities} if schedule.per_modality else {DEPLOYMENT: None}
    )
    return [
        attention_pipeline.to_deployment(
            name=name,
            schedules=[Cron(schedule.cron, timezone=schedule.timezone)],
            tags=["attnflow"],
            parameters={"params_path": str(params_path), "modalities": modalities},
            description=f"attention_pipeline on {params_path}",
        )
        for name, modalities in groups.items()
    ] + [
        monitor.to_deployment(
            name=DEPLOYMENT,
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


def pipeline_status(params_path: str | Path) -> list[dict]:
    with prefect_server(project_root(params_path), start=False):
        return schedule_status(attention_pipeline.name) + schedule_status(monitor.name)
