"""The monitor on the champion served by `attnflow model serve`: its answers to held-out inputs of the test
distribution pass, its answers to inverted images fail naming the drifted features, the webhook block hears of it,
and the request log that the server keeps holds no input."""

import base64
import http.server
import json
import threading

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from flows.cli import main
from flows.monitor import DriftDetected, monitor
from tasks.monitoring.request_log import request_log_for
from tasks.params import load_params
from tests.conftest import IMAGE, write_params
from tests.test_model_server import TOKEN, call, served_command

NAME = "attnflow-digit-classification"


class Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Webhook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A local HTTP endpoint and a Prefect custom-webhook block that posts to it, saved on the test server."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    server = http.server.HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    block = CustomWebhookNotificationBlock(name="alerts", url=url, json_data={"text": "{{body}}"},
                                           allow_private_urls=True)  # fmt: skip
    block.save("attnflow-test-alerts", overwrite=True)
    Webhook.received = []
    yield "custom-webhook/attnflow-test-alerts"
    server.shutdown()


def ask(port: int, values: list) -> list[dict]:
    """The model server's answers to values, 64 per request (global.serving.max_rows), with the token."""
    answers = []
    for start in range(0, len(values), 64):
        body = json.dumps({"dataframe_records": [{"image": value} for value in values[start : start + 64]]})
        status, text = call(port, "/invocations", body, token=TOKEN)
        assert status == 200, text
        answers += json.loads(text)["predictions"]
    return answers


def test_monitor_passes_held_out_digits_and_names_the_drift_of_inverted_ones(pipeline_runs, tmp_path, webhook, capsys):
    project = pipeline_runs[0]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["global"]["tracking"]["uri"] = uri  # the pipeline's store; checks and logs in this test's folder
    params["global"]["monitor"].update(request_log=str(tmp_path / "requests"), min_requests=100, notify_block=webhook)
    params_path = write_params(tmp_path, params)
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(NAME, "champion")
    store = request_log_for(load_params(params_path), tmp_path, NAME)

    held_out = sorted((project / "data" / IMAGE / "val").glob("*/*.png"))  # same generator, not the reference's
    encoded = [base64.b64encode(path.read_bytes()).decode() for path in held_out]
    inverted = [(255 - np.asarray(Image.open(path))).tolist() for path in held_out[:150]]
    with served_command(project, tmp_path, "--params", str(params_path)) as port:  # logs through its observer
        answers = ask(port, encoded)
        assert main(["monitor", "--params", str(params_path), "--task", "digit-classification"]) == 0
        out = capsys.readouterr().out
        ask(port, inverted)
    assert {"pixel_mean", "pixel_std"} == set(answers[0]["input_summary"])
    assert f"{NAME} v{version.version} (champion): ok: no drift in 5 features over {len(held_out)} requests" in out
    with pytest.raises(DriftDetected, match=r"drift in .*pixel_mean") as drifted:
        monitor(params_path=str(params_path), task=IMAGE)
    assert Webhook.received and "pixel_mean" in Webhook.received[0]["text"]

    experiment = client.get_experiment_by_name("attnflow-monitoring")
    ok, drift = sorted(client.search_runs([experiment.experiment_id], f"tags.reference_run_id = '{version.run_id}'"),
                       key=lambda run: run.info.start_time)[-2:]  # fmt: skip
    assert ok.data.tags["status"] == "ok" and drift.data.tags["status"] == "drift"
    assert drift.data.metrics["requests"] == 150 and drift.data.metrics["psi.pixel_mean"] >= 0.2
    assert ok.data.metrics["psi.pixel_mean"] < 0.2 and ok.data.metrics["ks_pvalue.pixel_mean"] >= 0.01
    assert "pixel_mean" in drift.data.tags["drifted"].split(",")
    assert "pixel_std" not in drift.data.tags["drifted"].split(",")  # an inverted image keeps its contrast
    assert {a.path for a in client.list_artifacts(drift.info.run_id)} == {"drift.json", "drift.png"}
    figures = {"held_out": ok.data.metrics, "inverted": drift.data.metrics, "reason": str(drifted.value)}
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))  # for the record: what the checks saw

    assert main(["monitor", "--params", str(params_path), "--task", IMAGE]) == 0  # nothing new since
    assert "not enough requests: 0 < min_requests 100" in capsys.readouterr().out

    stored = b"".join(path.read_bytes() for path in store.path.parent.iterdir())
    assert NAME.encode() in stored
    assert not any(value.encode() in stored for value in encoded)
    assert not any(json.dumps(value).encode() in stored for value in inverted[:10])


def test_monitor_names_the_tasks_it_can_check(pipeline_runs, capsys):
    project = pipeline_runs[0]
    assert main(["monitor", "--params", str(project / "params.yaml"), "--task", "translation-de-en"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'translation-de-en' to monitor; choose from language-id, digit-classification" in err
