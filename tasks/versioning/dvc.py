"""DVC: version data/ as one unit (data.dvc) and push it to the default remote.

This is the only place that calls DVC. It uses DVC's Python API in this process (a `dvc` subprocess would
spend a second importing DVC each time). DVC locks its repository, so it must not run from parallel tasks.
"""
from pathlib import Path

from prefect import get_run_logger, task

from tasks.lineage import data_md5


def run_dvc(root: Path, operation: str, **arguments):
    """Call one method of DVC's Repo (add, push, pull, checkout) in the project at `root`.

    Targets are absolute paths (DVC reads relative ones from the working directory). DVC's own errors come back
    as a RuntimeError naming the operation and the project.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # no "To track the changes with git, run: ..." hints
            return getattr(repo, operation)(**arguments)
    except DvcException as error:
        raise RuntimeError(f"DVC {operation} failed in {root}: {error}") from error


@task(name="version-data", retries=2, retry_delay_seconds=3)
def version_data(root: Path) -> str:
    """dvc add data && dvc push; returns the md5 of data/ recorded in data.dvc."""
    run_dvc(root, "add", targets=str(root / "data"))
    run_dvc(root, "push", targets=[str(root / "data.dvc")])
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
        run_dvc(root, "pull", targets=[str(pointer)], force=True)
    except RuntimeError:
        pointer.write_text(previous)
        raise
    return previous
