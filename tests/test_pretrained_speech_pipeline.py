"""Issue 33 for the speech kind: keyword spotting fine-tunes a pretrained Audio Spectrogram Transformer (a tiny random
AST and its feature extractor saved here, outside the project) through `attnflow run`: it trains, evaluates, explains
over spectrogram patches, compresses, serves raw audio over HTTP and reproduces exactly; a feature extractor at
another sample rate than the clips' stops the run in one line naming the key, before any run opens."""

import base64
import json
from pathlib import Path

import pytest

from tasks.errors import EXIT_INVALID
from tests.conftest import SPEECH, write_params
from tests.hf_models import save_tiny_ast
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_named_tasks import served_request
from tests.test_pretrained_pipeline import (
    assert_a_backbone_sets,
    assert_reproduced_then_refused,
    backbone_params,
    fine_tuned_run,
)

PATCHES = 16  # tests/hf_models.py's tiny AST: 2 frequency rows by 8 time columns


def test_a_feature_extractor_at_another_rate_stops_the_run_naming_the_key(tiny_project, tmp_path):
    source = save_tiny_ast(tmp_path / "tiny-ast", sample_rate=8000)
    write_params(tiny_project, backbone_params(str(source), SPEECH))
    result = attnflow(tiny_project, "run", "--params", "params.yaml", timeout=120)
    assert_one_line_error(result, EXIT_INVALID, f"tasks.{SPEECH}.data.sample_rate", "takes 8000 Hz audio")
    assert not (tiny_project / "mlflow.db").exists()  # no run was opened


def test_a_clip_longer_than_the_backbone_takes_is_refused_naming_the_key(tmp_path):
    from tasks.errors import UserError
    from tasks.kinds.speech import SPEC
    from tasks.params import load_params

    source = save_tiny_ast(tmp_path / "tiny-ast", sample_rate=16000)  # 104 frames: a 1 s clip's 98 fit
    params = backbone_params(str(source), SPEECH)
    SPEC.check_backbone(load_params(write_params(tmp_path, params)).task(SPEECH), tmp_path, SPEECH)
    params["tasks"][SPEECH]["data"]["clip_seconds"] = 1.1  # 108 frames
    with pytest.raises(UserError, match=rf"tasks\.{SPEECH}\.data\.clip_seconds: 1.1 s is 108 filterbank frames"):
        SPEC.check_backbone(load_params(write_params(tmp_path, params)).task(SPEECH), tmp_path, SPEECH)


def test_the_kinds_front_end_keys_are_refused_with_a_backbone(tmp_path):
    assert_a_backbone_sets(tmp_path, SPEECH, "n_mels", 64, "n_mels: not used with model.backbone")


@pytest.mark.slow  # a pipeline run and a served model: about 2 minutes on 2 cores
def test_a_fine_tuned_ast_runs_the_whole_pipeline(tiny_project, prefect_server, tmp_path, capsys):
    from tasks.kinds.speech import SPEC

    source = save_tiny_ast(tmp_path / "tiny-ast", sample_rate=16000)
    params_path = write_params(tiny_project, backbone_params(str(source), SPEECH))
    client, run = fine_tuned_run(tiny_project, params_path, SPEECH, source, capsys)
    assert "preprocessor_config.json" in json.loads(run.data.tags["backbone_files"])  # the extractor is hashed
    assert "attn_localization.rollout" in run.data.metrics  # the words' spans, against the samples each patch hears
    examples = json.loads(Path(client.download_artifacts(run.info.run_id, "explain/examples.json")).read_text())
    for example in examples["examples"]:  # the viewer: the patch grid over the features
        assert example["grid"] == [2, 8] and len(example["maps"]["rollout"]) == PATCHES and example["picture"]

    clips = SPEC.split_files(tiny_project / "data" / SPEECH, "test")[1:3]  # the first is the list file
    records = [{"audio": base64.b64encode(clip.read_bytes()).decode()} for clip in clips]
    answers, version = served_request(tiny_project, tmp_path, SPEECH, json.dumps({"dataframe_records": records}))
    assert version["run_id"] == run.info.run_id
    for answer in answers:
        assert answer["label"] in answer["probabilities"] and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
        assert len(answer["attention"]) == PATCHES and abs(sum(answer["attention"]) - 1) < 1e-3

    assert_reproduced_then_refused(run.info.run_id, params_path, source)
