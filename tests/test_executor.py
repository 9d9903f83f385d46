"""global.executor: the task pipelines at once on a Dask cluster (a real local one, started by the run), each still
writing its MLflow run and its cached stages; the setting validated; a scheduler that does not answer is a user's
mistake."""

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tasks.errors import EXIT_INVALID
from tasks.executor import THREADS_TAG, ExecutorUnavailable, cores
from tasks.params import ParamsError, load_params
from tests.conftest import IMAGE, TEXT, stage_states, tiny_params, write_params
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_serving import free_port

TWO = [TEXT, IMAGE]


def executor_of(tmp_path, executor) -> dict:
    params = tiny_params()
    params["global"]["executor"] = executor
    return load_params(write_params(tmp_path, params)).global_.executor.model_dump()


def test_the_executor_setting_defaults_to_sequential_and_takes_a_short_form(tmp_path):
    assert load_params(write_params(tmp_path, tiny_params())).global_.executor.kind == "sequential"
    assert executor_of(tmp_path, "dask") == {"kind": "dask", "address": None, "workers": None}
    assert executor_of(tmp_path, {"kind": "dask", "workers": 2})["workers"] == 2
    assert executor_of(tmp_path, {"kind": "dask", "address": "tcp://10.0.0.5:8786"})["address"] == "tcp://10.0.0.5:8786"
    assert executor_of(tmp_path, {"kind": "dask", "address": "scheduler:8786"})["address"] == "scheduler:8786"


@pytest.mark.parametrize(
    "executor, message",
    [
        ("threads", "global.executor.kind: Input should be 'sequential' or 'dask'"),
        ({"kind": "dask", "workers": 0}, "global.executor.workers: Input should be greater than or equal to 1"),
        ({"kind": "dask", "address": "tcp://10.0.0.5"}, "global.executor.address: Value error, not a Dask scheduler"),
        ({"kind": "dask", "address": "http://x:1"}, "global.executor.address: Value error, not a Dask scheduler"),
        ({"kind": "sequential", "workers": 2}, "global.executor: Value error, address and workers are settings of"),
        ({"kind": "dask", "address": "h:1", "workers": 2}, "global.executor: Value error, workers sizes a local"),
        ({"kind": "dask", "nodes": 2}, "global.executor.nodes: Extra inputs are not permitted"),
    ],
)
def test_a_bad_executor_setting_is_named(tmp_path, executor, message):
    with pytest.raises(ParamsError, match=message):
        executor_of(tmp_path, executor)


def nobody_listens(project):
    params = tiny_params()
    params["global"]["executor"] = {"kind": "dask", "address": f"tcp://127.0.0.1:{free_port()}"}
    return write_params(project, params)


def assert_nothing_ran(project):
    """No data prepared, and no MLflow run of any status (so none RUNNING)."""
    assert not (project / "data").exists()
    if (project / "mlflow.db").exists():
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.integration  # the command line in its own process
def test_a_scheduler_that_does_not_answer_is_one_line_and_exit_2_before_anything_runs(tmp_path):
    nobody_listens(tmp_path)
    result = attnflow(tmp_path, "run", "--task", TEXT)
    assert_one_line_error(result, EXIT_INVALID, "cannot reach the Dask scheduler at global.executor.address tcp://")
    assert not (tmp_path / ".prefect" / "temporary-server.log").exists()  # checked before a server started
    assert_nothing_ran(tmp_path)


@pytest.mark.slow  # a flow run on the test server: about 15 s
def test_the_pipeline_flow_checks_the_scheduler_before_any_work(tmp_path, prefect_server):
    """What a scheduled run (no command line) meets: the flow fails at the start, naming the setting."""
    from flows.pipeline import attention_pipeline

    params_path = nobody_listens(tmp_path)
    with pytest.raises(ExecutorUnavailable, match="global.executor.address tcp://127.0.0.1:"):
        attention_pipeline(params_path=str(params_path), tasks=[TEXT])
    assert_nothing_ran(tmp_path)


def on_two_workers(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["global"].update(tasks=TWO, executor={"kind": "dask", "workers": 2})
    return write_params(project, params)


@pytest.mark.integration
@pytest.mark.slow  # two pipeline runs, each starting a 2-worker cluster: about 90 s on 2 cores
def test_two_tasks_run_at_once_on_a_local_dask_cluster_and_are_cached(tiny_project, prefect_server, monkeypatch):
    from flows.pipeline import attention_pipeline

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    params_path = str(on_two_workers(tiny_project))
    first = attention_pipeline(params_path=params_path)
    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    runs = {m: client.get_run(first["tasks"][m]["run_id"]) for m in TWO}

    for run in runs.values():  # each wrote its run, in a worker process, with the threads it trained with
        assert run.info.status == "FINISHED"
        assert run.data.tags["pipeline_run_id"] == first["parent_run_id"]
        assert run.data.tags[THREADS_TAG] == str(max(1, cores() // 2))
        assert "test_accuracy" in run.data.metrics
    pids = {run.data.tags["attnflow_pid"] for run in runs.values()}
    parent = client.get_run(first["parent_run_id"])
    assert len(pids) == 2 and parent.data.tags["attnflow_pid"] not in pids  # two processes, neither the flow's
    text, image = runs[TEXT].info, runs[IMAGE].info
    assert text.start_time < image.end_time and image.start_time < text.end_time  # they overlapped in time
    assert parent.info.status == "FINISHED"

    second = attention_pipeline(params_path=params_path)
    for name in TWO:  # the stage cache holds across workers and runs
        assert second["tasks"][name]["cached_from_run_id"] == first["tasks"][name]["run_id"]
    states = stage_states(tiny_project, second)
    assert states and {name: state for name, state in states.items() if state != "Cached"} == {}
    assert {f"train-{m}" for m in TWO} <= set(states)


def write_runs(uri: str, count: int) -> int:
    """What a task pipeline writes, ``count`` times: a run, a batch of params and metrics, a tag, its end. Returns
    the errors met (run in a spawned process)."""
    import time

    from mlflow.entities import Metric, Param

    client, errors = MlflowClient(uri), 0
    experiment = client.get_experiment_by_name("concurrent").experiment_id
    for _ in range(count):
        try:
            run_id = client.create_run(experiment).info.run_id
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(f"m{k}", float(k), now, 0) for k in range(20)],
                             params=[Param(f"p{k}", str(k)) for k in range(20)])  # fmt: skip
            client.set_tag(run_id, "worker", "yes")
            client.set_terminated(run_id, "FINISHED")
        except Exception:
            errors += 1
    return errors


@pytest.mark.slow  # three processes writing one store: about 35 s
def test_workers_write_one_sqlite_mlflow_store_at_once(tmp_path):
    """Dask workers are processes that write the project's sqlite store at the same moments: none of them meets
    'database is locked' (MLflow's sessions wait up to 20 s for the file's write lock)."""
    from multiprocessing import get_context

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("concurrent")
    with get_context("spawn").Pool(3) as pool:
        assert pool.starmap(write_runs, [(uri, 20)] * 3) == [0, 0, 0]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id], max_results=100)
    assert len(runs) == 60 and {run.info.status for run in runs} == {"FINISHED"}
