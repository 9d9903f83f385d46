"""A trained model's files (outputs/<run id>/: the checkpoint and, for token-based tasks, the tokenizer): where a
cached train result says they are, and how a project that lacks them gets them.

The train stage's result names the checkpoint relative to the project root, so it holds in any clone; it is read
against the root of the project reading it (``checkpoint_path``). The train stage also logs the folder to its MLflow
run (``TRAINED_ARTIFACTS``): a clone or worker that gets the result from a shared result storage, but did not train,
downloads the files from there into the same place (``fetch_trained``). Workers that share results share the MLflow
store (tasks/caching.py says why), so the run is in theirs too.
"""

import shutil
import tempfile
from pathlib import Path

from tasks.names import CHECKPOINT

TRAINED_ARTIFACTS = "trained"  # the train run's artifact folder: the files of outputs/<run id>/ after training


def relative_checkpoint(root: Path, out_dir: Path) -> str:
    """How a train result names its checkpoint: relative to the project root, in POSIX form."""
    return (out_dir / CHECKPOINT).relative_to(root).as_posix()


def checkpoint_path(root: Path, trained: dict) -> Path:
    """The checkpoint of a train result in this project (an absolute path, from results made before they were
    relative, stays as it is)."""
    return root / trained["checkpoint"]


def log_trained(client, run_id: str, out_dir: Path) -> None:
    """Log the trained files to the train stage's run, where another clone fetches them from."""
    client.log_artifacts(run_id, str(out_dir), TRAINED_ARTIFACTS)


def fetch_trained(client, root: Path, trained: dict, logger) -> bool:
    """The result's checkpoint is in this project, or is now: downloaded with the files beside it from the run that
    trained it, into a scratch folder, then moved into place. False when that run has no such files (trained
    before they were logged, or deleted): the caller trains again."""
    target = checkpoint_path(root, trained)
    if target.exists():
        return True
    from mlflow.exceptions import MlflowException

    target.parent.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fetch-", dir=target.parent.parent))
    try:
        files = Path(client.download_artifacts(trained["run_id"], TRAINED_ARTIFACTS, str(scratch)))
        if not (files / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{TRAINED_ARTIFACTS}/{CHECKPOINT} is not in run {trained['run_id']}")
        target.parent.mkdir(exist_ok=True)
        for path in files.iterdir():
            path.replace(target.parent / path.name)
    except (MlflowException, OSError) as error:
        logger.warning("the cached checkpoint %s is not here and cannot be fetched from run %s (%s): training again",
                       trained["checkpoint"], trained["run_id"], error)  # fmt: skip
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("fetched %s from MLflow run %s, which trained it", trained["checkpoint"], trained["run_id"])
    return True
