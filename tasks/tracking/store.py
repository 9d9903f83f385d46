"""Where runs go: the tracking URI, without importing MLflow (seconds), so that the command line can check it
before it starts anything (flows/cli.py)."""

import os
from pathlib import Path

from tasks.params import Params
from tasks.paths import ProjectPaths


def tracking_uri(root: Path, params: Params) -> str:
    """params.yaml's tracking.uri, else $MLFLOW_TRACKING_URI, else a sqlite store in the project."""
    configured = params.global_.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    return configured or f"sqlite:///{ProjectPaths(root).mlflow_db.resolve()}"
