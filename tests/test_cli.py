"""Every misuse of the command line ends in one line on stderr, its documented exit code and no traceback; run as a
user runs it, in a fresh process. The full traceback of bad data goes to the log file only."""

import os
import subprocess
import sys

import pytest

from flows.cli import exit_code
from tasks.errors import EXIT_BAD_DATA, EXIT_INVALID
from tests.conftest import IMAGE, REPO, TEXT, tiny_params, write_params
from tests.test_import import write_rows

pytestmark = pytest.mark.integration  # the command line, run in its own process as a user runs it


def attnflow(project, *arguments: str, timeout: int = 60) -> subprocess.CompletedProcess:
    own = ("PREFECT_API", "PREFECT_LOGGING", "MLFLOW_")  # as a user's shell has it: none of the test session's own
    env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
    env.update(PREFECT_HOME=str(project / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "flows.cli", *arguments]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and all(phrase in line for phrase in phrases), line


@pytest.mark.parametrize(
    "arguments, phrases",
    [
        (["sweep", "--task", IMAGE, "--grid", "model.depth"], ["--grid 'model.depth' must look like"]),
        (["sweep", "--task", IMAGE, "--grid", "model.dept=1,2"], [f"tasks.{IMAGE}.model.dept: no such key"]),
        (["sweep", "--task", IMAGE, "--grid", "model.depth=0,1"], [f"tasks.{IMAGE}.model.depth", "(got 0)"]),
        (["reproduce", "0123456789abcdef"], ["no run '0123456789abcdef'", "no MLflow store at"]),
        (["compare", "--task", "nope"], ["unknown task 'nope'", "language-id"]),
        (["run", "--params", "missing.yaml"], ["missing.yaml: cannot read params: No such file"]),
        (
            ["run", "--set", f"tasks.{IMAGE}.train.epochs=0"],
            [f"--set tasks.{IMAGE}.train.epochs=0", "an integer from 1 to 1000000 (got 0)"],
        ),
        (["run", "--set", f"tasks.{IMAGE}.train.epoch=3"], [f"tasks.{IMAGE}.train.epoch: no such key"]),
        (["run", "--set", "nonsense"], ["--set nonsense", "must look like section.key=value"]),
    ],
)
def test_a_mistake_is_one_line_and_exit_2_before_anything_runs(tmp_path, arguments, phrases):
    write_params(tmp_path, tiny_params())
    assert_one_line_error(attnflow(tmp_path, *arguments), EXIT_INVALID, *phrases)
    assert not (tmp_path / ".prefect" / "temporary-server.log").exists()  # no server was started
    assert not (tmp_path / "mlflow.db").exists()  # nor a store created


def test_bad_params_name_the_key(tmp_path):
    params = tiny_params()
    params["tasks"][TEXT]["train"]["epochs"] = "three"
    write_params(tmp_path, params)
    result = attnflow(tmp_path, "run")
    assert_one_line_error(result, EXIT_INVALID, f"params.yaml: invalid params: tasks.{TEXT}.train.epochs", "'three'")
    (tmp_path / "params.yaml").write_text("global: [unclosed\n")
    assert_one_line_error(attnflow(tmp_path, "run"), EXIT_INVALID, "params.yaml: not valid YAML")


def test_an_unknown_run_in_an_existing_store(tmp_path):
    from mlflow.tracking import MlflowClient

    write_params(tmp_path, tiny_params())
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # creates the store
    result = attnflow(tmp_path, "reproduce", "0123456789abcdef")
    assert_one_line_error(result, EXIT_INVALID, "no run '0123456789abcdef' in the MLflow store sqlite:///")


def test_version_and_help_with_examples(tmp_path):
    assert attnflow(tmp_path, "--version").stdout.startswith("attnflow ")
    help_text = attnflow(tmp_path, "--help").stdout
    assert "examples:" in help_text and "exit codes:" in help_text
    assert f"--set tasks.{IMAGE}.train.epochs=5" in help_text


# starts the temporary Prefect server and runs the prepare stage
def test_data_an_importer_rejects_is_one_line_with_the_traceback_in_the_log(tiny_project):
    """A TSV test file that the split entry reads as CSV (it inherits the main file's layout)."""
    write_rows(tiny_project / "train.csv", [["text", "label"], *[[f"w {i}", "ab"[i % 2]] for i in range(20)]])
    write_rows(tiny_project / "test.tsv", [["text", "label"], ["w x", "a"], ["w y", "b"]], "\t")
    params = tiny_params()
    params["tasks"][TEXT]["data"] = {"import_from": {"path": "train.csv", "test": {"path": "test.tsv"}}}
    write_params(tiny_project, params)
    result = attnflow(tiny_project, "run", "--task", TEXT, timeout=300)
    assert_one_line_error(result, EXIT_BAD_DATA, "test.tsv: missing column", "looks tab-separated: set layout: tsv")
    log = (tiny_project / ".prefect" / "attnflow.log").read_text()
    assert "Traceback" in log and "DataImportError" in log
    assert not (tiny_project / "data" / TEXT).exists() and not (tiny_project / "data.dvc").exists()


def test_every_reported_error_carries_its_exit_code():
    """The errors a command reports as one line say their own exit code (tasks/errors.py); the table of codes in
    `attnflow -h` lists each."""
    from flows.experiments import CodeChangedError
    from flows.pipeline import PipelineFailed
    from tasks.data.importers import DataImportError
    from tasks.errors import EXIT_CODE_CHANGED, EXIT_CODES, EXIT_FAILED, EXIT_STORAGE, AttnflowError, UserError
    from tasks.executor import ExecutorUnavailable
    from tasks.params import ParamsError
    from tasks.result_storage import ResultStorageError
    from tasks.versioning.dvc import DvcError

    expected = {ParamsError: EXIT_INVALID, ExecutorUnavailable: EXIT_INVALID, DataImportError: EXIT_BAD_DATA,
                PipelineFailed: EXIT_FAILED, DvcError: EXIT_STORAGE, ResultStorageError: EXIT_STORAGE,
                CodeChangedError: EXIT_CODE_CHANGED}  # fmt: skip
    assert {error: error.exit_code for error in expected} == expected
    assert all(issubclass(error, AttnflowError) for error in expected) and set(expected.values()) < set(EXIT_CODES)
    assert exit_code(DataImportError("rows.csv, row 3: no label")) == EXIT_BAD_DATA
    assert exit_code(UserError("drift", EXIT_FAILED)) == EXIT_FAILED and exit_code(KeyError("bug")) is None
