"""Fixtures that run the real pipeline small: a throw-away project (git + DVC + params.yaml shrunk to
seconds of work) and a temporary Prefect server."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# The built-in tasks of params.yaml, one of each kind: tests name them by these constants.
TEXT, IMAGE, SPEECH, TRANSLATION, ASR = (
    "language-id", "digit-classification", "keyword-spotting", "translation-de-en", "connected-digits"
)  # fmt: skip
BUILTIN_TASKS = {"text": TEXT, "image": IMAGE, "speech": SPEECH, "translation": TRANSLATION, "asr": ASR}  # by kind


CACHED_STAGES = ("prepare-data-", "train-", "evaluate-", "explain-", "compress-")  # task run names: <stage>-<task>
SECOND_RUN_TASKS = (IMAGE, TRANSLATION)  # what the session's second pipeline run trains (pipeline_runs)
SERVER_FIXTURES = {"prefect_server", "real_server"}  # tests using them (directly or not) run a Prefect server


def pytest_collection_modifyitems(items):
    """Mark every test that needs a Prefect server (and so, mostly, runs the pipeline) `integration`: `make test-fast`
    leaves them out (as it leaves out the modules that mark themselves: the command line run in its own process)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs a worker per core (pytest-xdist, --dist loadscope): hand them whole modules, so that a module's
    fixtures are made once, and every module whose tests use pipeline_runs to the same worker (that session fixture is
    a minute of pipeline runs). xdist's own grouping (--dist loadgroup) renames node ids, which pytest 9.2 no longer
    reads. Other --dist modes keep xdist's scheduler."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    sharing = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "tests").glob("test_*.py")
        if re.search(r"def test_\w+\([^)]*\bpipeline_runs\b", path.read_text())
    }

    class ModulesAndPipelineRuns(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "pipeline_runs" if module in sharing else module

    return ModulesAndPipelineRuns(config, log)


@pytest.fixture(autouse=True)
def mlflow_uris_are_restored():
    """MLflow keeps the tracking and registry URIs per process, in module globals and in MLFLOW_TRACKING_URI /
    MLFLOW_REGISTRY_URI (mlflow.set_tracking_uri and set_registry_uri set both, and subprocesses inherit them): put
    them back after each test, so that no test sees the store of the one before. A registry URI left behind is the
    quiet one: `MlflowClient(uri)` takes the process's registry URI over its own tracking URI."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    environment = {name: os.environ.get(name) for name in names}
    before = mlflow_uri_globals()
    uris = (before[0]._tracking_uri, before[1]._registry_uri) if before else (None, None)
    yield
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    after = mlflow_uri_globals()
    if after:
        after[0]._tracking_uri, after[1]._registry_uri = uris


def mlflow_uri_globals():
    """The modules where MLflow keeps the process's tracking and registry URIs, or None before it is imported (there
    is nothing of it to put back then)."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    return tracking, registry


def tiny_params() -> dict:
    """The real params.yaml, shrunk: little data, one short epoch, small models."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tasks = params["tasks"]
    tasks[TEXT]["data"]["builtin"]["samples_per_class"] = 20
    tasks[SPEECH]["data"]["builtin"].update(words=["yes", "no", "up"], speakers_per_word=8)
    tasks[TRANSLATION]["data"]["builtin"].update(num_pairs=200, max_phrases=2)
    tasks[TRANSLATION]["model"].update(vocab_size=200, encoder_depth=1, decoder_depth=1, max_len=32)
    tasks[TRANSLATION]["eval"].update(beam_size=2, max_decode_len=12)
    tasks[ASR]["data"]["builtin"].update(num_speakers=8, utterances_per_speaker=3, max_words=3,
                                         val_fraction=0.15, test_fraction=0.15)  # fmt: skip
    tasks[ASR]["model"].update(vocab_size=40, n_mels=20)
    tasks[ASR]["eval"].update(beam_size=2, max_decode_len=12)
    params["global"]["explain"].update(samples=4, steps=4, viewer_examples=2)
    params["global"]["compress"].update(latency_repeats=2, importance_batches=1, finetune_steps=1)
    for section in tasks.values():
        model = section["model"]
        model.update(embed_dim=16, num_heads=2)
        model.update({key: 1 for key in ("depth", "encoder_depth", "decoder_depth") if key in model})
        section["train"].update(epochs=1, max_batches_per_epoch=2, warmup_epochs=0)
        section["eval"]["attention_maps"] = 2
    return params


def write_params(project: Path, params: dict) -> Path:
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run(cwd: Path, *command: str) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)


def make_tiny_project(project: Path) -> Path:
    """A fresh project like a clone of this repo: git repo with a commit, DVC with the default local remote."""
    project.mkdir()
    run(project, "git", "init", "-q")
    run(project, "git", "config", "user.email", "test@example.com")
    run(project, "git", "config", "user.name", "test")
    run(project, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    write_params(project, tiny_params())
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "tiny project")
    return project


@pytest.fixture
def tiny_project(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return make_tiny_project(tmp_path / "project")


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server with its own database, for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory, prefect_server):
    """Two real pipeline runs in one tiny project, shared by the whole session (about a minute each).

    The first trains the image task longer (3 epochs); the second is deliberately worse (learning rate 1e-6, one batch),
    so on the same test data it must not take the `champion` alias. Both carry the tag sweep_id=s1. The second runs
    the image task (a classifier) and translation (a sequence task) only: the promotion rule is the same code for every
    task (its
    lower-is-better side is tested in test_promotion.py), and the other three would add half a minute to every
    `make test`. Its image model pools with attention (`model.pool`), so that path runs through every stage.
    Returns (project, first result, second result).
    """
    from flows.pipeline import attention_pipeline

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # tiny trainings last seconds
        project = make_tiny_project(tmp_path_factory.mktemp("pipelines") / "project")
        params = tiny_params()
        params["tasks"][IMAGE]["train"].update(epochs=3, max_batches_per_epoch=10, lr=0.005)
        write_params(project, params)
        first = attention_pipeline(params_path=str(project / "params.yaml"), tags={"sweep_id": "s1"})
        params["global"]["tasks"] = list(SECOND_RUN_TASKS)
        for name in SECOND_RUN_TASKS:
            params["tasks"][name]["train"].update(lr=1e-6, max_batches_per_epoch=1)
        params["tasks"][IMAGE]["model"]["pool"] = "attention"
        write_params(project, params)
        second = attention_pipeline(params_path=str(project / "params.yaml"), tags={"sweep_id": "s1"})
        yield project, first, second


def stage_states(
    project: Path, result: dict, tracking_uri: str | None = None, stages: tuple[str, ...] = CACHED_STAGES
) -> dict[str, str]:
    """The state of each cached stage (prepare-data, train, evaluate, explain) of one pipeline run, by task run name
    ({"train-digit-classification": "Cached", ...}), read from the Prefect server: the tasks of the pipeline's flow
    run and of its task subflows, whose ids the run's MLflow runs carry (tag prefect_flow_run_id), in the project's
    store or
    the one tracking_uri names; stages: the task run name prefixes to report (the pretrain stage's is not one of
    CACHED_STAGES: only a task with a `pretrain` section has it)."""
    from mlflow.tracking import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    client = MlflowClient(tracking_uri or f"sqlite:///{project / 'mlflow.db'}")
    run_ids = [result["parent_run_id"], *(r["run_id"] for r in result["tasks"].values())]
    flow_runs = [client.get_run(run_id).data.tags["prefect_flow_run_id"] for run_id in run_ids]
    with get_client(sync_client=True) as prefect:
        task_runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_runs)), limit=200)
    return {run.name: run.state_name for run in task_runs if run.name.startswith(stages)}


@contextmanager
def mlflow_command(tmp_path: Path, command: str, *arguments: str):
    """`mlflow <command>` (ui, server) on a free loopback port with one worker, its log in tmp_path, until its /health
    answers (at most 3 minutes); yields its address and stops it after."""
    import time

    from tests.test_serving import free_port

    log_file = tmp_path / f"mlflow-{command}.log"
    port, log = free_port(), log_file.open("w")
    executable = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [executable, command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *arguments],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=os.environ,
    )  # fmt: skip
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 180
    try:
        wait_until_answers(f"{url}/health", server, log_file, deadline, pause=1)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def wait_until_answers(url: str, server: subprocess.Popen, log_file: Path, deadline: float, pause: float) -> None:
    """Poll url until it answers; the server's log is the failure message when it exits or the deadline passes."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            assert server.poll() is None and time.time() < deadline, log_file.read_text()
            time.sleep(pause)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM a process started with start_new_session=True and what it started, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=20)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
