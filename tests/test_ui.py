"""The MLflow UI in a real browser: open a task's experiment, select two runs, compare them.

Needs Chromium (`make chromium`: apt-get install chromium); skipped without it. Run it with
`.venv/bin/python -m pytest -m slow tests/test_ui.py`; screenshots land in the test's tmp dir (printed with -s).
"""

import os
import shutil

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import IMAGE, TEXT, mlflow_command
from tests.test_serving import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

# Skipped without Chromium, except in CI (.ci/run installs it): there a missing browser must fail, not pass silently.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shutil.which(CHROMIUM) and os.environ.get("CI") != "true", reason="chromium is absent (make chromium)"
    ),
]

# The compare view's tables are grids of absolutely placed cells: a row is the cells at the same `top`.
ROW_TEXT = """name => {
    const cell = name.parentElement, inRow = box => [...box.querySelectorAll('div')].filter(
        div => div.style.position === 'absolute' && div.style.top === cell.style.top);
    let box = cell.parentElement;
    while (box && inRow(box).length < 2) box = box.parentElement;
    return inRow(box).map(div => div.innerText).join(' | ');
}"""


@pytest.fixture
def mlflow_ui(pipeline_runs, tmp_path):
    """`mlflow ui` (as `make ui` runs it, one worker) on the pipeline runs' store; yields its address."""
    with mlflow_command(tmp_path, "ui", "--backend-store-uri", f"sqlite:///{pipeline_runs[0] / 'mlflow.db'}") as url:
        yield url


def test_compare_view_shows_both_runs_metrics(pipeline_runs, mlflow_ui, tmp_path):
    from playwright.sync_api import sync_playwright

    project, first, second = pipeline_runs
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = [client.get_run(result["tasks"][IMAGE]["run_id"]) for result in (first, second)]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{mlflow_ui}/#/experiments/{runs[0].info.experiment_id}/runs", timeout=120_000)
        rows = page.locator(".ag-pinned-left-cols-container [role=row]")
        rows.first.wait_for(timeout=60_000)
        assert rows.count() == 2
        page.screenshot(path=tmp_path / "runs.png")
        for index in range(2):  # the selection checkbox of each run's row
            rows.nth(index).locator("input.ag-checkbox-input").click()
            page.wait_for_timeout(300)
        page.get_by_role("button", name="Compare").click()
        page.wait_for_url("**/compare-runs**", timeout=60_000)
        # The "Metrics" table is a box a few rows high, sorted by name, that renders only the rows in view: its first
        # row (an attn_* metric of the explain stage) is the one a test can count on seeing.
        metric = min(runs[0].data.metrics)
        name = page.get_by_text(metric, exact=True).last  # the metric's row header in "Metrics"
        name.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "compare.png", full_page=True)
        shown, body = name.evaluate(ROW_TEXT), page.inner_text("body")
        browser.close()
    print(f"screenshots: {tmp_path}")
    for run in runs:
        assert run.info.run_id in page.url and run.info.run_name in body
        assert f"{round(run.data.metrics[metric], 3):g}" in shown.split(" | ")[1:]


def test_the_explain_stages_viewer_opens_from_its_artifact_and_switches_maps(pipeline_runs, mlflow_ui, tmp_path):
    """The viewer that the explain stage logged for the image run, in the MLflow UI's artifact view: choosing
    another method shows another map (the view's data-map), and the raw attention's head selector appears."""
    from playwright.sync_api import sync_playwright

    project, first, _ = pipeline_runs
    run = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(first["tasks"][IMAGE]["run_id"])
    address = f"{mlflow_ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifactPath/"
    address += "explain/viewer.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(address, timeout=120_000)
        viewer = page.wait_for_selector("iframe.mlflow-html-iframe", timeout=60_000).content_frame()
        viewer.wait_for_selector("#view[data-map]", timeout=60_000)
        shown = {}
        for method in ("rollout", "gradient_attention", "random"):
            viewer.select_option("#method", method)
            shown[method] = viewer.get_attribute("#view", "data-map")
        assert viewer.locator("#head").is_hidden()
        viewer.select_option("#method", "@heads")
        assert viewer.locator("#head").is_visible()
        page.screenshot(path=tmp_path / "viewer.png")
        browser.close()
    print(f"screenshot: {tmp_path / 'viewer.png'}")
    assert len(set(shown.values())) == 3, shown


@pytest.fixture
def prefect_ui_run(tmp_path):
    """A real Prefect server with its UI on a free port, and a tiny text-only pipeline run on it; yields the server's
    address, the pipeline's result and its flow run id."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import attention_pipeline
    from tasks.scheduling.server import start_server, stop_server, wait_until_up
    from tests.conftest import make_tiny_project, tiny_params, write_params

    port, home = free_port(), tmp_path / "prefect-home"
    server = start_server(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api", server, home / "server.log")
        project = make_tiny_project(tmp_path / "project")
        params = tiny_params()
        params["global"]["tasks"] = [TEXT]
        write_params(project, params)
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}), pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
            result = attention_pipeline(params_path=str(project / "params.yaml"))
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        yield url, result, client.get_run(result["parent_run_id"]).data.tags["prefect_flow_run_id"]
    finally:
        stop_server(server)


def test_prefect_ui_shows_the_results_table_of_a_pipeline_run(prefect_ui_run, tmp_path):
    """The flow run's page in the Prefect UI, Artifacts tab: the results table with the run's test metrics."""
    from playwright.sync_api import sync_playwright

    url, result, flow_run_id = prefect_ui_run
    accuracy = f"{round(result['tasks'][TEXT]['test_accuracy'], 4):g}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/runs/flow-run/{flow_run_id}", timeout=120_000)
        page.get_by_text("Artifacts", exact=True).click(timeout=60_000)
        page.get_by_text("attnflow-results").first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "prefect-artifacts.png", full_page=True)
        page.get_by_text("attnflow-results").first.click()
        page.get_by_text("test_accuracy").first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "prefect-results-table.png", full_page=True)
        body = page.inner_text("body")
        browser.close()
    print(f"screenshots: {tmp_path}")
    assert "language-id" in body and accuracy in body and result["tasks"][TEXT]["run_id"] in body
