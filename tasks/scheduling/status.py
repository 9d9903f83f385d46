"""What is scheduled: the pipeline's deployments, their schedules, next scheduled run and last runs."""

from prefect import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort


def describe(schedule) -> str:
    """'0 3 * * * (UTC)' for a cron schedule; interval and rrule schedules as Prefect prints them."""
    cron = getattr(schedule, "cron", None)
    return f"{cron} ({schedule.timezone})" if cron else str(schedule)


def schedule_status(flow_name: str, last: int = 5) -> list[dict]:
    """One entry per deployment of flow_name: name, schedules, paused, next scheduled run, its last runs."""
    scheduled = FlowRunFilterStateType(any_=[StateType.SCHEDULED])
    not_scheduled = FlowRunFilterStateType(not_any_=[StateType.SCHEDULED])
    with get_client(sync_client=True) as client:
        entries = []
        for deployment in client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=DeploymentSort.NAME_ASC, limit=200
        ):  # None: HTTP 422
            only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))

            def runs(state_type, sort, limit, only_this=only_this):
                return client.read_flow_runs(
                    deployment_filter=only_this,
                    sort=sort,
                    limit=limit,
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=state_type)),
                )

            upcoming = runs(scheduled, FlowRunSort.EXPECTED_START_TIME_ASC, 1)
            entries.append(
                {
                    "name": f"{flow_name}/{deployment.name}",
                    "schedules": [
                        describe(s.schedule) + ("" if s.active else " inactive") for s in deployment.schedules
                    ],
                    "paused": deployment.paused,
                    "parameters": deployment.parameters,
                    "next": upcoming[0].expected_start_time if upcoming else None,
                    "last_runs": [
                        (run.name, run.state_name, run.start_time or run.expected_start_time)
                        for run in runs(not_scheduled, FlowRunSort.EXPECTED_START_TIME_DESC, last)
                    ],
                }
            )
    return entries
