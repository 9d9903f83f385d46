"""The translation spec's right alignment on the built-in corpus (the phrases its generator records, found in the
subwords by the tokenizer's offsets), and the localization score against it (tasks/evaluation/explain_sequence.py)."""

import torch

from tasks.data.builtin_translation import generate_translation_dataset, read_phrases
from tasks.data.datasets import read_parallel, train_tokenizer
from tasks.evaluation.explain_sequence import localization
from tasks.kinds import get
from tasks.kinds.base import Explanation
from tasks.kinds.translation import token_phrases
from tasks.params import load_params
from tests.conftest import REPO, TRANSLATION
from tests.test_sequence_attribution import PositionCopier


def corpus(tmp_path):
    """A small built-in corpus, its tokenizer and an Explanation of it (the parts alignment_evidence reads)."""
    generate_translation_dataset(tmp_path, num_pairs=150, max_phrases=3, test_fraction=0.2, seed=3)
    german, english = read_parallel(tmp_path, "train", ("de", "en"))
    tokenizer = train_tokenizer(german + english, 300, reversible=True)
    section = load_params(REPO / "params.yaml").task(TRANSLATION)
    explanation = Explanation(None, "", None, {}, None, section, tokenizer, None, 0, True, tmp_path)
    return tokenizer, explanation


def test_each_subword_is_given_the_phrase_its_characters_are_in(tmp_path):
    tokenizer, _ = corpus(tmp_path)
    german, english = read_parallel(tmp_path, "test", ("de", "en"))
    for text, spans in [*zip(german, (p["source"] for p in read_phrases(tmp_path))),
                        *zip(english, (p["target"] for p in read_phrases(tmp_path)))]:  # fmt: skip
        encoding, phrases = tokenizer.encode(text), token_phrases(text, spans, tokenizer)
        assert len(phrases) == len(encoding.ids)
        for number, (start, end) in enumerate(spans):  # the subwords of a phrase spell it
            covered = {c for (a, b), phrase in zip(encoding.offsets, phrases) if phrase == number for c in range(a, b)}
            spelled = "".join(text[c] for c in sorted(covered))  # offsets may overlap (the first piece, "▁")
            assert spelled.strip().rstrip(";") == text[start:end], (text, spelled)
        assert all(phrase is None for token, phrase in zip(encoding.tokens, phrases) if token == ";")


def test_the_evidence_of_a_reference_subword_is_the_source_phrase_it_renders(tmp_path):
    tokenizer, explanation = corpus(tmp_path)
    spec, phrases = get("translation"), read_phrases(tmp_path)
    german, english = read_parallel(tmp_path, "test", ("de", "en"))
    several = [i for i, p in enumerate(phrases) if len(p["source"]) >= 2]
    assert several and any(len(p["source"]) == 1 for p in phrases)
    for index, spans in enumerate(phrases):
        source = torch.tensor(tokenizer.encode(german[index]).ids)
        target = torch.tensor([2, *tokenizer.encode(english[index]).ids, 3])
        evidence = spec.alignment_evidence(index, source, target, explanation)
        if index not in several:
            assert evidence is None  # one phrase: every source subword is its evidence, nothing to score
            continue
        assert evidence.shape == (len(target) - 1, len(source)) and evidence[-1].sum() == 0  # [EOS]: no phrase
        source_phrases = token_phrases(german[index], spans["source"], tokenizer)
        target_phrases = token_phrases(english[index], spans["target"], tokenizer)
        for row, phrase in enumerate(target_phrases):
            expected = [float(phrase is not None and p == phrase) for p in source_phrases]
            assert evidence[row].tolist() == expected
    imported = Explanation(None, "", None, {}, None, explanation.section, tokenizer, None, 0, False, tmp_path)
    assert spec.alignment_evidence(several[0], source, target, imported) is None  # not built-in: not known


def test_localization_scores_the_share_on_the_evidence_and_whether_the_top_unit_is_on_it():
    """On the copier (token t reads source position t): evidence on the diagonal scores 1 for every attention
    method, evidence one position off scores near 0; rows without evidence are left out."""
    from attn_models.sequence_attribution import reference_input
    from tests.test_sequence_attribution import SOURCE, TARGET, unknown_words

    model = PositionCopier()
    reference = reference_input(model, unknown_words(SOURCE))
    diagonal, shifted = torch.eye(6), torch.roll(torch.eye(6), 1, dims=1)
    diagonal[0] = shifted[0] = 0  # token 0 belongs to no phrase
    right = localization(model, SOURCE, TARGET, reference, diagonal, seed=0)
    wrong = localization(model, SOURCE, TARGET, reference, shifted, seed=0)
    for method in ("cross_attention", "gradient_attention", "input_x_gradient"):
        assert right[method]["localization"] > 0.9 and right[method]["pointing"] == 1.0
        assert wrong[method]["localization"] < 0.1 and wrong[method]["pointing"] == 0.0
    assert localization(model, SOURCE, TARGET, reference, torch.zeros(6, 6), seed=0) == {}


def test_the_methods_the_stage_prints_and_compare_shows_are_ones_the_explainer_measures():
    """explain_headline names two methods of the spec's own kind: the classifiers' have no cross_attention, the
    sequence tasks' no rollout, and a name of the other kind would make the stage's log line fail."""
    from attn_models.attribution import METHODS
    from attn_models.sequence_attribution import SEQUENCE_METHODS
    from tasks.kinds import discover
    from tasks.kinds.sequence import SequenceKind
    from tasks.tracking.compare import explain_metrics

    for name, spec in discover().items():
        methods = SEQUENCE_METHODS if isinstance(spec, SequenceKind) else METHODS
        assert len(spec.explain_headline) == 2 and set(spec.explain_headline) <= set(methods), name
        assert [metric.split(".")[1] for metric in explain_metrics(spec)] == list(spec.explain_headline)
    assert "attn_deletion_gap.cross_attention" in explain_metrics(get("translation"))
