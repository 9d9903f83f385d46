"""Issue 34, text: the pipeline pretrains the text task's encoder on unlabelled texts, then fine-tunes from it. The real
pipeline on a tiny project (temporary Prefect server, MLflow store, real DVC): the pretrain run is its own MLflow run
with its curves and checkpoint, the task run records it, the classifier's encoder starts from its weights, and a run
with nothing changed skips it. The train stage's cache key and the data recipe are checked without a server."""

import hashlib

import pytest
import torch
from mlflow.tracking import MlflowClient

from flows.pipeline import attention_pipeline
from tasks.params import Params
from tasks.stages.prepare import builtin_recipe, data_recipe
from tasks.stages.train import STAGE
from tests.conftest import CACHED_STAGES, TEXT, stage_states, tiny_params, write_params

WORDS = ["der", "die", "das", "und", "ist", "nicht", "ein", "eine", "le", "la", "les", "et", "est", "pas", "un",
         "une", "the", "and", "is", "not", "a", "of"]  # fmt: skip
STEPS, LOG_EVERY = 12, 4


def unlabelled_texts(count: int = 120) -> str:
    """Short word sequences in the built-in task's languages' common words, one a line."""
    return "".join(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 5)) + "\n" for i in range(count))


def pretrain_params() -> dict:
    """tiny_params' text task alone, pretrained from unlabelled/texts.txt, then fine-tuned at a learning rate so small
    that two steps leave every weight within 1e-4 of where it started: the trained encoder shows its start."""
    params = tiny_params()
    params["global"]["tasks"] = [TEXT]
    params["global"]["compress"]["enabled"] = False
    params["tasks"][TEXT]["pretrain"] = {"source": "unlabelled", "steps": STEPS, "batch_size": 16,
                                         "lr": 5e-3, "log_every": LOG_EVERY}  # fmt: skip
    params["tasks"][TEXT]["train"]["lr"] = 1e-6
    return params


@pytest.mark.slow  # two pipeline runs: about a minute and a half on 2 cores
def test_pretrain_then_fine_tune_records_the_pretrain_run_and_starts_from_its_encoder(tiny_project, prefect_server):
    (tiny_project / "unlabelled").mkdir()
    (tiny_project / "unlabelled" / "texts.txt").write_text(unlabelled_texts())
    params_path = write_params(tiny_project, pretrain_params())
    first = attention_pipeline(params_path=str(params_path))
    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    task_run = client.get_run(first["tasks"][TEXT]["run_id"])
    pretrain_run = client.get_run(task_run.data.tags["pretrain_run_id"])

    tags = pretrain_run.data.tags
    assert tags["stage"] == "pretrain" and tags["mlflow.parentRunId"] == task_run.info.run_id
    prepared = tiny_project / "data" / TEXT / "unlabelled.txt"  # in data/, versioned by data.dvc
    assert prepared.read_text() == unlabelled_texts()
    assert tags["unlabelled_sha256"] == hashlib.sha256(prepared.read_bytes()).hexdigest()
    assert tags["data_md5"] == task_run.data.tags["data_md5"] == task_run.data.tags["pretrain_data_md5"]
    assert task_run.data.tags["pretrain_unlabelled_sha256"] == tags["unlabelled_sha256"]
    curve = client.get_metric_history(pretrain_run.info.run_id, "pretrain_loss")
    assert [point.step for point in curve] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert len(client.get_metric_history(pretrain_run.info.run_id, "pretrain_masked_accuracy")) == len(curve)
    assert pretrain_run.data.params["pretrain.mask_ratio"] == "0.15"
    assert {f.path for f in client.list_artifacts(pretrain_run.info.run_id, "trained")} >= {
        "trained/checkpoint.pt", "trained/tokenizer.json"}  # fmt: skip

    pretrained = torch.load(tiny_project / "outputs" / pretrain_run.info.run_id / "checkpoint.pt", weights_only=True)
    assert task_run.data.tags["pretrain_checkpoint_sha256"] == hashlib.sha256(
        (tiny_project / "outputs" / pretrain_run.info.run_id / "checkpoint.pt").read_bytes()).hexdigest()  # fmt: skip
    assert_starts_from(pretrained, torch.load(tiny_project / "outputs" / task_run.info.run_id / "checkpoint.pt"))

    second = attention_pipeline(params_path=str(params_path))  # nothing changed
    states = stage_states(tiny_project, second, stages=("pretrain-", *CACHED_STAGES))
    assert states[f"pretrain-{TEXT}"] == "Cached" and states[f"train-{TEXT}"] == "Cached"
    again = client.get_run(second["tasks"][TEXT]["run_id"])
    assert again.data.tags["pretrain_run_id"] == pretrain_run.info.run_id  # points at the run that pretrained
    experiment = task_run.info.experiment_id
    assert len(client.search_runs([experiment], "tags.stage = 'pretrain'")) == 1


def assert_starts_from(pretrained: dict, trained: dict) -> None:
    """The trained classifier's encoder is the pretrained one (two steps at lr 1e-6 moved no weight by 1e-4), and the
    pretrained encoder is far from a fresh model's (so the match is not two random initialisations agreeing)."""
    from tasks.kinds import get

    fresh = get("text").build_model(trained["model_args"]).state_dict()
    for name, weight in pretrained["encoder"].items():
        assert torch.allclose(trained["state_dict"][name], weight, atol=1e-4), name
    assert max((pretrained["encoder"][name] - fresh[name]).abs().max().item() for name in pretrained["encoder"]) > 1e-2
    assert not any(name.startswith("head.") for name in pretrained["encoder"])


def test_the_train_key_holds_the_pretrained_checkpoint_and_only_when_there_is_one(tmp_path):
    params = Params.model_validate(tiny_params())
    inputs = {"task": TEXT, "params": params, "root": tmp_path, "data_recipe": builtin_recipe(TEXT, params)}
    without = STAGE.cache_key(None, inputs)
    assert STAGE.cache_key(None, inputs | {"pretrained": None}) == without  # a task without: its key as it was
    first, other = ({"checkpoint_sha256": sha} for sha in ("a" * 64, "b" * 64))
    keys = {without, STAGE.cache_key(None, inputs | {"pretrained": first}),
            STAGE.cache_key(None, inputs | {"pretrained": other})}  # fmt: skip
    assert len(keys) == 3


def test_the_data_recipe_follows_the_unlabelled_texts(tmp_path):
    params = tiny_params()
    assert "unlabelled" not in data_recipe(TEXT, Params.model_validate(params), tmp_path)
    params["tasks"][TEXT]["pretrain"] = {"source": "texts.txt"}
    params = Params.model_validate(params)
    (tmp_path / "texts.txt").write_text("one text\n")
    before = data_recipe(TEXT, params, tmp_path)
    assert before["unlabelled"]["content_sha256"] != "missing"
    (tmp_path / "texts.txt").write_text("one text\nand another\n")
    assert data_recipe(TEXT, params, tmp_path)["unlabelled"] != before["unlabelled"]
