"""Version-data stage: data/ as one DVC version (data.dvc), pushed to the default remote. It runs once per pipeline
run, after every task's data is prepared: DVC locks its repository, so it is never called from parallel tasks."""

from pathlib import Path

from prefect import get_run_logger, task

from tasks.lineage import data_md5
from tasks.versioning.dvc import DvcError, add_and_push


def retry_if_it_may_pass(_task, _task_run, state) -> bool:
    """Retry a failed versioning (a remote may answer the next time), unless credentials are missing."""
    try:
        state.result()
    except DvcError as error:
        return error.retryable
    except BaseException:
        return True
    return True


@task(name="version-data", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_if_it_may_pass)
def version_data(root: Path) -> str:
    """dvc add data && dvc push; returns the md5 of data/ recorded in data.dvc."""
    add_and_push(root)
    md5 = data_md5(root)
    get_run_logger().info("data/ is version %s (data.dvc), pushed to the DVC remote", md5)
    return md5
