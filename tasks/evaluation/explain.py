"""Scoring a classifier's attention maps: are they faithful to the model, and do they point at the right place?

For a fixed, evenly spaced sample of test examples and every method of attn_models/attribution.py:

- **deletion AUC** (lower is better): the predicted class's probability as the tokens are removed, most relevant
  first, averaged over the curve; **insertion AUC** (higher is better): the same as they are added back to an input
  with all tokens removed. A removed token is the baseline input's (the kind's ``removal_baseline``: a black
  image, silence, unknown words; attn_models/attribution.py).
- **deletion gap**: the random map's deletion AUC minus the method's: above 0, the map ranks the tokens the model
  relies on better than chance.
- **localization** (when the kind knows where the evidence is, ``Classifier.localization_target``): the share of
  the map's mass on the evidence (the ink of a built-in digit, the frames of a built-in spoken word), and the
  **pointing game**: whether the map's top token lies on it. Where the evidence is the whole input (every word of a
  sentence says its language), the kind joins the example with one of another class instead
  (``Classifier.spliced_example``) and scores the maps of the joined input on the part of the class it predicts.

Metric names: ``attn_<score>.<method>``, e.g. ``attn_deletion_auc.gradient_attention``. Files, under explain/:
curves.png (the mean curves), scores.json (the table), examples.json (the maps of the first examples) and
viewer.html, the page that shows them (tasks/evaluation/viewer.py). A classifier's spec names
``explain_classifier`` as its explainer and supplies what is its own: the evidence of an input
(``localization_target``) and how the viewer shows it (``viewer_input``).
"""

from functools import partial

import numpy as np

from attn_models.attribution import METHODS, area_under, class_token_maps, reference_tokens, removal_curve
from tasks.evaluation.viewer import viewer_html

SCORES = ("deletion_auc", "insertion_auc", "deletion_gap", "localization", "pointing")
SUMMED = ("deletion_auc", "insertion_auc", "logprob_drop", "localization", "pointing")  # averaged over examples


def sample_indices(count: int, samples: int) -> list[int]:
    """samples evenly spaced indices of a split of count examples (all of them when there are fewer)."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(samples, count))})


def score_example(model, inputs, baseline, localization_target, steps: int, seed: int) -> dict:
    """The maps of one example (inputs: a batch of one) and, per method, its curves and localization.
    baseline: the input that removed tokens are taken from (the kind's ``removal_baseline``);
    localization_target(tokens): the evidence's share of each token (T,), or None when unknown."""
    reference = reference_tokens(model, baseline)  # once: every map and curve of the example takes it
    maps = class_token_maps(model, inputs, seed=seed, reference=reference)
    target = localization_target(len(maps["random"]))
    scores = {}
    for method in METHODS:
        curve = dict(model=model, inputs=inputs, relevance=maps[method], target=maps["target"], steps=steps,
                     reference=reference)  # fmt: skip
        fractions, deletion = removal_curve(**curve)
        _, insertion = removal_curve(**curve, insertion=True)
        scores[method] = {
            "deletion": deletion.numpy(),
            "insertion": insertion.numpy(),
            "deletion_auc": area_under(fractions, deletion),
            "insertion_auc": area_under(fractions, insertion),
        }
        if target is not None:
            scores[method]["localization"] = float((maps[method] * target).sum())
            scores[method]["pointing"] = float(target[int(maps[method].argmax())] > 0)
    return {"maps": maps, "scores": scores}


def spliced_localization(model, inputs, baseline, evidence: dict, seed: int) -> dict | None:
    """Localization and pointing of every method on an input joined from examples of different classes (inputs: a
    batch of one; evidence: {class: (T,) share of each token that is evidence for it}), for the class the model
    predicts on it; None when that is none of the joined examples' classes."""
    maps = class_token_maps(model, inputs, seed=seed, reference=reference_tokens(model, baseline))
    target = evidence.get(maps["target"])
    if target is None:
        return None
    return {
        method: {
            "localization": float((maps[method] * target).sum()),
            "pointing": float(target[int(maps[method].argmax())] > 0),
        }
        for method in METHODS
    }


def summary(examples: list[dict], methods=METHODS) -> dict[str, dict[str, float]]:
    """{method: {score: mean over the examples that have it}}, the deletion gap included."""
    table = {}
    for method in methods:
        scores = [example["scores"][method] for example in examples]
        table[method] = {
            key: float(np.mean([score[key] for score in scores if key in score]))
            for key in SUMMED
            if any(key in score for score in scores)
        }
    for method in methods:
        table[method]["deletion_gap"] = table["random"]["deletion_auc"] - table[method]["deletion_auc"]
    return table


def as_metrics(table: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"attn_{score}.{method}": value for method, scores in table.items() for score, value in scores.items()}


def curves_figure(examples: list[dict], steps: int, title: str, methods=METHODS,
                  ylabel: str = "probability of the predicted class"):  # fmt: skip
    """The mean deletion and insertion curve of each method, side by side."""
    import matplotlib.pyplot as plt

    fractions = np.linspace(0, 1, steps + 1)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for curve, ax in zip(("deletion", "insertion"), axes):
        for method in methods:
            mean = np.mean([example["scores"][method][curve] for example in examples], axis=0)
            ax.plot(fractions, mean, label=method, linestyle=":" if method == "random" else "-")
        ax.set(title=f"{curve} (tokens {'removed' if curve == 'deletion' else 'added'}, most relevant first)",
               xlabel="fraction of tokens", ylim=(0, 1.02))  # fmt: skip
        ax.title.set_fontsize(9)
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def explain_classifier(spec, e) -> dict[str, float]:
    """Maps of every method for global.explain.samples test examples, scored; curves and scores logged to the run
    (e: tasks.kinds.base.Explanation). Returns the attn_* metrics."""
    import matplotlib.pyplot as plt

    examples, shown = [], []
    for index in sample_indices(len(e.splits.test), e.settings.samples):
        item, label = e.splits.test[index]
        baseline, inputs = spec.removal_baseline(item, e).unsqueeze(0), item.unsqueeze(0)
        target = partial(spec.localization_target, index, item, e=e)  # of the tokens: known once the maps are
        scored = score_example(e.model, inputs, baseline, target, e.settings.steps, e.seed + index)
        spliced = spec.spliced_example(index, item, label, e)
        if spliced is not None:
            joined, evidence = spliced
            baseline = spec.removal_baseline(joined, e).unsqueeze(0)
            located = spliced_localization(e.model, joined.unsqueeze(0), baseline, evidence, e.seed + index)
            for method, scores in (located or {}).items():
                scored["scores"][method].update(scores)
        examples.append(scored)
        if len(shown) < e.settings.viewer_examples:
            shown.append(viewer_record(spec, index, item, label, scored["maps"], e))
    table = summary(examples)
    figure = curves_figure(examples, e.settings.steps, f"{spec.name}: {len(examples)} test examples")
    e.client.log_figure(e.run_id, figure, "explain/curves.png")
    plt.close(figure)
    e.client.log_dict(e.run_id, {"samples": len(examples), "scores": table}, "explain/scores.json")
    layers, heads, _ = examples[0]["maps"]["heads"].shape
    explained = {"title": spec.name, "kind": spec.viewer_kind, "methods": list(METHODS), "layers": layers,
                 "heads": heads, **({"grid": shown[0]["grid"]} if "grid" in shown[0] else {}), "examples": shown,
                 "scores": table}  # fmt: skip
    e.client.log_dict(e.run_id, explained, "explain/examples.json")
    e.client.log_text(e.run_id, viewer_html(explained), "explain/viewer.html")
    return as_metrics(table)


def viewer_record(spec, index: int, item, label: int, maps: dict, e) -> dict:
    """One example as the viewer reads it: labels, the input, every map and the raw attention per layer/head."""
    class_names = e.splits.class_names
    return {
        "index": index,
        "true": class_names[label],
        "predicted": class_names[maps["target"]],
        **spec.viewer_input(item, len(maps["random"]), e),
        "maps": {method: [round(float(v), 5) for v in maps[method]] for method in METHODS},
        "heads": [[[round(float(v), 5) for v in head] for head in layer] for layer in maps["heads"]],
    }
