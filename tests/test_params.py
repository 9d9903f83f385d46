"""params.yaml is validated on load; bad values stop the run with the key named."""

import re
import subprocess
import sys

import pytest
import yaml

from tasks.modalities import MODALITIES
from tasks.params import ParamsError, load_params
from tests.conftest import REPO, tiny_params, write_params


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.global_.modalities == list(MODALITIES)  # every registered modality runs by default
    assert params.speech.data.builtin.words[0] == "yes"  # quoted: not YAML's boolean


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["image"]["model"].update(depht=3), "image.model.depht: Extra inputs are not permitted"),
        (lambda p: p["text"]["train"].update(epochs="many"), "text.train.epochs: Input should be a valid integer"),
        (lambda p: p["speech"]["train"].update(lr=-0.1), "speech.train.lr: Input should be greater than 0"),
        (lambda p: p["image"]["train"].update(ema_decay=1.0), "image.train.ema_decay: Input should be less than 1"),
        (lambda p: p["text"]["train"].update(average_epochs=1), "text.train.average_epochs: Input should be greater"),
        (
            lambda p: p["translation"]["train"].update(ema_decay=0.999, average_epochs=3),
            "translation.train: Value error, ema_decay and average_epochs: give one weight average, not both",
        ),
        (lambda p: p["speech"]["train"].update(precision="fp16"), "speech.train.precision: Input should be 'fp32'"),
        (lambda p: p["image"]["train"].update(cutmix_alpha=-1), "image.train.cutmix_alpha: Input should be greater"),
        (lambda p: p["text"]["train"].update(mixup_alpha=0.8), "text.train.mixup_alpha: Extra inputs are not"),
        (lambda p: p["text"]["model"].update(token_dropout=0.9), "text.model.token_dropout: Input should be less"),
        (lambda p: p["image"]["model"].update(pool="mean"), "image.model.pool: Input should be 'cls' or 'attention'"),
        (lambda p: p["translation"]["model"].update(pool="attention"), "translation.model.pool: Extra inputs are not"),
        (lambda p: p["global"].update(device="tpu"), "global.device: Input should be 'auto', 'cpu' or 'cuda'"),
        (
            lambda p: p["image"]["model"].update(num_heads=3),
            "image.model: Value error, embed_dim (16) must be divisible",
        ),
        (lambda p: p["text"].pop("task"), "text.task: Field required"),
        (lambda p: p["global"]["schedule"].update(cron="0 25 * * *"), "global.schedule.cron: Value error, not a cron"),
        (
            lambda p: p["global"]["schedule"].update(timezone="Mars/Olympus"),
            "global.schedule.timezone: Value error, unknown",
        ),
        (
            lambda p: p["global"]["schedule"].update(every="day"),
            "global.schedule.every: Extra inputs are not permitted",
        ),
        (lambda p: p["global"]["monitor"].update(cron="every hour"), "global.monitor.cron: Value error, not a cron"),
        (lambda p: p["global"]["monitor"].update(ks_pvalue=1.5), "global.monitor.ks_pvalue: Input should be less"),
        (lambda p: p["global"]["monitor"].update(min_requests=0), "global.monitor.min_requests: Input should be"),
        (
            lambda p: p["translation"]["model"].update(decoder_depth=0),
            "translation.model.decoder_depth: Value error, 'auto' or an integer from 1 to 24 (got 0)",
        ),
        (
            lambda p: p["translation"]["model"].update(num_heads=3),
            "translation.model: Value error, embed_dim (16) must be",
        ),
        (lambda p: p["translation"]["eval"].update(beam_size=0), "translation.eval.beam_size: Input should be greater"),
        (
            lambda p: p["translation"]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "de"}
            ),
            "translation.data.import_from: Value error, source_lang and target_lang are both 'de'",
        ),
        (
            lambda p: p["translation"]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "en", "splits": {"val": "val"}}
            ),
            "translation.data.import_from: Value error, splits must name the train file stem",
        ),
        (
            lambda p: p["translation"]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "en", "splits": {"dev": "val"}}
            ),
            "translation.data.import_from.splits.dev.[key]: Input should be 'train', 'val' or 'test'",
        ),
    ],
)
def test_invalid_values_name_the_key(tmp_path, edit, message):
    params = tiny_params()
    edit(params)
    with pytest.raises(ParamsError, match="invalid params") as error:
        load_params(write_params(tmp_path, params))
    assert message in str(error.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["image"]["train"].update(lr=float("nan")), "image.train.lr: Input should be a finite number"),
        (
            lambda p: p["text"]["train"].update(weight_decay=float("inf")),
            "text.train.weight_decay: Input should be a finite",
        ),
        (lambda p: p["global"].update(seed=2**32), "global.seed: Value error, out of range (at most 4294967295)"),
        (lambda p: p["image"]["train"].update(epochs=True), "image.train.epochs: Value error, a number, not a boolean"),
        (
            lambda p: p["speech"]["data"].update(sample_rate=False),
            "speech.data.sample_rate: Value error, a number, not",
        ),
        (lambda p: p["text"]["train"].update(batch_size=10**12), "text.train.batch_size: Value error, out of range"),
    ],
)
def test_numbers_are_finite_bounded_and_not_booleans(tmp_path, edit, message):
    params = tiny_params()
    edit(params)
    with pytest.raises(ParamsError, match="invalid params") as error:
        load_params(write_params(tmp_path, params))
    assert message in str(error.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"global:\n  seed: 1\n  seed: 2\n", "not valid YAML: duplicate key 'seed'"),
        ("global:\n  seed: 1  # café\n".encode("latin-1"), "not UTF-8 text"),
        (("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested too deeply"),
        (b"- text\n- image\n", "(top level): Input should be a valid dictionary"),
        (b"global: {seed: [unclosed\n", "not valid YAML"),
    ],
    ids=["duplicate-key", "latin-1", "deep", "a-list", "broken"],
)
def test_a_malformed_file_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError, match=re.escape(message)) as error:
        load_params(tmp_path / "params.yaml")
    assert str(error.value).startswith(str(tmp_path / "params.yaml")) and "\n" not in str(error.value)


def test_a_section_may_be_left_out_only_when_its_modality_is_not_run(tmp_path):
    params = tiny_params()
    params = {"global": params["global"] | {"modalities": ["image"]}, "image": params["image"]}  # one section
    assert load_params(write_params(tmp_path, params)).present_modalities() == ["image"]
    params["global"]["modalities"] = ["image", "speech"]
    with pytest.raises(ParamsError, match=r"global.modalities lists \['speech'\] but the file has no section"):
        load_params(write_params(tmp_path, params))


def test_unreadable_file_names_the_file(tmp_path):
    broken = tmp_path / "params.yaml"
    broken.write_text("global: [unclosed\n")
    with pytest.raises(ParamsError, match=str(broken)):
        load_params(broken)


def test_cli_rejects_invalid_params_before_any_work(tmp_path):
    params = tiny_params()
    params["image"]["train"]["batch_size"] = 0
    path = write_params(tmp_path, params)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--params", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "image.train.batch_size: Input should be greater than or equal to 1" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()
    assert yaml.safe_load(path.read_text())["image"]["train"]["batch_size"] == 0


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("https://alice:s3cret@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
        ("postgresql://ml:pa%40ss@db:5432/mlflow", "postgresql://ml:***@db:5432/mlflow"),
        ("https://mlflow.example.com", "https://mlflow.example.com"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        (None, None),
    ],
)
def test_credentials_in_a_tracking_uri_are_never_shown(uri, shown):
    from tasks.params import public_dump, redact

    assert redact(uri) == shown
    params = load_params(REPO / "params.yaml")
    params = params.model_copy(update={"global_": params.global_.model_copy(
        update={"tracking": params.global_.tracking.model_copy(update={"uri": uri})})})  # fmt: skip
    assert public_dump(params)["global"]["tracking"]["uri"] == shown
