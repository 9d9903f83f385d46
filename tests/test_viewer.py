"""The attention viewer page (tasks/evaluation/viewer.py): self-contained and injection-safe (quick tests), and in a
real browser, opened from a file:// URL and inside the MLflow UI's artifact view, each selector changes what is shown.

The browser tests need Chromium (`make chromium`) and are marked slow: `.venv/bin/python -m pytest -m slow
tests/test_viewer.py`.
"""

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

from tasks.evaluation.viewer import viewer_html
from tests.conftest import mlflow_command

# As in tests/test_ui.py, copied: importing it loads mlflow, seconds the quick tests here need not wait.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Skipped without Chromium, except in CI (.ci/run installs it): there a missing browser must fail, not pass silently.
needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM) and os.environ.get("CI") != "true", reason="chromium is absent (make chromium)"
)

METHODS = ["attention", "rollout", "gradient_attention", "input_x_gradient", "random"]
ATTACK = "</script><script>alert(1)</script>"
SCORES = {"rollout": {"deletion_auc": 0.31, "insertion_auc": 0.7, "localization": 0.6}}


def peaked(size: int, at: int, sign: float = 1.0) -> list[float]:
    """A map that is 0.1 everywhere and `sign` at `at`: its argmax (or argmin) is known."""
    return [sign if i == at else 0.1 for i in range(size)]


def picture(width: int = 32, height: int = 32) -> str:
    """A grayscale PNG, base64: dark left half, light right half."""
    image = Image.new("L", (width, height), 40)
    image.paste(200, (width // 2, 0, width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def example(index: int, size: int, rollout_at: int, gradient_at: int, **fields) -> dict:
    """One explained example: rollout peaks at `rollout_at`, gradient_attention at `gradient_at`; in the raw
    attention, layer l's head h peaks at l * 4 + h (mod size)."""
    maps = {
        "attention": peaked(size, (rollout_at + 1) % size),
        "rollout": peaked(size, rollout_at),
        "gradient_attention": peaked(size, gradient_at),
        "input_x_gradient": peaked(size, gradient_at, sign=-1.0),
        "random": [(7 * i % size) / size for i in range(size)],
    }
    heads = [[peaked(size, (layer * 4 + head) % size) for head in range(4)] for layer in range(2)]
    return {"index": index, "true": "seven", "predicted": "one", "maps": maps, "heads": heads, **fields}


def image_explained() -> dict:
    """Two image examples on a 4x4 grid: the first with rollout in the top-left patch and gradient_attention in the
    bottom-right one, the second with rollout in patch 5."""
    examples = [example(17, 16, 0, 15, picture=picture()), example(3, 16, 5, 10, picture=picture())]
    base = {"title": "image", "kind": "image", "methods": METHODS, "layers": 2, "heads": 4, "grid": [4, 4]}
    return {**base, "examples": examples, "scores": SCORES}


def spectrogram_explained() -> dict:
    """A 64-frame spectrogram (16 mel bands) in 8 frame columns, rollout in column 6."""
    base = {"title": "speech", "kind": "spectrogram", "methods": METHODS, "layers": 2, "heads": 4, "grid": [1, 8]}
    return {**base, "examples": [example(4, 8, 6, 1, picture=picture(64, 16))]}


def tokens_explained() -> dict:
    tokens = ["the", "##re", ATTACK, "is", "a", "cat"]
    base = {"title": "text", "kind": "tokens", "methods": METHODS, "layers": 2, "heads": 4}
    return {**base, "examples": [example(0, len(tokens), 2, 5, tokens=tokens)]}


SEQUENCE_METHODS = ["cross_attention", "last_layer_attention", "gradient_attention", "input_x_gradient", "random"]


def alignment_explained() -> dict:
    """A translation example of 3 output tokens over 4 source subwords: cross_attention aligns output token t with
    source subword t, gradient_attention with subword 3 - t; a source token tries to break out of the page."""
    sources, outputs = ["▁Polen", ATTACK, "▁und", "▁Chile"], ["▁Poland", "▁and", "▁Chile"]
    maps = {method: [peaked(4, (t + 2) % 4) for t in range(3)] for method in SEQUENCE_METHODS}
    maps["cross_attention"] = [peaked(4, t) for t in range(3)]
    maps["gradient_attention"] = [peaked(4, 3 - t) for t in range(3)]
    example = {"index": 5, "true": "Poland and Chile", "predicted": "Poland and Chile", "source_tokens": sources,
               "output_tokens": outputs, "maps": maps}  # fmt: skip
    base = {"title": "translation", "kind": "alignment", "methods": SEQUENCE_METHODS, "layers": 0, "heads": 0}
    return {**base, "examples": [example], "scores": SCORES}


class Scripts(HTMLParser):
    """The page's <script> elements as an HTML tokenizer splits them: (attributes, text)."""

    def __init__(self):
        super().__init__()
        self.scripts, self.current = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.current = (dict(attrs), [])

    def handle_data(self, data):
        if self.current:
            self.current[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self.current:
            self.scripts.append((self.current[0], "".join(self.current[1])))
            self.current = None


def scripts(page: str) -> list[tuple[dict, str]]:
    parser = Scripts()
    parser.feed(page)
    return parser.scripts


def test_page_loads_nothing_from_the_network():
    for explained in (image_explained(), tokens_explained(), alignment_explained()):
        page = viewer_html(explained)
        assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
        assert not re.search(r"https?://|@import|url\(", page), "a fetch, font or stylesheet from elsewhere"


@pytest.mark.parametrize("explained", [tokens_explained(), alignment_explained()], ids=["tokens", "alignment"])
def test_embedded_data_round_trips_and_a_script_token_cannot_break_out(explained):
    found = scripts(viewer_html(explained))
    assert [attributes.get("id") for attributes, _ in found] == ["data", None]  # the data, the code: nothing else
    assert found[0][0]["type"] == "application/json"
    assert json.loads(found[0][1]) == explained
    assert ATTACK not in found[0][1] and "alert(1)" not in found[1][1]


def test_a_map_with_nan_is_refused_not_written_as_a_page_that_shows_nothing():
    explained = image_explained()
    explained["examples"][0]["maps"]["rollout"][0] = float("nan")
    with pytest.raises(ValueError):
        viewer_html(explained)


def shown(page) -> list[float]:
    return json.loads(page.get_attribute("#view", "data-map"))


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def pixel(frame, x: int, y: int) -> list[int]:
    """The canvas's RGBA at (x, y)."""
    return frame.evaluate(
        f"() => [...document.querySelector('#view canvas').getContext('2d').getImageData({x}, {y}, 1, 1).data]"
    )


def check_image_view(frame):
    """The view of `image_explained` in a page or frame: map, method, layer, head and example selectors each change
    the map shown, and the canvas shows the picture under the heatmap."""
    frame.wait_for_selector("#view canvas")
    assert frame.locator("#example option").all_inner_texts() == [
        "#17 true seven / predicted one",
        "#3 true seven / predicted one",
    ]
    frame.select_option("#method", "rollout")
    rollout = shown(frame)
    assert argmax(rollout) == 0 and rollout[0] == 1.0  # normalised to the map's largest value
    top_left, right = pixel(frame, 10, 10), pixel(frame, 470, 300)  # patch 0 (rollout 1); patch 11 (0.1)
    assert top_left[0] > top_left[1] + 80 and top_left[3] == 255, top_left  # red over the dark picture
    assert right[0] > 150 and right[1] > 150, right  # the light right half shows through
    frame.select_option("#method", "gradient_attention")
    assert argmax(shown(frame)) == 15
    assert pixel(frame, 10, 10)[0] < top_left[0] - 60  # the red moved away from the top-left patch
    assert frame.locator("#layer").is_hidden() and frame.locator("#head").is_hidden()
    frame.select_option("#method", "@heads")
    assert frame.locator("#layer").is_visible() and frame.locator("#head").is_visible()
    assert frame.locator("#head option").all_inner_texts() == ["mean", "1", "2", "3", "4"]
    mean = shown(frame)
    frame.select_option("#layer", "2")
    frame.select_option("#head", "3")
    assert argmax(shown(frame)) == 6 and shown(frame) != mean  # layer 2, head 3 (counted from 1) peaks at 1 * 4 + 2
    frame.select_option("#method", "rollout")
    frame.select_option("#example", "1")
    assert argmax(shown(frame)) == 5
    assert "deletion_auc" in frame.inner_text("#scores") and "0.310" in frame.inner_text("#scores")


def check_spectrogram_view(page):
    """The view of `spectrogram_explained`: the rollout column is a bar over the whole height, and only that one."""
    page.wait_for_selector("#view canvas")
    page.select_option("#method", "rollout")
    top, bottom, first = pixel(page, 410, 3), pixel(page, 410, 124), pixel(page, 10, 64)  # 512x128: 64 px a frame
    assert top[0] > top[1] + 80 and bottom[0] > bottom[1] + 80 and first[0] < first[1] + 30, (top, bottom, first)


def check_tokens_view(page):
    """The view of `tokens_explained`: a span per token, the script token shown as text, signed maps in two hues."""
    page.select_option("#method", "rollout")
    spans = page.locator("#view span")
    assert spans.all_inner_texts() == tokens_explained()["examples"][0]["tokens"]
    assert argmax(shown(page)) == 2 and spans.nth(2).get_attribute("title") == f"{ATTACK}: 1"
    page.select_option("#method", "input_x_gradient")
    assert min(shown(page)) == -1.0 and "rgba(20, 60, 230" in spans.nth(5).get_attribute("style")
    assert page.title() == "text: attention and relevance maps" and page.inner_text("#scores") == ""


def check_alignment_view(page):
    """The view of `alignment_explained`: an output tokens x source subwords heatmap whose rows follow the method;
    switching the method moves each row's peak."""
    page.select_option("#method", "cross_attention")
    assert page.locator("#layer-box").is_hidden() and page.locator("#method option").count() == 5  # no raw heads
    headers = page.locator("#view table.alignment tr").first.locator("th.source")
    assert headers.all_inner_texts() == alignment_explained()["examples"][0]["source_tokens"]
    assert page.locator("#view table.alignment tr").count() == 4  # the header, then one row per output token
    aligned = shown(page)
    assert [argmax(row) for row in aligned] == [0, 1, 2] and all(max(row) == 1.0 for row in aligned)
    cell = page.locator("#view table.alignment tr").nth(2).locator("td").nth(1)  # "▁and" over the attack token
    assert cell.get_attribute("title") == f"▁and <- {ATTACK}: 1"
    assert "rgba(230, 30, 20, 0.9)" in cell.get_attribute("style")
    page.select_option("#method", "gradient_attention")
    assert [argmax(row) for row in shown(page)] == [3, 2, 1]
    assert "rgba(230, 30, 20, 0.09" in cell.get_attribute("style")  # the same cell, now 0.1 of its row's peak
    assert page.title() == "translation: attention and relevance maps" and "0.310" in page.inner_text("#scores")


def browse(playwright, failures: list[str], source=lambda place: True):
    """A headless Chromium page that records into `failures` the console errors, uncaught errors and dialogs that
    `source` accepts: it is given the error's URL or stack, to tell the viewer's errors from its host page's."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and source(m.location["url"]) and failures.append(m.text))
    page.on("pageerror", lambda error: source(error.stack or "") and failures.append(f"uncaught: {error}"))
    page.on("dialog", lambda dialog: failures.append(f"dialog: {dialog.message}") or dialog.dismiss())
    return browser, page


@pytest.mark.slow
@needs_chromium
def test_viewer_in_a_browser_from_a_file(tmp_path):
    from playwright.sync_api import sync_playwright

    image, spectrogram, text = tmp_path / "image.html", tmp_path / "speech.html", tmp_path / "text.html"
    image.write_text(viewer_html(image_explained()))
    spectrogram.write_text(viewer_html(spectrogram_explained()))
    text.write_text(viewer_html(tokens_explained()))
    alignment = tmp_path / "alignment.html"
    alignment.write_text(viewer_html(alignment_explained()))
    failures = []
    with sync_playwright() as playwright:
        browser, page = browse(playwright, failures)
        page.on("request", lambda r: r.url.startswith(("file:", "data:")) or failures.append(f"request: {r.url}"))
        page.goto(image.as_uri())
        check_image_view(page)
        page.screenshot(path=tmp_path / "image.png")
        page.goto(spectrogram.as_uri())
        check_spectrogram_view(page)
        page.goto(text.as_uri())
        check_tokens_view(page)
        page.goto(alignment.as_uri())
        check_alignment_view(page)
        page.screenshot(path=tmp_path / "alignment.png")
        browser.close()
    assert failures == []


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a free loopback port, a sqlite store and artifacts under tmp_path; yields its address."""
    store = ("--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow_command(tmp_path, "server", *store, "--artifacts-destination", str(tmp_path / "artifacts")) as url:
        yield url


@pytest.mark.slow
@needs_chromium
def test_viewer_inside_the_mlflow_artifact_view(mlflow_server, tmp_path):
    """The MLflow UI fetches an HTML artifact and shows it in an iframe sandboxed to scripts only (an opaque origin:
    no storage, no navigation); the page must work there as it does from a file."""
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("viewer")
    run = client.create_run(experiment).info.run_id
    client.log_text(run, viewer_html(image_explained()), "attention/viewer.html")
    failures = []
    with sync_playwright() as playwright:
        browser, page = browse(playwright, failures, source=lambda place: "blob:" in place)  # the iframe's
        page.set_viewport_size({"width": 1600, "height": 1200})
        page.goto(f"{mlflow_server}/#/experiments/{experiment}/runs/{run}/artifactPath/attention/viewer.html")
        check_image_view(page.wait_for_selector("iframe.mlflow-html-iframe", timeout=60_000).content_frame())
        page.screenshot(path=tmp_path / "mlflow.png")
        browser.close()
    print(f"screenshot: {tmp_path / 'mlflow.png'}")
    assert failures == []
