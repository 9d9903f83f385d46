"""The attribution methods on a model built by hand to read one token only, where the right answer is known, and
their shapes on every classifier; the deletion and insertion curves (attn_models/attribution.py)."""

import pytest
import torch

from attn_models.attribution import (
    METHODS,
    area_under,
    class_token_maps,
    reference_tokens,
    removal_curve,
    removal_masks,
)
from attn_models.speech_transformer import SpeechTransformer
from attn_models.text_classifier import TextTransformer
from attn_models.vit import VisionTransformer

READ, LENGTH, EMBED = 3, 8, 8  # the model reads token 3 of 8


def one_token_reader() -> TextTransformer:
    """One layer, one head: the class token attends to position READ alone (its position embedding carries a marker
    that the keys turn into a large score), the values pass the token through, the head reads channels 2-3 of it:
    token id 5 says class 0, id 6 class 1. Nothing else reaches the logits (the MLP is zeroed)."""
    model = TextTransformer(vocab_size=10, num_classes=2, max_len=LENGTH, embed_dim=EMBED, depth=1, num_heads=1,
                            mlp_ratio=1.0, dropout=0.0)  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.encoder.blocks[0].norm1, model.encoder.blocks[0].norm2, model.encoder.norm):
            norm.weight.fill_(1.0)
        model.pos_embed[0, 1 + READ, 0] = 10.0  # the marker (channel 0) at the read position
        model.token_embed.weight[5, 2:4] = torch.tensor([1.0, -1.0])  # a pair that sums to 0: LayerNorm keeps it
        model.token_embed.weight[6, 2:4] = torch.tensor([-1.0, 1.0])
        model.token_embed.weight[7:, 4] = 1.0  # filler tokens carry content elsewhere
        attention = model.encoder.blocks[0].attn
        attention.q_proj.bias[0] = 1.0  # every query asks for channel 0 ...
        attention.k_proj.weight[0, 0] = 40.0  # ... which only the marked key has
        attention.v_proj.weight.copy_(torch.eye(EMBED))
        attention.out_proj.weight.copy_(torch.eye(EMBED))
        model.head.weight[0, 2:4] = torch.tensor([5.0, -5.0])  # the pair's difference: no mean in it
        model.head.weight[1, 2:4] = torch.tensor([-5.0, 5.0])
    return model.eval()


def sentence(key: int) -> torch.Tensor:
    ids = torch.full((1, LENGTH), 8)
    ids[0, READ] = key
    return ids


@pytest.mark.parametrize("key, label", [(5, 0), (6, 1)])
def test_every_attention_method_finds_the_one_token_the_model_reads(key, label):
    model = one_token_reader()
    maps = class_token_maps(model, sentence(key))
    assert maps["target"] == label and maps["logits"].softmax(-1)[label] > 0.9
    for method in METHODS:
        assert maps[method].shape == (LENGTH,) and maps[method].min() >= 0
        assert maps[method].sum() == pytest.approx(1.0, abs=1e-5)
    for method in ("attention", "rollout", "gradient_attention", "input_x_gradient"):
        assert int(maps[method].argmax()) == READ, method
        assert maps[method][READ] > 0.9, method
    assert maps["heads"].shape == (1, 1, LENGTH)


def pooled_reader() -> TextTransformer:
    """Sequence pooling does the reading: attention passes nothing on (its values are zero, so every output is its own
    token) and the pooling scores the marker at position READ, so the head reads that token's output alone. The
    class token sees every token alike: a map read from its row would be flat."""
    model = TextTransformer(vocab_size=10, num_classes=2, max_len=LENGTH, embed_dim=EMBED, depth=1, num_heads=1,
                            mlp_ratio=1.0, dropout=0.0, pool="attention")  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.encoder.blocks[0].norm1, model.encoder.blocks[0].norm2, model.encoder.norm):
            norm.weight.fill_(1.0)
        model.pos_embed[0, 1 + READ, 0] = 10.0
        model.token_embed.weight[5, 2:4] = torch.tensor([1.0, -1.0])
        model.token_embed.weight[6, 2:4] = torch.tensor([-1.0, 1.0])
        model.token_embed.weight[7:, 4] = 1.0
        model.pool_score.weight[0, 0] = 20.0  # the pooling looks for the marker
        model.head.weight[0, 2:4] = torch.tensor([5.0, -5.0])
        model.head.weight[1, 2:4] = torch.tensor([-5.0, 5.0])
    return model.eval()


@pytest.mark.parametrize("key, label", [(5, 0), (6, 1)])
def test_with_sequence_pooling_the_maps_follow_the_pooling_not_the_class_token(key, label):
    model = pooled_reader()
    maps = class_token_maps(model, sentence(key))
    assert maps["target"] == label and maps["logits"].softmax(-1)[label] > 0.9
    for method in ("rollout", "gradient_attention", "input_x_gradient"):
        assert int(maps[method].argmax()) == READ, method
        assert maps[method][READ] > 0.4, method  # rollout keeps half for the residual path, spread over the rest
    assert torch.allclose(maps["attention"], torch.full((LENGTH,), 1 / LENGTH))  # attention moved nothing: flat
    _, relevance = model.predict_with_relevance(sentence(key))
    assert int(relevance[0].argmax()) == READ and torch.allclose(relevance[0], maps["rollout"], atol=1e-5)


def test_the_random_map_is_seeded():
    model = one_token_reader()
    first, again = (class_token_maps(model, sentence(5), seed=3)["random"] for _ in range(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, class_token_maps(model, sentence(5), seed=4)["random"])


def test_deleting_the_read_token_first_drops_the_prediction_and_random_order_does_worse():
    model = one_token_reader()
    maps = class_token_maps(model, sentence(5))
    fractions, right = removal_curve(model, sentence(5), maps["gradient_attention"], target=0, steps=8)
    assert right[0] > 0.9 and right[1:].max() < 0.55  # gone at the first step: the class is a coin toss
    reverse = maps["gradient_attention"].max() - maps["gradient_attention"]  # the read token last
    _, wrong = removal_curve(model, sentence(5), reverse, target=0, steps=8)
    assert wrong[:-1].min() > 0.9 and wrong[-1] < 0.55
    assert area_under(fractions, right) < area_under(fractions, wrong) - 0.3
    _, inserted = removal_curve(model, sentence(5), maps["gradient_attention"], target=0, steps=8, insertion=True)
    assert inserted[0] < 0.55 and inserted[1:].min() > 0.9  # back at the first step


def test_removal_masks_remove_in_rank_order():
    order = torch.tensor([2, 0, 3, 1])  # token 2 ranks first
    deletion = removal_masks(order, torch.tensor([0.0, 0.25, 0.5, 1.0]), insertion=False)
    assert deletion.tolist() == [[False] * 4, [False, False, True, False], [True, False, True, False], [True] * 4]
    insertion = removal_masks(order, torch.tensor([0.0, 0.25]), insertion=True)
    assert insertion.tolist() == [[True] * 4, [True, True, False, True]]


@pytest.mark.parametrize(
    "model, inputs, tokens",
    [
        (
            VisionTransformer(
                image_size=16, patch_size=4, in_channels=1, num_classes=3, embed_dim=16, depth=2, num_heads=2
            ),
            torch.rand(1, 1, 16, 16),
            16,
        ),  # fmt: skip
        (
            SpeechTransformer(
                num_classes=3, sample_rate=8000, clip_seconds=0.5, n_mels=16, embed_dim=16, depth=2, num_heads=2
            ),
            torch.randn(1, 4000),
            None,
        ),  # fmt: skip
    ],
    ids=["image patches", "spectrogram frames"],
)
def test_every_method_gives_one_map_per_token_on_every_classifier(model, inputs, tokens):
    model.eval()
    maps = class_token_maps(model, inputs)
    count = maps["heads"].shape[-1]
    assert tokens is None or count == tokens
    assert maps["heads"].shape == (2, 2, count)
    for method in METHODS:
        assert maps[method].shape == (count,) and maps[method].sum() == pytest.approx(1.0, abs=1e-5)
    _, probabilities = removal_curve(model, inputs, maps["rollout"], maps["target"], steps=4)
    assert probabilities.shape == (5,)
    with torch.no_grad():
        assert probabilities[0] == pytest.approx(float(model(inputs).softmax(-1)[0, maps["target"]]), abs=1e-5)


def test_a_removed_token_becomes_the_baselines_and_input_x_gradient_is_relative_to_it():
    """Removing tokens in favour of the input itself changes nothing; with another baseline the read token's
    removal drops the prediction. Input x gradient against the input itself is all zero (uniform once normalised)."""
    model = one_token_reader()
    itself, other = reference_tokens(model, sentence(5)), reference_tokens(model, sentence(6))
    maps = class_token_maps(model, sentence(5), reference=itself)
    assert torch.allclose(maps["input_x_gradient"], torch.full((LENGTH,), 1 / LENGTH))
    _, same = removal_curve(model, sentence(5), maps["rollout"], target=0, steps=4, reference=itself)
    assert torch.allclose(same, same[0].expand_as(same))
    _, other = removal_curve(model, sentence(5), maps["rollout"], target=0, steps=4, reference=other)
    assert other[0] > 0.9 and other[1:].max() < 0.1  # the read token is now the other class's


def test_a_joined_input_is_localized_on_the_part_of_the_predicted_class():
    """The reader reads token 3: joined from a first part (tokens 0-3, class 0) and a second (4-7, class 1), every
    attention method's mass lies on the first part, where the class it predicts (0) has its evidence."""
    from tasks.evaluation.explain import spliced_localization

    model, first = one_token_reader(), (torch.arange(LENGTH) < 4).float()
    baseline = torch.full((1, LENGTH), 8)
    located = spliced_localization(model, sentence(5), baseline, {0: first, 1: 1 - first}, seed=0)
    for method in ("attention", "rollout", "gradient_attention", "input_x_gradient"):
        assert located[method]["localization"] > 0.9 and located[method]["pointing"] == 1.0, method
    assert spliced_localization(model, sentence(5), baseline, {1: 1 - first}, seed=0) is None  # predicts neither


def test_a_text_is_joined_with_the_next_test_text_of_another_class():
    from types import SimpleNamespace

    from tasks.kinds import get

    test = [(torch.tensor([1, 2]), 0), (torch.tensor([3]), 0), (torch.tensor([4, 5, 6]), 1)]
    e = SimpleNamespace(splits=SimpleNamespace(test=test), checkpoint={"model_args": {"max_len": 4}})
    ids, evidence = get("text").spliced_example(0, *test[0], e)  # even index: its own text first
    assert ids.tolist() == [1, 2, 4, 5]  # cut at max_len
    assert evidence[0].tolist() == [1, 1, 0, 0] and evidence[1].tolist() == [0, 0, 1, 1]
    ids, evidence = get("text").spliced_example(1, *test[1], e)  # odd: the other class's text first
    assert ids.tolist() == [4, 5, 6, 3] and evidence[0].tolist() == [0, 0, 0, 1]
    assert get("text").spliced_example(0, *test[0], SimpleNamespace(splits=SimpleNamespace(test=test[:2]))) is None
