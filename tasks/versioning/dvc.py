"""DVC: version data/ as one unit (data.dvc) and push it to the default remote.

This is the only place that calls DVC: DVC locks its repository, so it must not run from parallel tasks.
"""
import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger, task

from tasks.lineage import data_md5


def run_dvc(root: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {root}:\n{result.stderr or result.stdout}")
    return result.stdout


@task(name="version-data", retries=2, retry_delay_seconds=3)
def version_data(root: Path) -> str:
    """dvc add data && dvc push; returns the md5 of data/ recorded in data.dvc."""
    run_dvc(root, "add", "--quiet", "data")
    run_dvc(root, "push", "--quiet", "data.dvc")
    md5 = data_md5(root)
    get_run_logger().info("data/ is version %s (data.dvc), pushed to the DVC remote", md5)
    return md5


def checkout_data_version(root: Path, dvc_file: str) -> str:
    """Put data/ back to the version described by a data.dvc text (from the DVC cache, else the remote).

    Returns the data.dvc text it replaced, so the caller can go back to it.
    """
    pointer = root / "data.dvc"
    previous = pointer.read_text()
    pointer.write_text(dvc_file)
    try:
        run_dvc(root, "pull", "--force", "--quiet", "data.dvc")
    except RuntimeError:
        pointer.write_text(previous)
        raise
    return previous
