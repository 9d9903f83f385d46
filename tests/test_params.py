"""params.yaml is validated on load; bad values stop the run with the key named."""

import re
import subprocess
import sys

import pytest
import yaml

from tasks.kinds import KINDS
from tasks.params import ParamsError, load_params
from tests.conftest import ASR, BUILTIN_TASKS, IMAGE, REPO, SPEECH, TEXT, TRANSLATION, tiny_params, write_params


def test_the_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.global_.tasks is None and params.selected_tasks() == list(BUILTIN_TASKS.values())  # all, in order
    assert {params.task(name).kind for name in params.tasks} == set(KINDS)  # a built-in task of every kind
    assert params.task(SPEECH).data.builtin.words[0] == "yes"  # quoted: not YAML's boolean


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda p: p["tasks"][IMAGE]["model"].update(depht=3),
            f"tasks.{IMAGE}.model.depht: Extra inputs are not permitted",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(epochs="many"),
            f"tasks.{TEXT}.train.epochs: Value error, 'auto' or an integer from 1",
        ),
        (
            lambda p: p["tasks"][ASR]["train"].update(patience=0),
            f"tasks.{ASR}.train.patience: Value error, 'auto', null or an integer from 1 to 1000000",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(patience="soon"),
            f"tasks.{TEXT}.train.patience: Value error, 'auto', null or an integer from 1",
        ),
        (
            lambda p: p["tasks"][IMAGE]["train"].update(epochs=0),
            f"tasks.{IMAGE}.train.epochs: Value error, 'auto' or an integer from 1 to 1000000",
        ),
        (
            lambda p: p["tasks"][SPEECH]["train"].update(lr=-0.1),
            f"tasks.{SPEECH}.train.lr: Input should be greater than 0",
        ),
        (
            lambda p: p["tasks"][IMAGE]["train"].update(ema_decay=1.0),
            f"tasks.{IMAGE}.train.ema_decay: Input should be less than 1",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(average_epochs=1),
            f"tasks.{TEXT}.train.average_epochs: Input should be greater",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["train"].update(ema_decay=0.999, average_epochs=3),
            f"tasks.{TRANSLATION}.train: Value error, ema_decay and average_epochs: give one weight average, not both",
        ),
        (
            lambda p: p["tasks"][SPEECH]["train"].update(precision="fp16"),
            f"tasks.{SPEECH}.train.precision: Input should be 'fp32'",
        ),
        (
            lambda p: p["tasks"][IMAGE]["train"].update(cutmix_alpha=-1),
            f"tasks.{IMAGE}.train.cutmix_alpha: Input should be greater",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(mixup_alpha=0.8),
            f"tasks.{TEXT}.train.mixup_alpha: Extra inputs are not",
        ),
        (
            lambda p: p["tasks"][TEXT]["model"].update(token_dropout=0.9),
            f"tasks.{TEXT}.model.token_dropout: Input should be less",
        ),
        (
            lambda p: p["tasks"][IMAGE]["model"].update(pool="mean"),
            f"tasks.{IMAGE}.model.pool: Input should be 'cls' or 'attention'",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["model"].update(pool="attention"),
            f"tasks.{TRANSLATION}.model.pool: Extra inputs are not",
        ),
        (lambda p: p["global"].update(device="tpu"), "global.device: Input should be 'auto', 'cpu' or 'cuda'"),
        (
            lambda p: p["tasks"][IMAGE]["model"].update(num_heads=3),
            f"tasks.{IMAGE}.model: Value error, embed_dim (16) must be divisible",
        ),
        (lambda p: p["tasks"][TEXT].pop("kind"), f"tasks.{TEXT}.kind: every task names its kind (text, image,"),
        (lambda p: p["tasks"][TEXT].update(kind="video"), f"tasks.{TEXT}.kind: every task names its kind"),
        (lambda p: p["tasks"][TEXT].update(kind="image"), f"tasks.{TEXT}.data.builtin.locales: Extra inputs"),
        (lambda p: p["tasks"].update({"my task": p["tasks"][TEXT]}), "tasks.my task: a task's name is letters"),
        (lambda p: p["tasks"].update({"a.b": p["tasks"][TEXT]}), "tasks.a.b: a task's name is letters"),
        (lambda p: p["tasks"].clear(), "tasks: Dictionary should have at least 1 item"),
        (lambda p: p["global"].update(tasks=["nope"]), "global.tasks names ['nope'], which `tasks` lacks"),
        (lambda p: p.update(text=p["tasks"][TEXT]), "sections ['text'] name kinds: since tasks have names"),
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
            lambda p: p["tasks"][TRANSLATION]["model"].update(decoder_depth=0),
            f"tasks.{TRANSLATION}.model.decoder_depth: Value error, 'auto' or an integer from 1 to 24 (got 0)",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["model"].update(num_heads=3),
            f"tasks.{TRANSLATION}.model: Value error, embed_dim (16) must be",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["eval"].update(beam_size=0),
            f"tasks.{TRANSLATION}.eval.beam_size: Input should be greater",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "de"}
            ),
            f"tasks.{TRANSLATION}.data.import_from: Value error, source_lang and target_lang are both 'de'",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "en", "splits": {"val": "val"}}
            ),
            f"tasks.{TRANSLATION}.data.import_from: Value error, splits must name the train file stem",
        ),
        (
            lambda p: p["tasks"][TRANSLATION]["data"].update(
                import_from={"path": "x", "source_lang": "de", "target_lang": "en", "splits": {"dev": "val"}}
            ),
            f"tasks.{TRANSLATION}.data.import_from.splits.dev.[key]: Input should be 'train', 'val' or 'test'",
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
        (
            lambda p: p["tasks"][IMAGE]["train"].update(lr=float("nan")),
            f"tasks.{IMAGE}.train.lr: Input should be a finite number",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(weight_decay=float("inf")),
            f"tasks.{TEXT}.train.weight_decay: Input should be a finite",
        ),
        (lambda p: p["global"].update(seed=2**32), "global.seed: Value error, out of range (at most 4294967295)"),
        (
            lambda p: p["tasks"][IMAGE]["train"].update(epochs=True),
            f"tasks.{IMAGE}.train.epochs: Value error, 'auto' or an integer from 1",
        ),
        (
            lambda p: p["tasks"][SPEECH]["data"].update(sample_rate=False),
            f"tasks.{SPEECH}.data.sample_rate: Value error, a number, not",
        ),
        (
            lambda p: p["tasks"][TEXT]["train"].update(batch_size=10**12),
            f"tasks.{TEXT}.train.batch_size: Value error, out of range",
        ),
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


def test_a_project_holds_any_number_of_tasks_of_a_kind_and_runs_those_selected(tmp_path):
    params = tiny_params()
    news = params["tasks"][TEXT] | {"train": params["tasks"][TEXT]["train"] | {"epochs": 3}}
    params["tasks"] = {"news": news, TEXT: params["tasks"][TEXT], IMAGE: params["tasks"][IMAGE]}
    loaded = load_params(write_params(tmp_path, params))
    assert loaded.selected_tasks() == ["news", TEXT, IMAGE]  # the file's order
    assert loaded.kind("news") is loaded.kind(TEXT) and loaded.task("news").train.epochs == 3
    params["global"]["tasks"] = [IMAGE, "news"]
    assert load_params(write_params(tmp_path, params)).selected_tasks() == [IMAGE, "news"]
    with pytest.raises(ParamsError, match=r"unknown task 'spam'; the params have news, "):
        loaded.task("spam")


def test_unreadable_file_names_the_file(tmp_path):
    broken = tmp_path / "params.yaml"
    broken.write_text("global: [unclosed\n")
    with pytest.raises(ParamsError, match=str(broken)):
        load_params(broken)


def test_cli_rejects_invalid_params_before_any_work(tmp_path):
    params = tiny_params()
    params["tasks"][IMAGE]["train"]["batch_size"] = 0
    path = write_params(tmp_path, params)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--params", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"tasks.{IMAGE}.train.batch_size: Input should be greater than or equal to 1" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()
    assert yaml.safe_load(path.read_text())["tasks"][IMAGE]["train"]["batch_size"] == 0


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
