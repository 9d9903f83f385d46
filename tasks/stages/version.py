"""Version-data stage: data/ as one DVC version (data.dvc), pushed to the default remote. It runs once per pipeline
run, after every modality's data is prepared: DVC locks its repository, so it is never called from parallel tasks."""

from pathlib import Path

from prefect import get_run_logger, task

from tasks.lineage import data_md5
from tasks.versioning.dvc import add_and_push


@task(name="version-data", retries=2, retry_delay_seconds=3)
def version_data(root: Path) -> str:
    """dvc add data && dvc push; returns the md5 of data/ recorded in data.dvc."""
    add_and_push(root)
    md5 = data_md5(root)
    get_run_logger().info("data/ is version %s (data.dvc), pushed to the DVC remote", md5)
    return md5
