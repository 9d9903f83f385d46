"""Issue 33: the text task fine-tunes a pretrained Hugging Face backbone (a tiny random BERT saved here, outside the
project) through `attnflow run`: it trains, evaluates, explains, compresses, serves over HTTP and reproduces exactly;
a backbone that is not there stops the run in one line naming the key, before any run opens."""

import json

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from tasks.errors import EXIT_INVALID
from tests.conftest import TEXT, tiny_params, write_params
from tests.hf_models import save_tiny_bert
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_named_tasks import served_answers

SIZE_KEYS = ("vocab_size", "embed_dim", "num_heads", "depth", "patch_size")  # the backbone's to set (a kind has some)


def backbone_params(source: str, task: str = TEXT) -> dict:
    """tiny_params training task alone (language-id unless told), fine-tuning the backbone at source, the size keys
    left to it."""
    params = tiny_params()
    params["global"]["tasks"] = [task]
    model = params["tasks"][task]["model"]
    for key in SIZE_KEYS:
        model.pop(key, None)
    model["backbone"] = {"source": source, "layer_decay": 0.8}
    params["tasks"][task]["train"].update(lr=1e-3, max_batches_per_epoch=3)
    return params


def test_a_missing_backbone_stops_the_run_naming_the_key(tiny_project):
    write_params(tiny_project, backbone_params("./backbones/missing"))
    result = attnflow(tiny_project, "run", "--params", "params.yaml", timeout=120)
    assert_one_line_error(result, EXIT_INVALID, f"tasks.{TEXT}.model.backbone.source", "not a pretrained model folder")
    assert not (tiny_project / "mlflow.db").exists()  # no run was opened (none left RUNNING)


@pytest.mark.slow  # a pipeline run and a served model: about 2 minutes on 2 cores
def test_a_fine_tuned_backbone_runs_the_whole_pipeline(tiny_project, prefect_server, tmp_path, capsys):
    source = save_tiny_bert(tmp_path / "tiny-bert")
    params_path = write_params(tiny_project, backbone_params(str(source)))
    client, run = fine_tuned_run(tiny_project, params_path, TEXT, source, capsys)

    answers, version = served_answers(tiny_project, tmp_path, TEXT, ["der schnelle braune Fuchs", "le chat"])
    assert version["run_id"] == run.info.run_id
    for answer in answers:
        assert answer["label"] in answer["probabilities"] and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
        assert len(answer["attention"]) == len(answer["tokens"]) and abs(sum(answer["attention"]) - 1) < 1e-3
    assert answers[0]["tokens"][:2] == ["der", "s"]  # the backbone's WordPiece, not a learned BPE

    assert_reproduced_then_refused(run.info.run_id, params_path, source)


def fine_tuned_run(project, params_path, task: str, source, capsys):
    """`attnflow run` of params_path, which fine-tunes the tiny backbone at source (hidden size 32, 2 layers) for
    task: (the MLflow client, the task's run), after checking that the run records the backbone and that it was
    evaluated, explained (deletion AUCs of rollout, gradient-weighted attention and random maps) and compressed
    (int8 and pruned variants), and that the model card names the backbone and its digest."""
    assert main(["run", "--params", str(params_path)]) == 0, capsys.readouterr().err
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name(f"attnflow-{task}").experiment_id])
    metrics, tags, logged = run.data.metrics, run.data.tags, run.data.params
    assert logged["model.backbone.source"] == str(source) and logged["train.lr_schedule"] == "linear"
    assert logged["resolved.model.embed_dim"] == "32" and logged["resolved.model.depth"] == "2"
    assert len(tags["backbone_sha256"]) == 64 and "model.safetensors" in json.loads(tags["backbone_files"])
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["eval_val_accuracy"] <= 1
    for method in ("rollout", "gradient_attention", "random"):
        assert 0 <= metrics[f"attn_deletion_auc.{method}"] <= 1, method
    for variant in ("int8", "pruned"):
        assert any(name.endswith(f".{variant}") and name.startswith("compress_") for name in metrics), variant
    card = client.get_model_version(f"attnflow-{task}", "1").description
    assert tags["backbone_sha256"] in card and str(source) in card
    return client, run


def assert_reproduced_then_refused(run_id: str, params_path, source) -> None:
    """`attnflow reproduce` of the run matches it exactly; once the backbone's config.json changes, it refuses,
    naming the file."""
    from flows.experiments import reproduce

    result = reproduce(run_id, params_path=str(params_path))
    assert result["match"], result["metrics"]
    (source / "config.json").write_text((source / "config.json").read_text().replace('"hidden_act"', '"hidden_act" '))
    with pytest.raises(Exception, match="config.json"):  # other backbone files: refused, naming the file
        reproduce(run_id, params_path=str(params_path))


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"layer_decay": 1.5}, f"tasks.{TEXT}.model.backbone.layer_decay"),
        ({"freeze_layers": -1}, f"tasks.{TEXT}.model.backbone.freeze_layers"),
        ({"sorce": "x"}, f"tasks.{TEXT}.model.backbone.sorce"),
        ({"source": ""}, f"tasks.{TEXT}.model.backbone.source"),
    ],
)
def test_backbone_params_are_validated_with_the_key_named(tmp_path, change, phrase):
    from tasks.params import ParamsError, load_params

    params = backbone_params("some/model")
    params["tasks"][TEXT]["model"]["backbone"].update(change)
    with pytest.raises(ParamsError, match=phrase.replace(".", r"\.")):
        load_params(write_params(tmp_path, params))


def test_a_backbone_sets_the_vocabulary_and_the_schedule(tmp_path):
    assert_a_backbone_sets(tmp_path, TEXT, "vocab_size", 500, "vocab_size: set by the backbone")


def assert_a_backbone_sets(tmp_path, task: str, key: str, value, phrase: str) -> None:
    """With a backbone, task trains on the fine-tuning schedule, and model.key given as value is refused (phrase)."""
    from tasks.params import ParamsError, load_params

    params = backbone_params("some/model", task)
    assert load_params(write_params(tmp_path, params)).task(task).train.lr_schedule == "linear"
    params["tasks"][task]["model"][key] = value
    with pytest.raises(ParamsError, match=rf"tasks\.{task}\.model.*{phrase}"):
        load_params(write_params(tmp_path, params))
