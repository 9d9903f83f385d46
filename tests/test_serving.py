"""The registered champion, served: raw input in -> label, class probabilities and attention out, per kind;
source sentences in -> translations and their alignment out, for translation."""

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile
from PIL import Image

from tasks.params import load_params
from tests.conftest import BUILTIN_TASKS, IMAGE, TRANSLATION

CLASSIFIERS = ("text", "image", "speech")  # kinds, one built-in task of each


def raw_inputs(project: Path, kind: str) -> list:
    """Two raw test inputs as a client would send them: text strings; an image and a clip as arrays and base64."""
    data = project / "data" / BUILTIN_TASKS[kind]
    if kind == "text":
        with (data / "test.csv").open(newline="") as file:
            return [row["text"] for row in csv.DictReader(file)][:2]
    path = (
        sorted((data / "test").glob("*/*.png"))[0]
        if kind == "image"
        else data / (data / "testing_list.txt").read_text().split()[0]
    )
    as_array = (
        np.asarray(Image.open(path)).tolist() if kind == "image" else soundfile.read(path, dtype="float32")[0].tolist()
    )
    return [as_array, base64.b64encode(path.read_bytes()).decode()]


def check_answers(answers: list[dict], kind: str, count: int) -> None:
    assert len(answers) == count
    for answer in answers:
        probabilities = answer["probabilities"]
        assert answer["label"] == max(probabilities, key=probabilities.get)
        assert abs(sum(probabilities.values()) - 1) < 1e-3
        assert answer["attention"] and abs(sum(answer["attention"]) - 1) < 1e-3
        if kind == "text":
            assert len(answer["tokens"]) == len(answer["attention"])


def test_translation_champion_translates_raw_sentences(pipeline_runs):
    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/attnflow-translation-de-en@champion")
    sources = (project / "data" / TRANSLATION / "test.de").read_text().splitlines()[:2]
    answers = model.predict(pd.DataFrame({"text": sources}))
    client = mlflow.MlflowClient()
    champion_run = client.get_model_version_by_alias("attnflow-translation-de-en", "champion").run_id
    evaluated = (
        Path(client.download_artifacts(champion_run, "translations/test_hypotheses.txt")).read_text().split("\n")
    )
    assert [answer["translation"] for answer in answers] == evaluated[:2]  # served as evaluated, same settings
    for answer in answers:
        assert answer["source_tokens"] and answer["output_tokens"][-1] == "[EOS]"
        assert len(answer["alignment"]) == len(answer["output_tokens"])
        assert all(abs(sum(row) - 1) < 1e-3 and len(row) == len(answer["source_tokens"]) for row in answer["alignment"])


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_champion_predicts_from_raw_input(pipeline_runs, kind, monkeypatch):
    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/attnflow-{BUILTIN_TASKS[kind]}@champion")
    column = {"speech": "audio"}.get(kind, kind)
    answers = model.predict(pd.DataFrame({column: raw_inputs(project, kind)}))
    check_answers(answers, kind, 2)
    if kind != "text":  # the array and the encoded file are the same input
        assert answers[0]["probabilities"] == pytest.approx(answers[1]["probabilities"], abs=1e-4)


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_a_request_is_one_forward_pass_that_answers_each_row_as_alone(pipeline_runs, kind):
    """Rows are predicted together (texts of different lengths padded), and padding changes no row's answer."""
    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/attnflow-{BUILTIN_TASKS[kind]}@champion")
    column = {"speech": "audio"}.get(kind, kind)
    values = raw_inputs(project, kind)
    if kind == "text":
        values = [values[0], values[0] + " " + values[1], values[1][:3]]  # three lengths
    passes = []
    model.unwrap_python_model().model.register_forward_hook(lambda *_: passes.append(1))
    together = model.predict(pd.DataFrame({column: values}))
    assert len(passes) == 1
    alone = [model.predict(pd.DataFrame({column: [value]}))[0] for value in values]
    if kind == "text":
        assert len({len(answer["tokens"]) for answer in together}) == 3
    for row, single in zip(together, alone):
        assert row["label"] == single["label"] and row.get("tokens") == single.get("tokens")
        assert row["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
        assert row["attention"] == pytest.approx(single["attention"], abs=1e-5)


def test_a_request_can_ask_for_another_attention_map(pipeline_runs):
    """params {"attention": <method>}: the answer's attention is that map (attn_models/attribution.py), one per input
    token; an unknown method is a bad request naming the param."""
    from mlflow.exceptions import MlflowException

    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/attnflow-{IMAGE}@champion")
    request = pd.DataFrame({"image": raw_inputs(project, "image")})
    rollout = model.predict(request)
    weighted = model.predict(request, params={"attention": "gradient_attention"})
    check_answers(weighted, "image", 2)
    assert [row["attention_method"] for row in rollout + weighted] == ["rollout"] * 2 + ["gradient_attention"] * 2
    assert len(weighted[0]["attention"]) == len(rollout[0]["attention"])
    assert weighted[0]["attention"] != rollout[0]["attention"]
    assert weighted[0]["probabilities"] == rollout[0]["probabilities"]
    with pytest.raises(MlflowException, match="params.attention must be one of .*got 'saliency'"):
        model.predict(request, params={"attention": "saliency"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_json_request(pipeline_runs, tmp_path):
    project, port = pipeline_runs[0], free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",  # the venv's bin on PATH,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # as activated: uvicorn
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/attnflow-digit-classification@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        request = json.dumps({"dataframe_records": [{"image": value} for value in raw_inputs(project, "image")]})
        deadline = time.time() + 120
        while True:
            try:
                reply = urllib.request.urlopen(
                    urllib.request.Request(
                        f"http://127.0.0.1:{port}/invocations", request.encode(), {"Content-Type": "application/json"}
                    ),
                    timeout=30,
                )
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(1)
        check_answers(json.loads(reply.read())["predictions"], "image", 2)
        asking = json.dumps({**json.loads(request), "params": {"attention": "gradient_attention"}})
        status, answer = post(port, asking)
        assert status == 200 and {row["attention_method"] for row in answer["predictions"]} == {"gradient_attention"}
        for body, reason in BAD_REQUESTS:
            status, answer = post(port, body)
            assert status == 400 and reason in answer["message"], (body[:200], status, answer)
            assert "stack_trace" not in answer and "Traceback" not in answer["message"]
            if answer.get("error_class") != "SCHEMA_ENFORCEMENT_FAILED":  # not MLflow's own schema check: ours
                # MLflow's server puts "Failed to predict data '<the data>'. \nError: " before the reason
                assert answer["message"].rsplit("\nError: ", 1)[-1].startswith("bad request: "), answer
                assert "\n" not in answer["message"].rsplit("\nError: ", 1)[-1]
    finally:
        server.terminate()
        server.wait(30)


NOT_AN_IMAGE = base64.b64encode(b"just some bytes").decode()
BAD_REQUESTS = [  # (request body, what the 400's message says): over real HTTP, to the served image model
    ('{"dataframe_records": []}', "missing inputs ['image']"),  # MLflow's schema enforcement (the signature)
    ('{"dataframe_records": [{"picture": "abc"}]}', "missing inputs ['image']"),
    ('{"dataframe_records": [{"image": [[NaN, 1.0], [0.0, 1.0]]}]}', "not finite numbers"),
    (json.dumps({"dataframe_records": [{"image": NOT_AN_IMAGE}]}), "row 0: the decoded bytes are not a PNG or JPEG"),
    (json.dumps({"dataframe_records": [{"image": "A" * (17 * 2**20)}]}), "over the limit of 16.0 MB"),
    (json.dumps({"dataframe_records": [{"image": [[0]]}] * 65}), "65 rows, over the limit of 64"),
]


def post(port: int, body: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", body.encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


SERVED_IMPORTS = """
import builtins, json, sys
from importlib.metadata import packages_distributions
import mlflow, mlflow.pyfunc, pandas as pd
imported, original_import = set(), builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if level == 0 and importer.split(".")[0] in ("tasks", "attn_models"):
        imported.add(name.split(".")[0])
    return original_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
uri, cases = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)
for name, column, value in cases:
    mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(pd.DataFrame({column: [value]}))
mapping = packages_distributions()
print(json.dumps({name: mapping.get(name, []) for name in sorted(imported)}))  # stdlib modules: no distribution
"""


def test_serving_imports_only_its_pinned_requirements(pipeline_runs):
    """The served models of every task, loaded and asked (a test example of each, as a client sends it) in a fresh
    process: every package that this project's code imports on the way is one the logged requirements
    (SERVING_PACKAGES) name."""
    from tasks.serving.pyfunc_model import SERVING_PACKAGES

    project = pipeline_runs[0]
    params = load_params(project / "params.yaml")
    cases = [
        (f"attnflow-{name}", params.kind(name).input_column,
         params.kind(name).serving_example(project / "data" / name, params.task(name)))
        for name in params.tasks
    ]  # fmt: skip
    loaded = subprocess.run(
        [sys.executable, "-c", SERVED_IMPORTS, f"sqlite:///{project / 'mlflow.db'}", json.dumps(cases)],
        capture_output=True,
        text=True,
        check=True,
        cwd=project,
    )
    imported = json.loads(loaded.stdout.splitlines()[-1])  # {"PIL": ["pillow"], "json": [], ...}
    assert {"torch", "tokenizers", "PIL", "soundfile"} <= set(imported)  # the recording sees the project's imports
    unlisted = {
        name: dists
        for name, dists in imported.items()
        if dists and not {d.lower() for d in dists} & {*SERVING_PACKAGES, "attnflow"}
    }
    assert not unlisted


def test_a_wav_at_44101_hz_is_answered_promptly_in_bounded_memory(pipeline_runs):
    """A rate sharing no divisor with the model's 16 kHz: resampled exactly it needs about 12 GB and 30 s here."""
    import io
    import resource

    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/attnflow-keyword-spotting@champion")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(44101, dtype=np.float32), 44101, format="WAV")
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    answers = model.predict(pd.DataFrame({"audio": [base64.b64encode(buffer.getvalue()).decode()]}))
    assert time.perf_counter() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2 * 2**20  # kB: under 2 GiB more
    check_answers(answers, "speech", 1)


@pytest.mark.parametrize("task", BUILTIN_TASKS.values())
def test_the_compact_model_answers_as_its_variant_was_measured(pipeline_runs, task):
    """`compact` rebuilds the chosen variant at load (the float weights, the kept heads, int8 when it says so) and
    answers the input example as the compress stage's in-memory variant did; its answers have the champion's fields."""
    project = pipeline_runs[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project / 'mlflow.db'}")
    params = load_params(project / "params.yaml")
    spec, section, name = params.kind(task), params.task(task), f"attnflow-{task}"
    version = mlflow.MlflowClient().get_model_version_by_alias(name, "compact")
    logged = Path(mlflow.MlflowClient().download_artifacts(version.run_id, "compress/compact_example_answers.json"))
    request = pd.DataFrame({spec.input_column: [spec.serving_example(project / "data" / task, section)]})
    [compact] = mlflow.pyfunc.load_model(f"models:/{name}@compact").predict(request)
    [champion] = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(request)
    [expected] = json.loads(logged.read_text())
    assert set(compact) == set(champion) == set(expected)
    if "label" in expected:
        assert compact["label"] == expected["label"]
        assert compact["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)
    else:
        assert compact[spec.output_field] == expected[spec.output_field]
