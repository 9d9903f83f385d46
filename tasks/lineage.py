"""Where a run came from: code, data, parameters and environment. Tagged on every MLflow run."""

import hashlib
import platform
import re
import subprocess
from pathlib import Path

import yaml

from tasks.caching import CODE_ROOT, digest
from tasks.paths import ProjectPaths


def git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def git_sha(root: Path) -> str:
    return git(root, "rev-parse", "HEAD") or "unknown"


NOT_CODE = (":!params.yaml", ":!*.dvc", ":!.gitignore")  # settings and data pointers, which runs record themselves


def git_dirty(root: Path) -> bool:
    """Uncommitted changes to tracked or new files, other than settings and data pointers."""
    return bool(git(root, "status", "--porcelain", "--", ".", *NOT_CODE))


def is_commit(sha: str) -> bool:
    """A full 40-hex commit id: what may be passed to git (a recorded tag like `--output=x` must never be)."""
    return re.fullmatch(r"[0-9a-f]{40}", sha or "") is not None


def code_changes_since(root: Path, sha: str) -> list[str]:
    """Files whose content differs from commit `sha` (committed or not), other than settings and data pointers."""
    if not is_commit(sha):
        raise ValueError(f"{sha!r} is not a commit id (40 hexadecimal digits)")
    changed = git(root, "diff", "--name-only", sha, "--", ".", *NOT_CODE)
    if changed is None:
        raise ValueError(f"commit {sha} is not in the git repository at {root}")
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "--", ".", *NOT_CODE) or ""
    return sorted(set(changed.split()) | set(untracked.split()))


def environment_changes(tags: dict) -> list[str]:
    """What differs between the environment a run was trained in (its lineage tags) and this one: the torch build.
    Results match exactly only with the same torch (pyproject pins it; the device machines have the same)."""
    import torch

    recorded, here = tags.get("torch_version"), str(torch.__version__)
    return [f"torch {recorded} (the run) vs {here} (here)"] if recorded and recorded != here else []


def data_md5(root: Path) -> str:
    """The md5 DVC recorded for data/ in data.dvc."""
    return yaml.safe_load(ProjectPaths(root).data_dvc.read_text())["outs"][0]["md5"]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def lineage_tags(root: Path, params, md5: str) -> dict[str, str]:
    """Where a run came from. The device and torch build are reported by the train stage, which loads torch
    (``TRAINING_ENVIRONMENT``): a cached run records those of the run that trained its model."""
    return {
        "git_sha": git_sha(root),
        "git_dirty": str(git_dirty(root)).lower(),
        "data_md5": md5,
        "params_hash": digest(params)[:16],
        "lock_hash": file_sha256(CODE_ROOT / "uv.lock")[:16],
        "python_version": platform.python_version(),
    }
