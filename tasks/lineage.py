"""Where a run came from: git commit and data version. Read once per pipeline run, tagged on every run."""
import subprocess
from pathlib import Path

import yaml


def git_sha(root: Path) -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def data_md5(root: Path) -> str:
    """The md5 DVC recorded for data/ in data.dvc."""
    return yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]
