"""Issue 33 for images: the built-in digit task fine-tunes a pretrained ViT (a tiny random one saved here, outside
the project, whose image processor takes 3-channel 16 x 16 images: the 1-channel 32 x 32 digits are read as it says)
through `attnflow run`: it trains, evaluates, explains, compresses, serves over HTTP and reproduces exactly; a
processor that does not fit the backbone stops the run in one line naming the key, before any run opens."""

import json

import pytest

from tasks.errors import EXIT_INVALID
from tests.conftest import IMAGE, write_params
from tests.hf_models import VIT_MEAN, VIT_PATCH, VIT_SIZE, VIT_STD, save_tiny_vit
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_model_server import image_request
from tests.test_named_tasks import served_request
from tests.test_pretrained_pipeline import (
    assert_a_backbone_sets,
    assert_reproduced_then_refused,
    backbone_params,
    fine_tuned_run,
)
from tests.test_serving import check_answers

PATCHES = (VIT_SIZE // VIT_PATCH) ** 2


@pytest.mark.slow  # a pipeline run and a served model: about 2 minutes on 2 cores
def test_a_fine_tuned_vit_runs_the_whole_pipeline(tiny_project, prefect_server, tmp_path, capsys):
    source = save_tiny_vit(tmp_path / "tiny-vit")
    params_path = write_params(tiny_project, backbone_params(str(source), IMAGE))
    client, run = fine_tuned_run(tiny_project, params_path, IMAGE, source, capsys)
    assert "preprocessor_config.json" in json.loads(run.data.tags["backbone_files"])  # the processor is hashed
    assert run.data.params["resolved.model.patch_size"] == str(VIT_PATCH)

    answers, version = served_request(tiny_project, tmp_path, IMAGE, image_request(tiny_project))
    assert version["run_id"] == run.info.run_id
    check_answers(answers, "image", 2)  # a label, probabilities summing to 1, attention summing to 1
    assert all(len(answer["attention"]) == PATCHES for answer in answers)  # one value per patch of the ViT's grid
    assert_reproduced_then_refused(run.info.run_id, params_path, source)


def test_a_processor_that_does_not_fit_the_backbone_stops_the_run_naming_the_key(tiny_project, tmp_path):
    source = save_tiny_vit(tmp_path / "tiny-vit")
    processor = json.loads((source / "preprocessor_config.json").read_text())
    processor["size"] = {"height": 2 * VIT_SIZE, "width": 2 * VIT_SIZE}
    (source / "preprocessor_config.json").write_text(json.dumps(processor))
    write_params(tiny_project, backbone_params(str(source), IMAGE))
    result = attnflow(tiny_project, "run", "--params", "params.yaml", timeout=120)
    assert_one_line_error(result, EXIT_INVALID, f"tasks.{IMAGE}.model.backbone.source", "must resize to the backbone")
    assert not (tiny_project / "mlflow.db").exists()  # no run was opened


@pytest.mark.parametrize("key, value", [("stem", "conv"), ("pool", "attention")])
def test_a_backbone_sets_the_patches(tmp_path, key, value):
    assert_a_backbone_sets(tmp_path, IMAGE, key, value, f"{key}: set by the backbone")


def test_training_and_serving_read_pixels_as_the_processor_says(tmp_path):
    """A 32 x 32 grey image, black on the left and white on the right, is read for training (the test split) at the
    processor's 16 x 16, in the backbone's 3 channels, normalised with the processor's mean and std; a served
    request of the same file decodes to the same tensor from the checkpoint's model_args; the removal baseline is
    a black image, normalised alike."""
    import base64
    from types import SimpleNamespace

    import numpy as np
    import torch
    from PIL import Image as PILImage

    from tasks.kinds.image import SPEC
    from tasks.params import load_params

    source = save_tiny_vit(tmp_path / "tiny-vit")
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[:, 16:] = 255
    for split in ("train", "val", "test"):
        for label in ("0", "1"):
            (tmp_path / "data" / split / label).mkdir(parents=True)
            PILImage.fromarray(pixels).save(tmp_path / "data" / split / label / "a.png")
    section = load_params(write_params(tmp_path, backbone_params(str(source), IMAGE))).task(IMAGE)
    splits = SPEC.load_splits(tmp_path / "data", section, 0, None)
    item = splits.test[0][0]
    mean, std = torch.tensor(VIT_MEAN).view(3, 1), torch.tensor(VIT_STD).view(3, 1)
    assert item.shape == (3, VIT_SIZE, VIT_SIZE)
    assert torch.allclose(item[:, :, 0], (0 - mean) / std, atol=1e-5)  # black, in each channel
    assert torch.allclose(item[:, :, -1], (1 - mean) / std, atol=1e-5)  # white

    args = SPEC.model_args(section, splits, None)
    assert args["image_processor"]["image_mean"] == list(VIT_MEAN)  # recorded with the checkpoint
    served, _ = SPEC.request_input(base64.b64encode((tmp_path / "data/test/0/a.png").read_bytes()).decode(), args,
                                   None, {"max_image_pixels": 4096, "max_input_mb": 1.0})  # fmt: skip
    assert torch.equal(served[0], item)
    black = SPEC.removal_baseline(item, SimpleNamespace(checkpoint={"model_args": args}))
    assert torch.allclose(black, ((0 - mean) / std).view(3, 1, 1).expand_as(item), atol=1e-6)
