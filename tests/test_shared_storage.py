"""Shared state on S3 (docs/how-to/s3-storage.md), against a real S3 endpoint (moto's server, tests/s3.py): the
DVC remote and the stage results (global.results.storage) in one bucket, and one MLflow store, shared by clones of
a project at different paths.

One project ("origin", text only) runs the pipeline once; each test clones it (git clone: no data/, an empty DVC
cache, no local DVC storage, no outputs/) and works from what the bucket and the MLflow store hold.
"""

import sys

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from flows.pipeline import attention_pipeline
from tasks.errors import EXIT_STORAGE
from tasks.lineage import data_md5
from tasks.names import CHECKPOINT
from tasks.result_storage import JsonRemoteResultStorage, RefusedResult
from tests.conftest import CACHED_STAGES, TEXT, make_tiny_project, run, stage_states, tiny_params, write_params
from tests.s3 import moto_server
from tests.test_result_storage import crafted_pickle_record
from tests.test_serving import free_port

pytestmark = pytest.mark.integration
DVC_REMOTE = "storage"
NO_AWS_FILES = ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")  # the machine's ~/.aws is not the test's


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server for the module, and the environment pointing at it (credentials, region, endpoint)."""
    folder = tmp_path_factory.mktemp("s3")
    with moto_server(folder) as server, pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        for name in NO_AWS_FILES:
            monkeypatch.setenv(name, str(folder / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata to ask for credentials
        yield server


def s3_project(folder, s3, results: str | None = None):
    """A tiny text-only project whose DVC remote is the bucket (s3://<bucket>/dvc, the default) and whose results go
    where `results` says (global.results.storage), committed."""
    project = make_tiny_project(folder)
    params = tiny_params()
    params["global"]["tasks"] = [TEXT]
    params["global"]["results"] = {"storage": results}
    write_params(project, params)
    run(project, sys.executable, "-m", "dvc", "remote", "add", "-d", DVC_REMOTE, f"s3://{s3.bucket}/dvc")
    run(project, "git", "commit", "-qam", "shared storage on S3")
    return project


@pytest.fixture(scope="module")
def origin(s3, tmp_path_factory, prefect_server):
    """The first clone: its DVC remote and result storage in the bucket, the MLflow store shared (a sqlite file
    outside every clone); it runs the pipeline and commits the data version, as a user would. Returns (the project,
    its pipeline result, the shared tracking URI)."""
    folder = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as monkeypatch:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        project = s3_project(folder / "origin", s3, f"s3://{s3.bucket}/results")
        first = attention_pipeline(params_path=str(project / "params.yaml"))
        run(project, "git", "add", "data.dvc")
        run(project, "git", "commit", "-qm", "data version")
        yield project, first, uri


def clone(origin, target):
    run(origin.parent, "git", "clone", "-q", str(origin), str(target))
    assert not (target / "data").exists() and not (target / ".dvc" / "cache").exists()
    return target


@pytest.mark.slow  # the first clone's pipeline run: about a minute
def test_the_pipeline_pushed_its_data_and_results_to_the_bucket(s3, origin):
    project, first, _ = origin
    assert any(key.endswith(f"{first['data_md5'][2:]}") for key in s3.keys("dvc/"))  # data/ as a DVC .dir listing
    stored = {key.removeprefix("results/").rsplit("-", 1)[0] for key in s3.keys("results/")}
    assert stored == {stage.rstrip("-") for stage in CACHED_STAGES}
    assert not (project / ".dvc-storage").exists()


@pytest.mark.slow  # the first clone's pipeline run: about a minute
def test_a_second_clone_gets_every_stage_from_the_shared_cache(s3, origin, tmp_path):
    """Another clone, at another path, after `dvc pull` from the bucket: every stage is Cached, nothing trains, and
    the checkpoint (which it needs for any stage after training) is fetched from the run that trained it."""
    project, first, uri = origin
    second_clone = clone(project, tmp_path / "second")
    run(second_clone, sys.executable, "-m", "dvc", "pull", "-q")
    assert data_md5(second_clone) == first["data_md5"]

    second = attention_pipeline(params_path=str(second_clone / "params.yaml"))
    assert stage_states(second_clone, second, uri) == {f"{stage}{TEXT}": "Cached" for stage in CACHED_STAGES}
    made, cached = first["tasks"][TEXT], second["tasks"][TEXT]
    assert cached["cached_from_run_id"] == made["run_id"] and cached["test_accuracy"] == made["test_accuracy"]
    client = MlflowClient(uri)
    experiment_id = client.get_run(cached["run_id"]).info.experiment_id
    assert not client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{cached['run_id']}'")
    checkpoint = f"outputs/{made['run_id']}/{CHECKPOINT}"
    assert (second_clone / checkpoint).read_bytes() == (project / checkpoint).read_bytes()
    assert [path.name for path in (second_clone / "outputs").iterdir()] == [made["run_id"]]  # nothing trained here


@pytest.mark.slow  # the first clone's pipeline run: about a minute
def test_reproduce_in_a_fresh_clone_restores_the_data_from_the_bucket(origin, tmp_path, capsys):
    """`attnflow reproduce` in a clone with an empty DVC cache: the run's data version comes from the S3 remote and
    the retrained model's test metrics match the run's exactly."""
    project, first, _ = origin
    fresh = clone(project, tmp_path / "fresh")
    run_id = first["tasks"][TEXT]["run_id"]
    assert main(["reproduce", run_id, "--params", str(fresh / "params.yaml")]) == 0, capsys.readouterr().err
    assert "exact match" in capsys.readouterr().out
    assert data_md5(fresh) == first["data_md5"] and (fresh / "data" / TEXT).is_dir()
    assert not (fresh / ".dvc-storage").exists()


@pytest.mark.slow  # a moto server and a pipeline run up to DVC
def test_missing_credentials_name_the_dvc_remote(s3, prefect_server, tmp_path, monkeypatch, capsys):
    """No S3 credentials: the pipeline stops at `dvc push`, naming the remote and where credentials come from, with
    exit code 5 and no traceback; no MLflow run was started (pushing comes first)."""
    project = s3_project(tmp_path / "project", s3)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    code = main(["run", "--params", str(project / "params.yaml")])
    error = capsys.readouterr().err
    assert code == EXIT_STORAGE, error
    assert f"DVC push failed in {project} (remote '{DVC_REMOTE}' at s3://{s3.bucket}/dvc" in error
    assert "AWS_ACCESS_KEY_ID" in error and "Traceback" not in error
    assert not (project / "mlflow.db").exists()


@pytest.mark.slow  # a pipeline run up to its first cached stage
def test_an_unreachable_result_storage_is_named_before_any_run(s3, prefect_server, tmp_path, monkeypatch, capsys):
    """No S3 answers at the endpoint: the run stops before its first stage, naming global.results.storage, with exit
    code 5 and no traceback; no MLflow run was started (so none is left RUNNING)."""
    project = s3_project(tmp_path / "project", s3, f"s3://{s3.bucket}/offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = main(["run", "--params", str(project / "params.yaml")])
    error = capsys.readouterr().err
    assert code == EXIT_STORAGE, error
    assert f"global.results.storage s3://{s3.bucket}/offline: bucket '{s3.bucket}' cannot be used" in error
    assert "AWS_ENDPOINT_URL" in error and "Traceback" not in error
    assert not (project / "data").exists() and not (project / "mlflow.db").exists()


def test_the_s3_result_storage_refuses_a_record_that_is_not_json(s3, tmp_path, monkeypatch):
    """The S3 storage reads like the local one (tasks/result_storage.py JsonOnly): a crafted pickle is refused
    unread."""
    monkeypatch.setenv("ATTNFLOW_PWNED", str(tmp_path / "pwned"))
    storage = JsonRemoteResultStorage(basepath=f"s3://{s3.bucket}/crafted")
    storage.write_path("key", crafted_pickle_record())
    with pytest.raises(RefusedResult, match="serializer 'pickle'"):
        storage.read_path("key")
    assert not (tmp_path / "pwned").exists()
    storage.write_path("json", b'{"metadata": {"serializer": {"type": "json"}}, "result": "1"}')
    assert storage.read_path("json").startswith(b'{"metadata"')
