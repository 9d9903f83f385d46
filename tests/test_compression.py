"""Compression, pure: the head mask silences a head, pruning removes exactly the masked heads, head importance is the
gradient it should be, int8 stays close to float, a pruned checkpoint loads; and the rule that picks `compact`, on
the validation split."""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from attn_models.attention import MultiHeadAttention
from attn_models.compression import (
    attention_layers,
    head_importance,
    heads_to_keep,
    prune_heads,
    quantize_int8,
    state_dict_bytes,
)
from attn_models.text_classifier import TextTransformer
from attn_models.translation_transformer import TranslationTransformer
from tasks.evaluation.compress import percentiles_ms
from tasks.tracking.compact import choose, relative_drop

torch.manual_seed(0)


def test_a_zero_mask_silences_the_head_whatever_its_weights():
    attention = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    attention.head_mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    masked, _ = attention(x)
    with torch.no_grad():  # head 1's query, key and value rows: its whole computation
        for layer in (attention.q_proj, attention.k_proj, attention.v_proj):
            layer.weight[4:8] = torch.randn(4, 16) * 10
    assert torch.allclose(attention(x)[0], masked, atol=1e-6)
    attention.head_mask = None
    assert not torch.allclose(attention(x)[0], masked, atol=1e-3)  # unmasked, the changed head shows


@pytest.mark.parametrize("need_weights", [False, True])
def test_pruning_removes_exactly_the_masked_heads(need_weights):
    attention = MultiHeadAttention(16, 4).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    attention.head_mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    masked, _ = attention(x, memory, need_weights=need_weights)
    attention.prune_heads([0, 2])
    pruned, weights = attention(x, memory, need_weights=need_weights)
    assert torch.allclose(pruned, masked, atol=1e-6)
    assert attention.num_heads == 2 and attention.q_proj.out_features == 8 and attention.out_proj.in_features == 8
    if need_weights:
        assert weights.shape == (2, 2, 5, 7)


@pytest.mark.parametrize("keep", [[], [0, 0], [4]])
def test_pruning_refuses_bad_heads(keep):
    with pytest.raises(ValueError, match="distinct heads"):
        MultiHeadAttention(16, 4).prune_heads(keep)


def test_head_importance_is_the_gradient_of_the_loss_wrt_the_mask_summed_over_batches():
    model = TextTransformer(vocab_size=30, num_classes=3, max_len=8, embed_dim=16, depth=2, num_heads=4).eval()
    batches = [(torch.randint(1, 30, (4, 8)), torch.randint(0, 3, (4,))) for _ in range(2)]

    def loss(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    importance = head_importance(model, batches, loss)
    assert all(layer.head_mask is None for layer in attention_layers(model).values())  # left as it was
    name = "encoder.blocks.1.attn"
    layer, by_hand = attention_layers(model)[name], torch.zeros(4)
    for batch in batches:  # the same gradient, from a mask set by hand
        layer.head_mask = torch.ones(4, requires_grad=True)
        by_hand += torch.autograd.grad(loss(model, batch), layer.head_mask)[0].abs()
    layer.head_mask = None
    assert torch.allclose(importance[name], by_hand / by_hand.norm(), atol=1e-5)
    assert sorted(importance) == ["encoder.blocks.0.attn", "encoder.blocks.1.attn"]


def test_heads_to_keep_drops_the_least_important_in_each_layer_and_keeps_one():
    importance = {"a": torch.tensor([0.1, 0.9, 0.5, 0.2]), "b": torch.tensor([0.3, 0.3])}
    assert heads_to_keep(importance, 0.5) == {"a": [1, 2], "b": [0]}  # a tie goes to the lower index
    assert heads_to_keep(importance, 0.99) == {"a": [1], "b": [0]}
    assert heads_to_keep(importance, 0.1) == {"a": [0, 1, 2, 3], "b": [0, 1]}


def test_a_pruned_translation_model_decodes_and_aligns_like_its_masked_self():
    """Encoder self-attention, decoder self- and cross-attention are all pruned; the decoder's incremental steps and
    the alignment (heads averaged per layer) work on the smaller layers."""
    model = TranslationTransformer(vocab_size=40, embed_dim=16, encoder_depth=1, decoder_depth=2, num_heads=4,
                                   dropout=0.0, max_len=16).eval()  # fmt: skip
    kept = {name: [0, 3] for name in attention_layers(model)}
    assert len(kept) == 5
    source = torch.randint(4, 40, (2, 6))
    for layer in attention_layers(model).values():
        layer.head_mask = torch.tensor([1.0, 0.0, 0.0, 1.0])
    masked = model.greedy_decode(source, 8)
    pruned = prune_heads(copy.deepcopy(model), kept)
    assert torch.equal(pruned.greedy_decode(source, 8), masked)
    assert pruned.cross_attention(source, masked).shape == (2, masked.shape[1], 6)
    assert state_dict_bytes(pruned) < state_dict_bytes(model)


def test_int8_is_close_to_float_and_smaller():
    model = TextTransformer(vocab_size=30, num_classes=3, max_len=16, embed_dim=64, depth=2, num_heads=4).eval()
    tokens = torch.randint(1, 30, (8, 16))
    quantized = quantize_int8(model)
    float_probabilities, int8_probabilities = model(tokens).softmax(-1), quantized(tokens).softmax(-1)
    assert (float_probabilities - int8_probabilities).abs().max() < 0.05
    assert state_dict_bytes(quantized) < 0.5 * state_dict_bytes(model)
    assert isinstance(model.head, torch.nn.Linear)  # a copy: the float model is unchanged


def test_a_pruned_checkpoint_loads_with_its_smaller_layers(tmp_path):
    from tasks.kinds import load_checkpoint

    args = {"vocab_size": 30, "num_classes": 3, "max_len": 8, "embed_dim": 16, "depth": 1, "num_heads": 4}
    model = prune_heads(TextTransformer(**args).eval(), {"encoder.blocks.0.attn": [1, 2]})
    path = tmp_path / "compact.pt"
    torch.save({"kind": "text", "model_args": args, "state_dict": model.state_dict(),
                "kept_heads": {"encoder.blocks.0.attn": [1, 2]}}, path)  # fmt: skip
    loaded, _ = load_checkpoint(path)
    tokens = torch.randint(1, 30, (2, 8))
    assert torch.equal(loaded(tokens), model(tokens))


def test_percentiles_are_of_the_timed_calls():
    calls = []
    p50, p95 = percentiles_ms(lambda: calls.append(1), repeats=5)
    assert len(calls) == 6  # one warm-up
    assert 0 <= p50 <= p95


def row(variant, p50, size, metric):
    return SimpleNamespace(variant=variant, p50_ms_b32=p50, size_mb=size, metric=metric)


def test_choose_the_fastest_within_the_allowed_drop():
    rows = [row("float", 10, 4.0, 0.90), row("int8", 5, 1.0, 0.89), row("pruned", 4, 3.0, 0.80)]
    choice = choose(rows, 0.02, "eval_val_accuracy")
    assert choice.variant == "int8"  # pruned is faster but 11% worse
    assert "too much worse: pruned" in choice.reason and "slower or larger: float" in choice.reason
    assert "eval_val_accuracy is at most 2.0% worse than float's 0.9000" in choice.reason
    assert choose(rows, 0.2, "eval_val_accuracy").variant == "pruned"
    assert choose(rows, 0.0, "eval_val_accuracy").variant == "float"


def test_choose_breaks_a_latency_tie_by_size_and_follows_error_rates():
    """Latencies within 5% of the fastest are a tie (timing noise); the smaller variant wins it."""
    metric = "eval_val_accuracy"
    assert choose([row("float", 10.0, 4.0, 0.9), row("int8", 10.4, 1.0, 0.9)], 0.02, metric).variant == "int8"
    assert choose([row("float", 10.0, 4.0, 0.9), row("int8", 10.6, 1.0, 0.9)], 0.02, metric).variant == "float"
    rows = [row("float", 10, 4.0, 0.10), row("int8", 5, 1.0, 0.12), row("pruned+int8", 5, 0.5, 0.105)]
    assert choose(rows, 0.1, "eval_val_wer_greedy", higher_is_better=False).variant == "pruned+int8"  # 5% worse
    assert choose(rows, 0.01, "eval_val_wer_greedy", higher_is_better=False).variant == "float"  # 20%, 5% worse


def test_the_compact_variant_is_chosen_on_the_validation_split_not_the_test_split():
    """Two variants of a text classifier scored and chosen by the compress stage's own code: the validation labels are
    what float predicts, the test labels what the other variant predicts. Scored on validation, float is perfect and
    the other far worse, so float is chosen; on the test split it would be the other way round."""
    from tasks.data.datasets import LabelledItems, Splits
    from tasks.evaluation.compress import measure_variants
    from tasks.kinds.base import Evaluation
    from tasks.params import load_params
    from tasks.schema import CompressParams
    from tests.conftest import REPO, TEXT

    params = load_params(REPO / "params.yaml")
    spec, section = params.kind(TEXT), params.task(TEXT)
    assert spec.compress_metric == "eval_val_accuracy" and spec.compress_metric in spec.val_metrics
    args = {"vocab_size": 30, "num_classes": 3, "max_len": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    torch.manual_seed(1)
    full, other = TextTransformer(**args).eval(), TextTransformer(**args).eval()
    val_inputs, test_inputs = torch.randint(1, 30, (60, 8)), torch.randint(1, 30, (60, 8))
    with torch.no_grad():
        val_labels, test_labels = full(val_inputs).argmax(-1), other(test_inputs).argmax(-1)

    def split(inputs, labels):
        return LabelledItems(list(inputs), labels.tolist(), lambda item: item)

    splits = Splits(split(val_inputs, val_labels), split(val_inputs, val_labels), split(test_inputs, test_labels),
                    ["a", "b", "c"])  # fmt: skip
    evaluation = Evaluation(None, "", full, {}, splits, section, None, torch.device("cpu"), None)
    settings = CompressParams(variants=["float", "pruned"], latency_repeats=1)
    rows = measure_variants({"float": (full, False), "pruned": (other, False)}, spec, evaluation, settings)
    assert rows[0].metric == 1.0 and rows[1].metric < 0.9  # validation accuracies
    choice = choose(rows, 0.02, spec.compress_metric, spec.higher_is_better)
    assert choice.variant == "float" and "too much worse: pruned" in choice.reason
    on_test = [spec.test_predictions(Evaluation(**{**evaluation.__dict__, "model": m}))[0]["test_accuracy"]
               for m in (full, other)]  # fmt: skip
    assert on_test[1] == 1.0 > on_test[0]  # what a choice on the test split would have seen


def test_relative_drop():
    assert relative_drop(0.8, 0.9, True) == pytest.approx(1 / 9)
    assert relative_drop(0.95, 0.9, True) == 0.0
    assert relative_drop(0.3, 0.2, False) == pytest.approx(0.5)
    assert relative_drop(0.0, 0.0, True) == 0.0 and relative_drop(0.1, 0.0, False) == float("inf")


def test_a_quantized_classifier_answers_rollout_and_refuses_gradient_maps():
    """int8 layers pass no gradients, so a compact int8 model's served answer is rollout only; a request for another
    map is a bad request naming why."""
    import numpy as np

    from attn_models.vit import VisionTransformer
    from tasks.data.requests import BadRequest
    from tasks.kinds import get

    args = dict(num_classes=3, image_size=16, patch_size=4, in_channels=1, embed_dim=16, depth=1, num_heads=2)
    model = quantize_int8(VisionTransformer(**args).eval())
    checkpoint, config = {"class_names": ["a", "b", "c"], "model_args": args}, {"quantize": True}
    image = np.zeros((16, 16), dtype=np.uint8).tolist()
    [answer] = get("image").serve(model, checkpoint, None, config, [image])
    assert answer["attention_method"] == "rollout" and abs(sum(answer["attention"]) - 1) < 1e-3
    with pytest.raises(BadRequest, match="quantized to int8"):
        get("image").serve(model, checkpoint, None, config, [image], {"attention": "gradient_attention"})
