"""The real pipeline on a tiny configuration: temporary Prefect server, temporary MLflow store, real DVC."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from mlflow.tracking import MlflowClient

from tasks.lineage import data_md5
from tasks.modalities import get
from tasks.params import MODALITIES


@pytest.fixture(scope="module")
def pipeline_result(pipeline_runs):
    """The first of the session's tiny pipeline runs (tests/conftest.py)."""
    project, first, _ = pipeline_runs
    return project, first


def test_pipeline_logs_a_finished_run_per_modality_with_everything(pipeline_result):
    project, result = pipeline_result
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    md5 = data_md5(project)
    assert result["data_md5"] == md5 == parent.data.tags["data_md5"]

    experiments = [e.experiment_id for e in client.search_experiments()]
    children = client.search_runs(experiments, f"tags.pipeline_run_id = '{parent.info.run_id}'")
    assert sorted(run.data.tags["modality"] for run in children) == sorted(MODALITIES)
    assert {parent.data.tags[f"run_id.{run.data.tags['modality']}"] for run in children} == {
        run.info.run_id for run in children
    }
    for run in children:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        modality = tags["modality"]
        assert run.info.status == "FINISHED"
        epochs = "3" if modality == "image" else "1"
        experiment = client.get_experiment(run.info.experiment_id)  # one experiment per task
        assert experiment.name == f"attnflow-{tags['task']}"
        assert run.info.run_name.startswith(f"{modality}-") and run.info.run_name.endswith(f"-ep{epochs}")
        assert len(tags["test_data_md5"]) == 32 and tags["sweep_id"] == "s1"
        assert tags["data_md5"] == md5
        assert tags["task"] and tags["prefect_flow_run_id"] and len(tags["git_sha"]) == 40
        assert params["model.embed_dim"] == "16" and params["train.epochs"] == epochs
        assert {*get(modality).metrics, "train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(metrics)
        for name in get(modality).metrics:
            assert metrics[name] == result["modalities"][modality][name]
            assert 0.0 <= metrics[name] <= (100.0 if modality == "translation" else 1.0)  # BLEU, chrF: 0..100
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        attention = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
        assert {"attention/sample_00.png", "attention/sample_01.png", "attention/attention_maps.json"} <= attention
        maps = json.loads(Path(client.download_artifacts(run.info.run_id, "attention/attention_maps.json")).read_text())
        assert len(maps) == 2
        if modality == "translation":
            check_translation_artifacts(client, run.info.run_id, maps, artifacts, project)
        else:
            assert "confusion_matrix.png" in artifacts and abs(sum(maps[0]["relevance"]) - 1) < 1e-3
        logged = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert sorted(model.name for model in logged) == ["model", "serving"]


def check_translation_artifacts(client, run_id: str, maps: list[dict], artifacts: set[str], project) -> None:
    """Alignment maps (output subwords x source subwords, rows sum to 1), sample and all test translations."""
    assert "translations" in artifacts and "confusion_matrix.png" not in artifacts
    for record in maps:
        assert record["source"] and record["reference"] and record["output_tokens"][-1] == "[EOS]"
        assert len(record["alignment"]) == len(record["output_tokens"])
        for row in record["alignment"]:
            assert len(row) == len(record["source_tokens"]) and abs(sum(row) - 1) < 1e-3
    samples = json.loads(Path(client.download_artifacts(run_id, "translations/samples.json")).read_text())
    assert samples and {"source", "reference", "translation"} == set(samples[0])
    hypotheses = Path(client.download_artifacts(run_id, "translations/test_hypotheses.txt")).read_text()
    references = (project / "data" / "translation" / "test.en").read_text()
    assert hypotheses.count("\n") == references.count("\n") == 20  # one line per test sentence
    # the logged scores are sacrebleu's on exactly these hypotheses and the raw references
    metrics = client.get_run(run_id).data.metrics
    hypotheses, references = hypotheses.splitlines(), references.splitlines()
    assert metrics["test_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score, abs=1e-9)
    assert metrics["test_chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score, abs=1e-9)


def test_data_is_versioned_and_dvc_status_is_clean(pipeline_result):
    project, result = pipeline_result
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True, text=True, check=True
    )
    assert json.loads(status.stdout) == {}
    cloud = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--cloud", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(cloud.stdout) == {}  # everything was pushed to the default remote
    assert sorted(p.name for p in (project / "data").iterdir()) == sorted(MODALITIES)
