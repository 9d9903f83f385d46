"""DVC: version data/ as one unit (data.dvc), push it to the default remote, and check an old version out.

This is the only place that calls DVC (the version-data stage, tasks/stages/version.py, and `reproduce` use it).
It uses DVC's Python API in this process (a `dvc` subprocess would spend a second importing DVC each time). DVC
locks its repository, so it must not run from parallel tasks.
"""

from pathlib import Path

from tasks.errors import EXIT_STORAGE, AttnflowError
from tasks.paths import ProjectPaths


class DvcError(AttnflowError, RuntimeError):
    """A DVC operation failed: the message names it, the project and the default remote (where push and pull go)."""

    exit_code = EXIT_STORAGE

    @property
    def retryable(self) -> bool:
        """False when trying again would fail the same way: there are no credentials to send."""
        try:
            from botocore.exceptions import NoCredentialsError
        except ImportError:
            return True
        return not isinstance(self.__cause__, NoCredentialsError)


def remote_errors() -> tuple[type[Exception], ...]:
    """What a remote raises through DVC unwrapped: botocore's errors for S3 (no credentials, no connection, denied),
    file system errors (s3fs: no such bucket)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no S3 support installed
        return (OSError,)
    return BotoCoreError, ClientError, OSError


def run_dvc(root: Path, operation: str, **arguments):
    """Call one method of DVC's Repo (add, push, pull, checkout) in the project at `root`.

    Targets are absolute paths (DVC reads relative ones from the working directory). DVC's own errors, and a
    remote's, come back as a DvcError naming the operation, the project and the default remote.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    remote = ""
    try:
        with Repo(str(root)) as repo:
            remote = describe_remote(repo.config)
            repo.scm_context.quiet = True  # no "To track the changes with git, run: ..." hints
            return getattr(repo, operation)(**arguments)
    except (DvcException, *remote_errors()) as error:
        raise DvcError(f"DVC {operation} failed in {root}{remote}: {type(error).__name__}: {error}") from error


def describe_remote(config) -> str:
    """' (remote NAME at URL)' for the default remote of a DVC config, with where S3 settings come from."""
    from tasks.params import redact

    name = config["core"].get("remote")
    if not name or name not in config["remote"]:
        return " (no default remote: `dvc remote add -d NAME URL`)"
    url = config["remote"][name]["url"]
    described = f" (remote {name!r} at {redact(url)}"
    if url.startswith("s3://"):
        from tasks.result_storage import S3_ENVIRONMENT

        described += f"; {S3_ENVIRONMENT}, or the remote's endpointurl in .dvc/config.local"
    return described + ")"


def add_and_push(root: Path) -> None:
    """dvc add data && dvc push (to the project's default remote)."""
    run_dvc(root, "add", targets=str(ProjectPaths(root).data))
    run_dvc(root, "push", targets=[str(ProjectPaths(root).data_dvc)])


def checkout_data_version(root: Path, dvc_file: str) -> str:
    """Put data/ back to the version described by a data.dvc text (from the DVC cache, else the remote).

    Returns the data.dvc text it replaced, so the caller can go back to it.
    """
    pointer = ProjectPaths(root).data_dvc
    previous = pointer.read_text()
    pointer.write_text(dvc_file)
    try:
        run_dvc(root, "pull", targets=[str(pointer)], force=True)
    except RuntimeError:
        pointer.write_text(previous)
        raise
    return previous
