"""DVC: version data/ as one unit (data.dvc), push it to the default remote, and check an old version out.

This is the only place that calls DVC (the version-data stage, tasks/stages/version.py, and `reproduce` use it).
It uses DVC's Python API in this process (a `dvc` subprocess would spend a second importing DVC each time). DVC
locks its repository, so it must not run from parallel tasks.
"""

from pathlib import Path


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


def add_and_push(root: Path) -> None:
    """dvc add data && dvc push (to the project's default remote)."""
    run_dvc(root, "add", targets=str(root / "data"))
    run_dvc(root, "push", targets=[str(root / "data.dvc")])


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
