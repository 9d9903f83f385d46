"""The project's model server (`attnflow model serve`, tasks/serving/server.py), over real HTTP on a free loopback
port: the bearer token, the answers and the 400s of MLflow's scoring server, /metrics, /version, the observer hook,
and the refusals before anything loads."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tasks.errors import EXIT_INVALID
from tasks.serving.server import TOKEN_ENV, create_app, listening_socket, load_registered
from tests.conftest import IMAGE, REPO, tiny_params, write_params
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_serving import BAD_REQUESTS, check_answers, raw_inputs

TOKEN = "test-token-0123456789"
MODEL = "attnflow-digit-classification"


def call(port: int, path: str, body: str | None = None, token: str | None = None, content_type="application/json"):
    """(status, body text) of one request; body: POST it, else GET."""
    headers = {"Content-Type": content_type} if content_type else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body.encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus exposition (0 when it is not there)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def image_request(project: Path) -> str:
    return json.dumps({"dataframe_records": [{"image": value} for value in raw_inputs(project, "image")]})


@contextmanager
def served_command(project: Path, tmp_path: Path, *arguments: str, task: str = IMAGE):
    """`attnflow model serve --task <task>` in its own process, with the token in its environment, until /health
    answers; yields its port, then stops it with SIGTERM and checks that it ended cleanly."""
    sock = listening_socket("127.0.0.1", 0)  # a free port, released for the server to bind
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, TOKEN_ENV: TOKEN, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / ".prefect")}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own store, as a user's shell in the project has it
    command = [sys.executable, "-m", "flows.cli", "model", "serve", "--params", str(project / "params.yaml")]
    log_path = tmp_path / f"serve-model-{task}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([*command, "--task", task, "--port", str(port), *arguments],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                if call(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.5)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0, log_path.read_text()
    assert "stopped serving" in log_path.read_text() and "Traceback" not in log_path.read_text()


def test_the_served_champion_needs_the_token_answers_and_counts(pipeline_runs, tmp_path):
    """No token or a wrong one: 401, never the model; the token: the champion's answers (label, attention) and
    MLflow's 400s; /metrics (behind the token) counts each, /version names the registered version and alias."""
    project = pipeline_runs[0]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    champion = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(MODEL, "champion")
    request = image_request(project)
    with served_command(project, tmp_path) as port:
        assert call(port, "/invocations", request)[0] == 401
        assert call(port, "/invocations", request, token=TOKEN + "x")[0] == 401
        assert call(port, "/invocations", request, token="")[0] == 401
        assert call(port, "/metrics")[0] == 401 and call(port, "/version")[0] == 401
        status, body = call(port, "/invocations", request, token=TOKEN)
        assert status == 200, body
        check_answers(json.loads(body)["predictions"], "image", 2)
        labels = [answer["label"] for answer in json.loads(body)["predictions"]]
        for bad, reason in BAD_REQUESTS[:4]:  # the refusals of MLflow's scoring server, with its messages
            status, answer = call(port, "/invocations", bad, token=TOKEN)
            assert status == 400 and reason in json.loads(answer)["message"], (bad[:100], status, answer)
        status, version = call(port, "/version", token=TOKEN)
        assert status == 200
        assert json.loads(version) | {"mlflow": None} == {"name": MODEL, "version": int(champion.version),
            "alias": "champion", "run_id": champion.run_id, "kind": "image", "task": "digit-classification",
            "mlflow": None}  # fmt: skip
        status, metrics = call(port, "/metrics", token=TOKEN)
    assert status == 200
    assert metric(metrics, "attnflow_serving_requests_total", endpoint="/invocations", code="401") == 3
    assert metric(metrics, "attnflow_serving_errors_total", endpoint="/invocations", code="401") == 3
    assert metric(metrics, "attnflow_serving_requests_total", endpoint="/invocations", code="200") == 1
    assert metric(metrics, "attnflow_serving_errors_total", endpoint="/invocations", code="400") == 4
    assert metric(metrics, "attnflow_serving_requests_total", endpoint="/metrics", code="401") == 1
    assert metric(metrics, "attnflow_serving_request_seconds_count", endpoint="/invocations") == 8
    assert sum(metric(metrics, "attnflow_serving_predicted_labels_total", label=label) for label in set(labels)) == 2
    assert metric(metrics, "attnflow_serving_request_rows_sum") == 2  # answered requests only
    assert metric(metrics, "attnflow_serving_row_bytes_sum") == len(request.encode()) / 2


@contextmanager
def served_in_thread(app):
    """app on a free loopback port, served by uvicorn in a thread of this process; yields the port."""
    import uvicorn

    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None))  # the test process keeps its logging
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            assert thread.is_alive() and time.time() < deadline
            time.sleep(0.05)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def challenger(pipeline_runs):
    """The image challenger (the second pipeline run's worse model), loaded as `--variant challenger` loads it."""
    project = pipeline_runs[0]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    model, info = load_registered(uri, MODEL, "challenger")
    return project, model, info, MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(MODEL, "challenger")


def test_the_observer_sees_each_answered_request_and_its_failure_is_not_the_clients(challenger):
    project, model, info, registered = challenger
    assert (info["version"], info["run_id"], info["alias"]) == (int(registered.version), registered.run_id,
                                                                 "challenger")  # fmt: skip
    seen = []

    def record(model_info: dict, rows: list, answers: list[dict]) -> None:
        seen.append((model_info, rows, answers))
        if len(seen) == 2:
            raise RuntimeError("the request log is full")

    values = raw_inputs(project, "image")  # a pixel array and a base64 PNG
    split = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value] for value in values * 2]}})
    records = json.dumps({"inputs": [{"image": value} for value in values]})  # records as "inputs"
    with served_in_thread(create_app(model, info, on_answers=record)) as port:
        status, body = call(port, "/invocations", split)
        assert call(port, "/invocations", BAD_REQUESTS[3][0])[0] == 400  # not answered: not observed
        assert call(port, "/invocations", records)[0] == 200  # the observer raised: the client is answered all the same
        metrics = call(port, "/metrics")[1]  # no token: open (loopback only)
    assert status == 200 and len(seen) == 2
    model_info, rows, answers = seen[0]
    assert model_info == info and rows == values * 2 and answers == json.loads(body)["predictions"]
    assert seen[1][1] == values and len(seen[1][2]) == 2
    assert metric(metrics, "attnflow_serving_observer_errors_total") == 1


def test_invocations_answer_as_mlflows_scoring_server(challenger, monkeypatch):
    """The same requests to MLflow's own scoring app and to this server, on one model: the same status and body,
    byte for byte, for every request form, the params field and each refusal. A request without a content type gets
    MLflow's 415 here (MLflow's own server fails on it with a 500)."""
    from mlflow.pyfunc import scoring_server

    project, model, info, _ = challenger
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)  # scoring_server.init sets it: restored
    values = raw_inputs(project, "image")
    requests = [
        image_request(project),
        json.dumps({"dataframe_split": {"columns": ["image"], "data": [[values[1]]]}}),
        json.dumps({"inputs": {"image": values[1:]}}),
        json.dumps({"dataframe_records": [{"image": values[1]}], "params": {"attention": "gradient_attention"}}),
        json.dumps({"dataframe_records": [{"image": values[1]}], "params": {"attention": "saliency"}}),
        json.dumps({"records": [{"image": values[1]}]}),
        "not json",
        *(body for body, _ in BAD_REQUESTS),
    ]
    with served_in_thread(scoring_server.init(model)) as mlflows, served_in_thread(create_app(model, info)) as ours:
        for body in requests:
            assert call(ours, "/invocations", body) == call(mlflows, "/invocations", body), body[:100]
        status, answer = call(ours, "/invocations", requests[1], content_type=None)
    assert status == 415 and "only supports the following content types" in answer


@pytest.mark.integration  # the command line in its own process
def test_an_address_beyond_loopback_without_a_token_is_refused_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    write_params(tmp_path, tiny_params())
    for host in ("0.0.0.0", "myhost.example"):
        result = attnflow(tmp_path, "model", "serve", "--task", "digit-classification", "--host", host)
        assert_one_line_error(result, EXIT_INVALID, f"refusing to listen on {host} without a token", TOKEN_ENV)
    (tmp_path / "empty-token").write_text("\n")
    result = attnflow(tmp_path, "model", "serve", "--task", IMAGE, "--token-file", str(tmp_path / "empty-token"))
    assert_one_line_error(result, EXIT_INVALID, "empty-token: the token is empty")
    result = attnflow(tmp_path, "model", "serve", "--task", IMAGE, "--token-file", str(tmp_path / "missing"))
    assert_one_line_error(result, EXIT_INVALID, "--token-file", "missing: cannot read it (No such file or directory)")
    assert_one_line_error(attnflow(tmp_path, "model", "serve", "--task", IMAGE), EXIT_INVALID, "no MLflow store at")
    assert not (tmp_path / "mlflow.db").exists()


def test_an_alias_the_model_lacks_is_refused_naming_its_aliases(pipeline_runs, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = attnflow(pipeline_runs[0], "model", "serve", "--task", "digit-classification", "--variant", "staging")
    assert_one_line_error(result, EXIT_INVALID, f"model {MODEL} has no version with the alias 'staging'",
                          "its aliases: challenger (v", "champion (v1)", "compact (v2)")  # fmt: skip


def test_the_compact_variant_loads_as_serve_model_loads_it_and_answers(pipeline_runs):
    """`--variant compact`: the compress stage's variant of the champion, rebuilt at load (tasks/stages/compress.py)."""
    import pandas as pd

    project = pipeline_runs[0]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    model, info = load_registered(uri, MODEL, "compact")
    registered = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(MODEL, "compact")
    assert (info["version"], info["run_id"], info["alias"]) == (int(registered.version), registered.run_id, "compact")
    check_answers(model.predict(pd.DataFrame({"image": raw_inputs(project, "image")})), "image", 2)
