"""The pure fine-tuning model for images (attn_models/pretrained.py, PretrainedImageClassifier) on a tiny random ViT:
it reads like the ViT trained from scratch (one map value per patch, maps that sum to 1, attention with gradients),
its attention layers (transformers 5's q_proj/k_proj/v_proj/o_proj layout) prune without changing the kept heads,
and it rebuilds from its config and state dict alone."""

import pytest
import torch

from tests.hf_models import VIT_PATCH, VIT_SIZE, save_tiny_vit
from tests.test_pretrained_model import (
    assert_maps_cover_the_content,
    assert_pruning_keeps_the_kept_heads,
    assert_round_trips,
    assert_starts_from,
    fine_tuned,
    load_backbone,
)

PATCHES = (VIT_SIZE // VIT_PATCH) ** 2


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return load_backbone(save_tiny_vit(tmp_path_factory.mktemp("tiny-vit")))


@pytest.fixture
def model(backbone):
    from attn_models.pretrained import PretrainedImageClassifier

    return fine_tuned(PretrainedImageClassifier, backbone)


IMAGES = torch.randn(2, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(1))


def test_starts_from_the_backbone_weights(model, backbone):
    assert_starts_from(model, backbone)


def test_maps_have_one_value_per_patch_and_sum_to_one(model):
    assert model.special_tokens == 1  # the class token alone, no distillation token
    assert len(assert_maps_cover_the_content(model, IMAGES, PATCHES)) == 2


def test_a_removed_patch_becomes_the_baselines(model):
    """Removal (the deletion curves) replaces patches at the first layer's input: all of them removed, the image
    reads as the baseline image; none removed, as itself."""
    from attn_models.attribution import reference_tokens, removal_curve

    baseline = torch.full_like(IMAGES[:1], -1.0)  # a black image, normalised
    target = int(model(IMAGES[:1]).argmax())
    fractions, curve = removal_curve(model, IMAGES[:1], torch.rand(PATCHES), target, steps=2,
                                     reference=reference_tokens(model, baseline))  # fmt: skip
    expected = [model(images).softmax(-1)[0, target] for images in (IMAGES[:1], baseline)]
    assert torch.allclose(curve[[0, -1]], torch.stack(expected), atol=1e-5)
    assert model.blank_tokens().shape == (1, 1 + PATCHES, 32)


def test_pruning_keeps_the_kept_heads_outputs(model):
    from attn_models.compression import attention_layers
    from attn_models.pretrained import ProjectionHeads

    assert all(isinstance(layer, ProjectionHeads) for layer in attention_layers(model).values())
    assert_pruning_keeps_the_kept_heads(model, IMAGES)
    assert all(layer.num_heads == 2 for layer in attention_layers(model).values())


def test_state_dict_round_trips_through_the_config(model):
    from attn_models.pretrained import PretrainedImageClassifier

    assert_round_trips(model, PretrainedImageClassifier, IMAGES)


def test_layer_groups_run_from_the_embeddings_to_the_head(model):
    groups = model.layer_groups()
    assert len(groups) == 4  # embeddings, 2 layers, the head (and the final norm)
    assert any(parameter is model.backbone.embeddings.cls_token for parameter in groups[0])
    assert any(parameter is model.head.weight for parameter in groups[-1])
    assert sum(len(group) for group in groups) == len(list(model.parameters()))


def test_a_distilled_deit_is_refused():
    from transformers import DeiTConfig

    from attn_models.pretrained import PretrainedImageClassifier, backbone_config

    config = DeiTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                        image_size=VIT_SIZE, patch_size=VIT_PATCH)  # fmt: skip
    with pytest.raises(ValueError, match="distillation token"):
        PretrainedImageClassifier(backbone_config(config), num_classes=2)
