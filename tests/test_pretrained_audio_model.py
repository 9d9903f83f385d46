"""The pure fine-tuning model for audio (attn_models/pretrained.py, PretrainedAudioClassifier) on a tiny random AST:
it decodes clips as the backbone's own feature extractor does, gives one map value per spectrogram patch (the class
and distillation tokens left out) summing to 1, prunes heads without changing the kept ones, and rebuilds from its
config and state dict alone."""

import pytest
import torch

from tests.hf_models import save_tiny_ast
from tests.test_pretrained_model import assert_pruning_keeps_the_kept_heads, rebuilt

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


@pytest.fixture
def model(folder, settings):
    from transformers import AutoModel

    from attn_models.pretrained import PretrainedAudioClassifier

    backbone = AutoModel.from_pretrained(folder, attn_implementation="eager", use_kernels=False)
    torch.manual_seed(0)
    return PretrainedAudioClassifier.from_backbone(backbone, settings, num_classes=3, sample_rate=RATE,
                                                   clip_seconds=1.0).eval()  # fmt: skip


CLIPS = torch.randn(2, RATE, generator=torch.Generator().manual_seed(0)) * 0.1


def test_decodes_clips_as_the_backbones_feature_extractor_does(model, folder):
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(folder)
    expected = extractor(list(CLIPS.numpy()), sampling_rate=RATE, return_tensors="pt")["input_values"]
    assert torch.allclose(model.features(CLIPS), expected, atol=1e-5)


def test_maps_have_one_value_per_patch_and_sum_to_one(model):
    from attn_models.attribution import METHODS, class_token_maps

    logits, attentions, readout = model(CLIPS, return_attention=True)
    assert logits.shape == (2, 3) and all(weights.shape == (2, 4, 2 + PATCHES, 2 + PATCHES) for weights in attentions)
    assert readout[0].tolist() == [0.5, 0.5] + [0.0] * PATCHES  # the head reads both tokens' mean
    assert model.patch_grid == (2, 8) and model.token_spans().shape == (PATCHES, 2)
    _, relevance = model.predict_with_relevance(CLIPS)
    assert relevance.shape == (2, PATCHES) and torch.allclose(relevance.sum(-1), torch.ones(2))
    maps = class_token_maps(model, CLIPS[:1])
    for method in METHODS:
        assert maps[method].shape == (PATCHES,) and abs(float(maps[method].sum()) - 1) < 1e-5, method
    assert maps["gradient_attention"].std() > 0  # the attention weights carried gradients


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
    assert_pruning_keeps_the_kept_heads(model, CLIPS)


def test_state_dict_round_trips_through_the_config(model, settings):
    from attn_models.pretrained import PretrainedAudioClassifier, backbone_config

    args = dict(backbone_config=backbone_config(model.backbone.config), feature_extractor=settings,
                num_classes=3, sample_rate=RATE, clip_seconds=1.0)  # fmt: skip
    assert torch.equal(rebuilt(PretrainedAudioClassifier, args, model)(CLIPS), model(CLIPS))


def test_a_feature_extractor_at_another_rate_is_refused(model):
    from attn_models.pretrained import PretrainedAudioClassifier, backbone_config

    with pytest.raises(ValueError, match="16000 Hz audio, the clips are 8000 Hz"):
        PretrainedAudioClassifier(backbone_config(model.backbone.config), model.extractor, 3, 8000, 1.0)
