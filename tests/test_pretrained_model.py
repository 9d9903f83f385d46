"""The pure fine-tuning model (attn_models/pretrained.py) on a tiny random BERT: it reads like a classifier trained
from scratch (one map value per content token, maps that sum to 1, attention with gradients), prunes heads without
changing the kept ones, and rebuilds from its config and state dict alone."""

import pytest
import torch

from tests.hf_models import save_tiny_bert


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return load_backbone(save_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture
def model(backbone):
    from attn_models.pretrained import PretrainedClassifier

    return fine_tuned(PretrainedClassifier, backbone, class_token_id=2, pad_id=0)


def load_backbone(folder):
    """The saved backbone as the kinds load it: eager attention."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder, attn_implementation="eager", use_kernels=False)


def fine_tuned(model_class, backbone, **head):
    """model_class over backbone's weights, for 3 classes, its head seeded, in eval mode."""
    torch.manual_seed(0)
    return model_class.from_backbone(backbone, num_classes=3, **head).eval()


TOKENS = torch.tensor([[7, 8, 9, 10, 11], [12, 13, 14, 0, 0]])  # the second row padded


def test_starts_from_the_backbone_weights(model, backbone):
    assert_starts_from(model, backbone)


def assert_starts_from(model, backbone):
    for name, value in backbone.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(model.backbone.state_dict()[name], value), name


def test_maps_have_one_value_per_content_token_and_sum_to_one(model):
    assert model.special_tokens == 1  # the class token alone
    attentions = assert_maps_cover_the_content(model, TOKENS, 5)
    assert attentions[0][1, :, :, -2:].abs().max() < 1e-6  # padding gets no attention


def assert_maps_cover_the_content(model, inputs, content: int) -> list:
    """On inputs (2 of them, each of content tokens or patches), a model of 3 classes and 4-head layers reads its
    special tokens alone (the readout: 1 / special_tokens on each), and rollout and every map of attribution have one
    value per content token summing to 1, gradient-weighted attention included (its weights carried gradients).
    Returns its per-layer attention weights."""
    from attn_models.attribution import METHODS, class_token_maps

    special, tokens = model.special_tokens, model.special_tokens + content
    logits, attentions, readout = model(inputs, return_attention=True)
    assert logits.shape == (2, 3) and readout.shape == (2, tokens)
    assert readout[:, :special].eq(1 / special).all() and readout[:, special:].eq(0).all()
    assert all(weights.shape == (2, 4, tokens, tokens) for weights in attentions)
    _, relevance = model.predict_with_relevance(inputs)
    assert relevance.shape == (2, content) and torch.allclose(relevance.sum(-1), torch.ones(2))
    maps = class_token_maps(model, inputs[:1])
    for method in METHODS:
        assert maps[method].shape == (content,) and abs(float(maps[method].sum()) - 1) < 1e-5, method
    assert maps["gradient_attention"].std() > 0  # the attention weights carried gradients
    return attentions


def test_padding_does_not_change_the_prediction(model):
    alone = model(TOKENS[1:, :3])
    padded = model(TOKENS[1:])
    assert torch.allclose(alone, padded, atol=1e-5)


def test_pruning_keeps_the_kept_heads_outputs(model):
    assert_pruning_keeps_the_kept_heads(model, TOKENS)


def assert_pruning_keeps_the_kept_heads(model, inputs):
    """Pruning heads 1 and 3 of each of the model's 2 four-head layers gives what masking them gave."""
    from attn_models.compression import attention_layers, prune_heads

    keep = {name: [0, 2] for name in attention_layers(model)}
    assert len(keep) == 2
    masked = {name: torch.tensor([1.0, 0.0, 1.0, 0.0]) for name in keep}
    layers = attention_layers(model)
    try:
        for name, layer in layers.items():
            layer.head_mask = masked[name]
        expected, expected_attention, _ = model(inputs, return_attention=True)
    finally:
        for layer in layers.values():
            layer.head_mask = None
    unmasked = model(inputs)
    assert not torch.allclose(unmasked, expected, atol=1e-4)  # the mask did silence heads
    prune_heads(model, keep)
    logits, attentions, _ = model(inputs, return_attention=True)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert attentions[0].shape[1] == 2 and torch.allclose(attentions[0], expected_attention[0][:, [0, 2]], atol=1e-5)


def test_head_importance_scores_every_head(model):
    import torch.nn.functional as F

    from attn_models.compression import head_importance

    importance = head_importance(model, [TOKENS], lambda m, batch: F.cross_entropy(m(batch), torch.tensor([0, 1])))
    assert set(importance) == set(model.head_layers()) and all(scores.shape == (4,) for scores in importance.values())
    assert all(scores.sum() > 0 for scores in importance.values())
    assert all(layer.head_mask is None for layer in model.head_layers().values())


def test_state_dict_round_trips_through_the_config(model):
    from attn_models.pretrained import PretrainedClassifier

    assert_round_trips(model, PretrainedClassifier, TOKENS, class_token_id=2, pad_id=0)


def assert_round_trips(model, model_class, inputs, **head):
    """Saved as a checkpoint saves it (the backbone's config and the state dict), model_class rebuilds it exactly."""
    from attn_models.pretrained import backbone_config

    args = dict(backbone_config=backbone_config(model.backbone.config), num_classes=3, **head)
    torch.save({"model_args": args, "state_dict": model.state_dict()}, buffer := __import__("io").BytesIO())
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = model_class(**saved["model_args"])
    rebuilt.load_state_dict(saved["state_dict"])
    assert torch.equal(rebuilt.eval()(inputs), model(inputs))


def test_layer_groups_run_from_the_embeddings_to_the_head(model):
    groups = model.layer_groups()
    assert len(groups) == 4  # embeddings, 2 layers, the head
    assert groups[0][0] is model.backbone.embeddings.word_embeddings.weight
    assert model.head.weight in groups[-1] and sum(len(group) for group in groups) == len(list(model.parameters()))


def test_a_model_that_ran_pickles_and_runs_again(model):
    """mlflow.pytorch pickles the served model after it ran (transformers hooks it on the first forward pass)."""
    import pickle

    expected, attentions, _ = model(TOKENS, return_attention=True)
    copy = pickle.loads(pickle.dumps(model))
    logits, copied, _ = copy(TOKENS, return_attention=True)
    assert torch.equal(logits, expected) and len(copied) == len(attentions)
    assert torch.equal(model(TOKENS), expected)  # the original still runs
