"""An HTML page to browse the attention and relevance maps of a few test examples, one map at a time.

The static figures show one map per picture; this page lets a reader put the methods side by side on the same input
(switch the map, the layer and the head of the raw attention, the example) without re-running anything. It is one
self-contained file, logged as a run artifact: no CDN, fonts or fetches (the data is embedded as JSON, the pictures
as base64 PNGs, the code is plain JavaScript), so it opens from a file:// URL, offline, and inside the MLflow UI's
artifact view, which shows HTML in a sandboxed iframe (scripts allowed; no storage, no same origin, no navigation).

What `explained` holds (built by the explain stage; `tests/test_viewer.py` builds examples by hand):
- `title` (the task's kind, shown in the title), `kind` ("tokens", "image", "spectrogram" or "alignment"),
  `methods` (the map names, in order), `layers` and `heads` (the shape of each example's `heads`; 0 when there is
  no raw attention to show, as for "alignment"), `grid` ([rows, cols] of patches for "image",
  [1, frames] for "spectrogram"; absent for "tokens"), `scores` (optional: {method: {score name: value}});
- `examples`: each with `index` (in the test set), `true`, `predicted`, `tokens` ("tokens" only) or `picture` (a
  base64 PNG: the grayscale image, or the spectrogram with time on the x axis), `maps` ({method: one value per
  token, patch in row-major order, or frame}) and `heads` (per layer, per head: the class token's attention to each
  of the same tokens, patches or frames).
- "alignment" (sequence tasks: tasks/evaluation/explain_sequence.py): each example has `source_tokens` (a label per
  source unit: subwords, or encoder frames by their start time), `output_tokens`, and `maps` ({method: per output
  token, one value per source unit}), drawn as an output tokens x source units heatmap; no `heads`.

The view element `#view` carries the map it shows as `data-map`: a JSON array of the values divided by the largest
absolute value of that map for that example (so in [-1, 1], 0 where the map is all zeros), the numbers that colour
it; each token's tooltip gives the raw value. For "alignment" it is the matrix (one array per output token), each row
divided by its own largest absolute value (each output token has its own map). The selectors' values: `#example`
the example's position in the list, `#method` a method's name or "@heads" (the raw attention), `#layer` and `#head`
counted from 1 as shown (or "mean").
"""

import json

RAW_ATTENTION = "@heads"  # the method selector's value for "attention (layer/head)"; method names never start with @

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>attention</title>
<style>
  body { font: 14px/1.5 system-ui, sans-serif; margin: 1.5em; color: #222; }
  .controls label { margin-right: 1.2em; }
  [hidden] { display: none !important; }
  #view { margin: 1em 0; max-width: 60em; }
  #view span { padding: 0 2px; margin: 1px; border-radius: 3px; display: inline-block; }
  canvas { image-rendering: pixelated; border: 1px solid #ccc; }
  table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
  .legend { color: #666; font-size: 12px; }
  table.alignment td { width: 1.4em; height: 1.3em; padding: 0; border: 1px solid #eee; }
  table.alignment th { font-weight: normal; font-size: 12px; padding: 0 4px; }
  table.alignment th.source { writing-mode: vertical-rl; text-align: left; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="controls">
  <label>example <select id="example"></select></label>
  <label>map <select id="method"></select></label>
  <label id="layer-box" hidden>layer <select id="layer"></select></label>
  <label id="head-box" hidden>head <select id="head"></select></label>
</div>
<div id="view"></div>
<p class="legend">red: relevant (scaled to this map's largest value), blue: negative relevance</p>
<table id="scores"></table>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const RAW = "__RAW__";
const data = JSON.parse(document.getElementById("data").textContent);
const $ = id => document.getElementById(id);
const pictures = (data.examples || []).map(example => {
  if (!example.picture) return null;
  const image = new Image();
  image.onload = render;  // drawn once decoded; render draws only the current example's picture
  image.src = "data:image/png;base64," + example.picture;
  return image;
});

function option(select, value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  select.appendChild(element);
}

function fillSelectors() {
  data.examples.forEach((e, i) => option($("example"), i, `#${e.index} true ${e.true} / predicted ${e.predicted}`));
  data.methods.forEach(name => option($("method"), name, name));
  if (data.layers) option($("method"), RAW, "attention (layer/head)");
  for (let layer = 1; layer <= data.layers; layer++) option($("layer"), layer, layer);  // counted from 1, as shown
  option($("head"), "mean", "mean");
  for (let head = 1; head <= data.heads; head++) option($("head"), head, head);
}

function rawMap(example) {
  const heads = example.heads[Number($("layer").value) - 1];
  if ($("head").value !== "mean") return heads[Number($("head").value) - 1];
  return heads[0].map((_, i) => heads.reduce((sum, head) => sum + head[i], 0) / heads.length);
}

function shownMap(example) {
  return $("method").value === RAW ? rawMap(example) : example.maps[$("method").value];
}

function normalised(values) {
  const largest = Math.max(0, ...values.map(Math.abs));
  return values.map(value => (largest > 0 ? value / largest : 0));
}

function colour(value, alpha) {  // value in [-1, 1]: red for positive, blue for negative
  const strength = Math.abs(value);
  return value >= 0 ? `rgba(230, 30, 20, ${alpha * strength})` : `rgba(20, 60, 230, ${alpha * strength})`;
}

function drawTokens(view, example, raw, values) {
  example.tokens.forEach((token, i) => {
    const span = document.createElement("span");
    span.textContent = token;
    span.title = `${token}: ${raw[i]}`;
    span.style.background = colour(values[i], 0.85);
    view.appendChild(span);
  });
}

function drawAlignment(view, example, raw, values) {  // rows: output tokens, columns: source units
  const table = document.createElement("table"), header = table.insertRow();
  table.className = "alignment";
  header.appendChild(document.createElement("th"));
  example.source_tokens.forEach(token => {
    const cell = header.appendChild(document.createElement("th"));
    cell.className = "source";
    cell.textContent = token;
  });
  example.output_tokens.forEach((token, t) => {
    const row = table.insertRow();
    row.appendChild(document.createElement("th")).textContent = token;
    values[t].forEach((value, s) => {
      const cell = row.insertCell();
      cell.title = `${token} <- ${example.source_tokens[s]}: ${raw[t][s]}`;
      cell.style.background = colour(value, 0.9);
    });
  });
  view.appendChild(table);
}

function drawPicture(view, picture, values) {
  const canvas = document.createElement("canvas");
  const scale = Math.max(1, Math.round(480 / Math.max(picture.width, picture.height)));
  canvas.width = picture.width * scale;
  canvas.height = picture.height * scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(picture, 0, 0, canvas.width, canvas.height);
  const [rows, cols] = data.grid, width = canvas.width / cols, height = canvas.height / rows;
  values.forEach((value, i) => {  // row-major cells; a spectrogram's grid is one row: a bar per frame
    context.fillStyle = colour(value, 0.6);
    context.fillRect((i % cols) * width, Math.floor(i / cols) * height, width, height);
  });
  view.appendChild(canvas);
}

function render() {
  const which = Number($("example").value), example = data.examples[which], view = $("view");
  const raw = shownMap(example), values = data.kind === "alignment" ? raw.map(normalised) : normalised(raw);
  $("layer-box").hidden = $("head-box").hidden = $("method").value !== RAW;
  view.replaceChildren();
  view.dataset.map = JSON.stringify(values);
  if (data.kind === "tokens") return drawTokens(view, example, raw, values);
  if (data.kind === "alignment") return drawAlignment(view, example, raw, values);
  const picture = pictures[which];
  if (picture.complete && picture.naturalWidth) drawPicture(view, picture, values);
}

function fillScores() {
  const methods = Object.keys(data.scores || {});
  const names = [...new Set(methods.flatMap(method => Object.keys(data.scores[method])))];
  const addRow = (tag, texts) => {
    const row = $("scores").insertRow();
    texts.forEach(text => (row.appendChild(document.createElement(tag)).textContent = text));
  };
  if (methods.length) addRow("th", ["", ...names]);
  methods.forEach(m => addRow("td", [m, ...names.map(name => data.scores[m][name]?.toFixed(3) ?? "")]));
}

$("title").textContent = document.title = `${data.title}: attention and relevance maps`;
fillSelectors();
fillScores();
["example", "method", "layer", "head"].forEach(id => $(id).addEventListener("change", render));
render();
</script>
</body>
</html>
"""


def embedded_json(explained: dict) -> str:
    """The data as JSON that is safe inside a <script> element: every `<` is written `\\u003c`, so no string in it
    (a token "</script>", a comment "<!--") can end the element or open markup; JSON.parse reads it back unchanged.
    NaN and infinities are refused: JSON.parse would reject them and the page would show nothing."""
    return json.dumps(explained, allow_nan=False).replace("<", "\\u003c")


def viewer_html(explained: dict) -> str:
    """The viewer page for `explained` (the format is in this module's docstring), as one self-contained HTML string."""
    return TEMPLATE.replace("__RAW__", RAW_ATTENTION).replace("__DATA__", embedded_json(explained))
