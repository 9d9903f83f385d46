"""Scoring a sequence model's attention maps (translation, speech recognition): per output token, a map over the
source units (source subwords, encoder frames) by every method of attn_models/sequence_attribution.py.

For a fixed, evenly spaced sample of test inputs, the model's own output (beam search with the eval section's
settings, as the evaluate stage decodes) is read back by teacher forcing, and for every method:

- **deletion AUC** (lower is better): each output token's probability as the source units are removed in the order
  of that token's own map, most relevant first, averaged over the output tokens, then over the curve; **insertion
  AUC** (higher is better): the same as they are added back to the baseline (the kind's ``removal_baseline``:
  [UNK] tokens for translation, a silent clip for speech recognition). **deletion gap**: the random map's deletion
  AUC minus the method's; above 0, better than chance.
- **log-probability drop** (higher is better): the deletion curve in log-probabilities: how far, on average over
  the curve's points and the output tokens, log p(y_t) falls below its value on the whole source.
- **localization** (where the kind knows the right alignment: ``SequenceKind.alignment_evidence``; the built-in
  translation corpus's phrases): the maps of the *reference* output (teacher-forced, so its phrases are known); per
  reference subword inside a phrase, the share of its map on the source subwords of the aligned phrase, and the
  **pointing game**: whether its top source subword lies in that phrase. Only sentences of two phrases or more count
  (in a one-phrase sentence every source subword is the phrase's).

Metric names: ``attn_<score>.<method>``; files under explain/ as for the classifiers (tasks/evaluation/explain.py,
whose sampling, summary and figure this module shares): curves.png, scores.json, examples.json and viewer.html
(kind "alignment": output tokens x source units).
"""

import torch

from attn_models.attribution import area_under
from attn_models.sequence_attribution import SEQUENCE_METHODS, output_token_maps, reference_input, removal_log_probs
from tasks.evaluation.explain import as_metrics, curves_figure, sample_indices, summary
from tasks.evaluation.viewer import viewer_html


def rounded(matrix) -> list[list[float]]:
    return [[round(float(v), 5) for v in row] for row in matrix]


def score_sequence(model, source, target, reference, steps: int, seed: int) -> dict:
    """The maps of one output (target: [BOS] y1 .. yT, the last [EOS]) of one source (a batch of one), and per
    method its curves. reference: ``reference_input`` of the baseline source."""
    maps = output_token_maps(model, source, target, reference, seed=seed)["maps"]
    fractions, scores = torch.linspace(0, 1, steps + 1), {}
    for method in SEQUENCE_METHODS:
        deletion, insertion = (removal_log_probs(model, source, target, maps[method], reference, steps, insertion=i)
                               for i in (False, True))  # fmt: skip
        deletion_curve, insertion_curve = deletion.exp().mean(dim=1), insertion.exp().mean(dim=1)  # (steps + 1,)
        scores[method] = {
            "deletion": deletion_curve.numpy(),
            "insertion": insertion_curve.numpy(),
            "deletion_auc": area_under(fractions, deletion_curve),
            "insertion_auc": area_under(fractions, insertion_curve),
            "logprob_drop": float((deletion[0] - deletion).mean()),
        }
    return {"maps": maps, "scores": scores}


def localization(model, source, target, reference, evidence, seed: int) -> dict[str, dict[str, float]]:
    """{method: {"localization", "pointing"}} of the maps of target (the reference output) against evidence (T, S):
    1 where source unit s is in the phrase that target token t belongs to; rows of tokens in no phrase are 0 and
    not scored. Empty when no row is scored."""
    scored = evidence.sum(dim=-1) > 0
    if not scored.any():
        return {}
    maps = output_token_maps(model, source, target, reference, seed=seed)["maps"]
    return {
        method: {
            "localization": float((relevance * evidence).sum(dim=-1)[scored].mean()),
            "pointing": float(evidence.gather(1, relevance.argmax(dim=-1, keepdim=True))[scored].mean()),
        }
        for method, relevance in maps.items()
    }


def explain_sequence(spec, e) -> dict[str, float]:
    """Maps of every method for global.explain.samples test inputs, scored; curves and scores logged to the run
    (e: tasks.kinds.base.Explanation). Returns the attn_* metrics."""
    import matplotlib.pyplot as plt

    indices = sample_indices(len(e.splits.test), e.settings.samples)
    sources = [e.splits.test[index][0] for index in indices]
    outputs = spec.decode(e.model, sources, e.section.eval.decode_settings(), torch.device("cpu"))
    texts, references = spec.test_texts(e.data_dir, e.section)
    examples, shown = [], []
    for index, item, output in zip(indices, sources, outputs):
        source = spec.collate_sources([item])
        reference = reference_input(e.model, spec.collate_sources([spec.removal_baseline(item, e)]))
        target = torch.tensor([e.model.bos_id, *output, e.model.eos_id])
        scored = score_sequence(e.model, source, target, reference, e.settings.steps, e.seed + index)
        truth = e.splits.test[index][1]  # the reference output: [BOS] .. [EOS]
        evidence = spec.alignment_evidence(index, item, truth, e)
        for method, scores in (localization(e.model, source, truth, reference, evidence, e.seed + index)
                               if evidence is not None else {}).items():  # fmt: skip
            scored["scores"][method].update(scores)
        examples.append(scored)
        if len(shown) < e.settings.viewer_examples:
            record = {"index": index, "true": references[index], "predicted": e.tokenizer.decode(output),
                      "source": texts[index], **spec.viewer_source(item, len(reference[0]), e),
                      "output_tokens": [e.tokenizer.id_to_token(int(i)) for i in target[1:]],
                      "maps": {method: rounded(scored["maps"][method]) for method in SEQUENCE_METHODS}}  # fmt: skip
            shown.append(record)
    table = summary(examples, SEQUENCE_METHODS)
    figure = curves_figure(examples, e.settings.steps, f"{spec.name}: {len(examples)} test inputs", SEQUENCE_METHODS,
                           "probability of each output token (mean)")  # fmt: skip
    e.client.log_figure(e.run_id, figure, "explain/curves.png")
    plt.close(figure)
    e.client.log_dict(e.run_id, {"samples": len(examples), "scores": table}, "explain/scores.json")
    explained = {"title": spec.name, "kind": "alignment", "methods": list(SEQUENCE_METHODS), "layers": 0,
                 "heads": 0, "examples": shown, "scores": table}  # fmt: skip
    e.client.log_dict(e.run_id, explained, "explain/examples.json")
    e.client.log_text(e.run_id, viewer_html(explained), "explain/viewer.html")
    return as_metrics(table)
