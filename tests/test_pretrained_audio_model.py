"""The pure fine-tuning model for audio (attn_models/pretrained.py, PretrainedAudioClassifier) on a tiny random AST:
it decodes clips as the backbone's own feature extractor does, gives one map value per spectrogram patch (the class
and distillation tokens left out) summing to 1, prunes heads without changing the kept ones, and rebuilds from its
config and state dict alone."""

import pytest
import torch

from tests import test_pretrained_model as shared  # the checks every fine-tuned model passes
from tests.hf_models import save_tiny_ast

RATE = 16000
PATCHES = 16  # tests/hf_models.py's tiny AST: 2 frequency rows by 8 time columns


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_ast(tmp_path_factory.mktemp("tiny-ast"), RATE)


@pytest.fixture(scope="module")
def settings(folder):
    """The saved feature extractor's settings, as the speech kind records them in the checkpoint's model args."""
    from transformers import AutoFeatureExtractor

    from attn_models.pretrained import extractor_settings

    return extractor_settings(AutoFeatureExtractor.from_pretrained(folder))


@pytest.fixture(scope="module")
def backbone(folder):
    return shared.load_backbone(folder)


@pytest.fixture
def model(backbone, settings):
    from attn_models.pretrained import PretrainedAudioClassifier

    return shared.fine_tuned(PretrainedAudioClassifier, backbone, feature_extractor=settings, sample_rate=RATE,
                      clip_seconds=1.0)  # fmt: skip


CLIPS = torch.randn(2, RATE, generator=torch.Generator().manual_seed(0)) * 0.1


def test_starts_from_the_backbone_weights(model, backbone):
    shared.assert_starts_from(model, backbone)


def test_decodes_clips_as_the_backbones_feature_extractor_does(model, folder):
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(folder)
    expected = extractor(list(CLIPS.numpy()), sampling_rate=RATE, return_tensors="pt")["input_values"]
    assert torch.allclose(model.features(CLIPS), expected, atol=1e-5)


def test_maps_have_one_value_per_patch_and_sum_to_one(model):
    assert model.special_tokens == 2  # the class and distillation tokens: the head reads their mean, 1/2 on each
    shared.assert_maps_cover_the_content(model, CLIPS, PATCHES)
    assert model.patch_grid == (2, 8) and model.token_spans().shape == (PATCHES, 2)


def test_removing_a_patch_replaces_that_patch_alone(model):
    """Deletion counts patches after the class and distillation tokens: removing the first patch replaces the
    encoder's third input token by the baseline's (a silent clip's) and leaves every other token as it was."""
    from attn_models.attribution import encoder_input, reference_tokens

    reference = reference_tokens(model, torch.zeros(1, RATE))
    first = torch.arange(PATCHES)[None] == 0
    with encoder_input(model, first, reference) as seen:
        model(CLIPS[:1])
    with encoder_input(model) as clip:
        model(CLIPS[:1])
    assert not torch.allclose(reference[:, 2], clip[0][:, 2])  # the silent clip's patch differs from the clip's
    assert torch.equal(seen[0][:, 2], reference[:, 2])
    assert torch.equal(seen[0][:, :2], clip[0][:, :2]) and torch.equal(seen[0][:, 3:], clip[0][:, 3:])


def test_pruning_keeps_the_kept_heads_outputs(model):
    shared.assert_pruning_keeps_the_kept_heads(model, CLIPS)


def test_state_dict_round_trips_through_the_config(model, settings):
    from attn_models.pretrained import PretrainedAudioClassifier

    shared.assert_round_trips(model, PretrainedAudioClassifier, CLIPS, feature_extractor=settings, sample_rate=RATE,
                       clip_seconds=1.0)  # fmt: skip


def test_a_feature_extractor_at_another_rate_is_refused(model):
    from attn_models.pretrained import PretrainedAudioClassifier, backbone_config

    with pytest.raises(ValueError, match="16000 Hz audio, the clips are 8000 Hz"):
        PretrainedAudioClassifier(backbone_config(model.backbone.config), model.extractor, 3, 8000, 1.0)
