"""What the project itself creates (the venv, uv, run outputs, stores) never counts as a code change."""

import subprocess

import pytest

from tasks.lineage import code_changes_since, git_dirty, git_sha
from tests.conftest import REPO, make_tiny_project


def test_project_state_folders_are_git_ignored():
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            ".venv/",
            ".tools/",
            "outputs/",
            ".prefect/",
            "mlflow.db",
            "mlartifacts/",
            ".dvc-storage/",
            ".attnflow-tmp/",
            "data",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(ignored) == 9, ignored


def test_a_fresh_project_is_clean_until_code_changes(tmp_path):
    project = make_tiny_project(tmp_path / "project")
    for state in (".tools/bin", "outputs/run", ".prefect", "mlartifacts", ".attnflow-tmp"):
        (project / state).mkdir(parents=True)
        (project / state / "file").write_text("state, not code")
    sha = git_sha(project)
    assert not git_dirty(project) and code_changes_since(project, sha) == []
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n")  # settings: recorded apart
    assert code_changes_since(project, sha) == []
    (project / "new_module.py").write_text("x = 1\n")
    assert git_dirty(project) and code_changes_since(project, sha) == ["new_module.py"]


def test_a_recorded_commit_must_be_a_commit_id(tmp_path):
    """reproduce passes a run's recorded git_sha to git: a tag like `--output=<file>` would make git write a file."""
    project = make_tiny_project(tmp_path / "project")
    target = tmp_path / "written-by-git"
    for sha in (f"--output={target}", "HEAD", git_sha(project)[:12], ""):
        with pytest.raises(ValueError, match="is not a commit id"):
            code_changes_since(project, sha)
    assert not target.exists()
    assert code_changes_since(project, git_sha(project)) == []
