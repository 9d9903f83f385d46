"""The real pipeline on a tiny configuration: temporary Prefect server, temporary MLflow store, real DVC."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import sacrebleu
from mlflow.tracking import MlflowClient

from tasks.kinds import get
from tasks.kinds.sequence import SequenceKind
from tasks.lineage import data_md5
from tasks.names import MONITOR_REFERENCE
from tasks.params import load_params
from tests.conftest import ASR, BUILTIN_TASKS, CACHED_STAGES, IMAGE, SECOND_RUN_TASKS, SPEECH, TEXT, TRANSLATION

TASKS = list(BUILTIN_TASKS.values())  # what the session's first pipeline run trains
KIND = {task: kind for kind, task in BUILTIN_TASKS.items()}


@pytest.fixture(scope="module")
def pipeline_result(pipeline_runs):
    """The first of the session's tiny pipeline runs (tests/conftest.py)."""
    project, first, _ = pipeline_runs
    return project, first


def test_pipeline_logs_a_finished_run_per_task_with_everything(pipeline_result):
    project, result = pipeline_result
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    md5 = data_md5(project)
    assert result["data_md5"] == md5 == parent.data.tags["data_md5"]

    experiments = [e.experiment_id for e in client.search_experiments()]
    children = client.search_runs(experiments, f"tags.pipeline_run_id = '{parent.info.run_id}'")
    assert sorted(run.data.tags["task"] for run in children) == sorted(TASKS)
    assert {run.data.tags["kind"] for run in children} == set(BUILTIN_TASKS)
    assert {parent.data.tags[f"run_id.{run.data.tags['task']}"] for run in children} == {
        run.info.run_id for run in children
    }
    for run in children:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        task = tags["task"]
        assert run.info.status == "FINISHED"
        epochs = "3" if task == IMAGE else "1"
        experiment = client.get_experiment(run.info.experiment_id)  # one experiment per task
        assert experiment.name == f"attnflow-{task}"
        model_class = get(KIND[task]).model_class.rpartition(":")[2]
        assert run.info.run_name.startswith(f"{model_class}-") and run.info.run_name.endswith(f"-ep{epochs} (trained)")
        assert len(tags["test_data_md5"]) == 32 and tags["sweep_id"] == "s1"
        assert len(tags["val_data_md5"]) == 32 and tags["val_data_md5"] != tags["test_data_md5"]
        assert tags["data_md5"] == md5
        assert tags["task"] and tags["prefect_flow_run_id"] and len(tags["git_sha"]) == 40
        assert params["model.embed_dim"] == "16" and params["train.epochs"] == epochs
        spec = get(KIND[task])
        assert {*spec.metrics, "train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(metrics)
        for name in (*spec.metrics, *spec.val_metrics):  # eval_val_*: evaluate's, on validation
            assert metrics[name] == result["tasks"][task][name] and metrics[name] >= 0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        attention = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
        assert {"attention/sample_00.png", "attention/sample_01.png", "attention/attention_maps.json"} <= attention
        maps = json.loads(Path(client.download_artifacts(run.info.run_id, "attention/attention_maps.json")).read_text())
        assert len(maps) == 2
        if isinstance(get(KIND[task]), SequenceKind):
            check_sequence_artifacts(client, run.info.run_id, get(KIND[task]), maps, artifacts, project)
        else:
            assert "confusion_matrix.png" in artifacts and abs(sum(maps[0]["relevance"]) - 1) < 1e-3
            reference = json.loads(Path(client.download_artifacts(run.info.run_id, MONITOR_REFERENCE)).read_text())
            assert reference["count"] > 0 and sum(reference["predictions"].values()) == reference["count"]
            assert {"confidence", "attention_entropy"} < set(reference["features"])  # and the input's summary
            assert {len(values) for values in reference["features"].values()} == {reference["count"]}
        logged = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert sorted(model.name for model in logged) == ["compact", "model", "serving"]  # compact: compress stage


def check_sequence_artifacts(client, run_id: str, spec, maps: list[dict], artifacts: set[str], project) -> None:
    """Alignment maps (output tokens x input positions, rows sum to 1), samples and every test output."""
    assert spec.outputs_folder in artifacts and "confusion_matrix.png" not in artifacts
    for record in maps:
        assert record["source"] and record["reference"] and record["output_tokens"][-1] == "[EOS]"
        assert len(record["alignment"]) == len(record["output_tokens"])
        assert len({len(row) for row in record["alignment"]}) == 1  # one weight per input position
        assert all(abs(sum(row) - 1) < 1e-3 for row in record["alignment"])
    samples = json.loads(Path(client.download_artifacts(run_id, f"{spec.outputs_folder}/samples.json")).read_text())
    assert samples and {"source", "reference", spec.output_field} == set(samples[0])
    hypotheses = Path(client.download_artifacts(run_id, f"{spec.outputs_folder}/test_hypotheses.txt")).read_text()
    task = BUILTIN_TASKS[spec.name]
    params = load_params(project / "params.yaml").task(task)
    _, references = spec.test_texts(project / "data" / task, params)
    assert hypotheses.count("\n") == len(references)  # one line per test example
    if spec.name == "translation":  # the logged scores are sacrebleu's on exactly these hypotheses and the references
        metrics, hypotheses = client.get_run(run_id).data.metrics, hypotheses.splitlines()
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
    assert sorted(p.name for p in (project / "data").iterdir()) == sorted(TASKS)


def dvc_digest(files: list[Path], data_dir: Path) -> str:
    """DVC's md5 of one file, or of a directory of several (its sorted JSON listing of relpath and md5) + ".dir"."""
    entries = [{"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(data_dir).as_posix()}
               for f in sorted(files)]  # fmt: skip
    if len(entries) == 1:
        return entries[0]["md5"]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def test_runs_record_their_datasets_with_dvc_digests(pipeline_result):
    project, result = pipeline_result
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    listing = json.loads(next((project / ".dvc" / "cache").rglob(result["data_md5"][2:])).read_text())  # DVC's own
    recorded = {entry["relpath"]: entry["md5"] for entry in listing}
    for task, run_result in result["tasks"].items():
        run = client.get_run(run_result["run_id"])
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["test", "train", "val"]
        for split, dataset in inputs.items():
            files = get(KIND[task]).split_files(project / "data" / task, split)
            assert dataset.digest == dvc_digest(files, project / "data"), (task, split)
            assert all(recorded[f.relative_to(project / "data").as_posix()] for f in files)  # all in DVC's record
            assert dataset.source_type == "dvc" and json.loads(dataset.source)["data_md5"] == result["data_md5"]
            assert dataset.name == f"{run.data.tags['task']}-{split}"


def test_registered_versions_carry_their_model_card_and_served_models_a_signature(pipeline_result):
    project, result = pipeline_result
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for task, run_result in result["tasks"].items():
        spec, promotion = get(KIND[task]), run_result["promotion"]
        version = client.get_model_version(promotion["registered_model"], promotion["version"])
        assert f"version {promotion['version']} ({promotion['alias']})" in version.description
        assert f"{spec.primary_metric}` {run_result[spec.primary_metric]:.4f}" in version.description
        decided = f"**Decided on**: validation ({spec.val_metric}): {run_result[spec.val_metric]:.4f}"
        assert decided in version.description
        assert result["data_md5"] in version.description and spec.attention_method in version.description
        model = client.get_registered_model(promotion["registered_model"])
        assert spec.serving_input in model.description
        served = mlflow.models.get_model_info(f"models:/{promotion['registered_model']}/{promotion['version']}")
        assert served.signature.inputs.input_names() == [spec.input_column]
        assert served.saved_input_example_info is not None


def test_experiments_open_in_the_training_view_and_runs_say_what_they_are(pipeline_runs):
    project, first, _ = pipeline_runs
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for experiment in client.search_experiments():
        if experiment.name.startswith("attnflow"):
            assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    image = client.get_run(first["tasks"][IMAGE]["run_id"])
    assert image.info.run_name.endswith("(trained)")
    assert any(key.startswith("system/cpu_utilization") for key in image.data.metrics)  # MLflow's system metrics
    translation = client.get_run(first["tasks"][TRANSLATION]["run_id"]).data.tags
    assert translation["test_bleu.signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_the_prefect_run_shows_the_results(pipeline_result):
    """The pipeline's flow run carries a table of every task's metrics, the promotions and links to MLflow."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    project, result = pipeline_result
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    flow_run_id = client.get_run(result["parent_run_id"]).data.tags["prefect_flow_run_id"]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))  # fmt: skip
    by_type = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    [table] = by_type["table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert table.key == "attnflow-results" and sorted(row["task"] for row in rows) == sorted(TASKS)
    image = next(row for row in rows if row["task"] == IMAGE)
    assert image["test_accuracy"] == round(result["tasks"][IMAGE]["test_accuracy"], 4)
    markdown = [artifact.data for artifact in by_type["markdown"]]  # Prefect stores a link as Markdown, [text](url)
    [promotions] = [text for text in markdown if text.startswith("# Promotion decisions")]
    assert "champion" in promotions and "first model" in promotions
    links = [text for text in markdown if text.startswith("[")]
    assert len(links) == 2 * len(TASKS)  # a run and a registered version each
    assert any(f"/runs/{result['tasks'][TEXT]['run_id']})" in link for link in links)
    subflows = [client.get_run(r["run_id"]).data.tags["prefect_flow_run_id"] for r in result["tasks"].values()]
    with get_client(sync_client=True) as prefect:
        training = prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=subflows)))  # fmt: skip
    progress = [artifact for artifact in training if artifact.type == "progress"]
    assert len(progress) == len(TASKS) and {float(artifact.data) for artifact in progress} == {100.0}


def test_cached_stage_results_are_stored_as_json(pipeline_result):
    """Prefect persists the cached stages' results as JSON (tasks/caching.py RESULT_SERIALIZER), never a pickle."""
    from prefect.settings import get_current_settings

    project, _ = pipeline_result
    storage = Path(get_current_settings().results.local_storage_path).expanduser()
    since = (project / ".dvc" / "config").stat().st_mtime  # written once, first: this project's results only
    records = [
        json.loads(path.read_bytes())
        for path in storage.iterdir()
        if path.name.startswith(CACHED_STAGES) and path.stat().st_mtime >= since
    ]
    assert len(records) >= 3 * len(TASKS)
    assert {record["metadata"]["serializer"]["type"] for record in records} == {"json"}
    assert all(isinstance(record["result"], str) and json.loads(record["result"]) for record in records)


def check_faithfulness_metrics(metrics: dict, method: str) -> None:
    """A method's deletion and insertion AUCs are probabilities' areas, and its gap is measured from random's."""
    assert 0 <= metrics[f"attn_deletion_auc.{method}"] <= 1
    assert 0 <= metrics[f"attn_insertion_auc.{method}"] <= 1
    assert metrics[f"attn_deletion_gap.{method}"] == pytest.approx(
        metrics["attn_deletion_auc.random"] - metrics[f"attn_deletion_auc.{method}"]
    )


def test_classifiers_explain_their_attention_with_scores_curves_and_viewer_examples(pipeline_result):
    """The explain stage's metrics for every method, its curves and the examples the viewer shows; localization
    where the evidence is known (built-in digits without clutter, built-in spoken words)."""
    from attn_models.attribution import METHODS
    from tasks.kinds.classification import Classifier

    project, result = pipeline_result
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    explained = [m for m in TASKS if get(KIND[m]).explainer and isinstance(get(KIND[m]), Classifier)]
    assert {TEXT, IMAGE, SPEECH} <= set(explained)
    for task in explained:
        run_id = result["tasks"][task]["run_id"]
        metrics = client.get_run(run_id).data.metrics
        for method in METHODS:
            check_faithfulness_metrics(metrics, method)
            if task in (IMAGE, SPEECH):  # text's needs the tiny model to predict a joined text's class
                assert f"attn_localization.{method}" in metrics
        files = {f.path for f in client.list_artifacts(run_id, "explain")}
        assert files == {"explain/curves.png", "explain/scores.json", "explain/examples.json", "explain/viewer.html"}
        examples = json.loads(Path(client.download_artifacts(run_id, "explain/examples.json")).read_text())
        assert examples["methods"] == list(METHODS) and len(examples["examples"]) == 2
        for example in examples["examples"]:
            tokens = len(example["maps"]["rollout"])
            assert set(example["maps"]) == set(METHODS)
            assert len(example["tokens"]) == tokens if task == TEXT else example["picture"]
            assert len(example["heads"][0][0]) == tokens


def test_sequence_tasks_explain_each_output_token_with_scores_curves_and_an_alignment_viewer(pipeline_result):
    """Translation and asr: every sequence method's faithfulness metrics; localization on the built-in translation
    phrases only (asr has no ground truth); an alignment (output tokens x source units) per method in the viewer."""
    from attn_models.sequence_attribution import SEQUENCE_METHODS
    from tasks.kinds.sequence import SequenceKind

    project, result = pipeline_result
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    explained = [m for m in TASKS if isinstance(get(KIND[m]), SequenceKind)]
    assert {TRANSLATION, ASR} <= set(explained) and all(get(KIND[m]).explainer for m in explained)
    for task in explained:
        run_id = result["tasks"][task]["run_id"]
        metrics = client.get_run(run_id).data.metrics
        for method in SEQUENCE_METHODS:
            check_faithfulness_metrics(metrics, method)
            assert metrics[f"attn_logprob_drop.{method}"] >= 0
            assert (f"attn_localization.{method}" in metrics) == (task == TRANSLATION)
            assert (f"attn_pointing.{method}" in metrics) == (task == TRANSLATION)
        files = {f.path for f in client.list_artifacts(run_id, "explain")}
        assert files == {"explain/curves.png", "explain/scores.json", "explain/examples.json", "explain/viewer.html"}
        examples = json.loads(Path(client.download_artifacts(run_id, "explain/examples.json")).read_text())
        assert examples["kind"] == "alignment" and examples["methods"] == list(SEQUENCE_METHODS)
        assert len(examples["examples"]) == 2
        for example in examples["examples"]:
            for method in SEQUENCE_METHODS:
                rows = example["maps"][method]
                assert len(rows) == len(example["output_tokens"]) and example["output_tokens"][-1] == "[EOS]"
                assert {len(row) for row in rows} == {len(example["source_tokens"])}
                assert all(sum(row) == pytest.approx(1, abs=1e-3) for row in rows)


def test_the_explain_table_lists_every_method_of_the_last_pipeline(pipeline_result):
    from benchmarks.explain_table import last_pipeline_runs, table

    project, _ = pipeline_result
    rows = table(last_pipeline_runs(MlflowClient(f"sqlite:///{project / 'mlflow.db'}"))).splitlines()[2:]
    assert len(rows) == 5 * len([m for m in SECOND_RUN_TASKS if get(KIND[m]).explainer])  # the second pipeline's
    assert all(row.count("|") == 9 for row in rows) and any(f"| {IMAGE} | gradient_attention |" in row for row in rows)
    assert any(f"| {TRANSLATION} | cross_attention |" in row for row in rows)


def test_every_task_compresses_and_its_champion_gets_a_compact_version(pipeline_result):
    """The compress stage's table, metrics, plot and decision on every run; the float row's metric is the evaluate
    stage's on the validation split (classifiers: accuracy; sequence tasks: greedy decoding); the first runs are
    champions, so each registered a `compact` version serving the chosen variant; the alias is on the champion's (the
    second run's, when it was better)."""
    from tasks.schema import VARIANTS

    project, result = pipeline_result
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    for task, run_result in result["tasks"].items():
        spec, run_id = get(KIND[task]), run_result["run_id"]
        run = client.get_run(run_id)
        metrics, tags = run.data.metrics, run.data.tags
        table = json.loads(Path(client.download_artifacts(run_id, "compress/variants.json")).read_text())
        assert table["metric"] == spec.compress_metric and [row["variant"] for row in table["variants"]] == list(
            VARIANTS
        )
        for row in table["variants"]:
            key = row["variant"].replace("+", "_")
            assert metrics[f"compress_metric.{key}"] == pytest.approx(row["metric"])
            assert row["size_mb"] > 0 and 0 < row["p50_ms_b1"] <= row["p95_ms_b1"]
            assert 0 < row["p50_ms_b32"] <= row["p95_ms_b32"]
            assert row["change"] == pytest.approx(row["metric"] - table["variants"][0]["metric"])
        assert metrics["compress_metric.float"] == pytest.approx(metrics[spec.compress_metric], abs=1e-9)
        files = {f.path for f in client.list_artifacts(run_id, "compress")}
        assert {"compress/variants.json", "compress/tradeoff.png", "compress/pruning.json"} <= files
        pruning = json.loads(Path(client.download_artifacts(run_id, "compress/pruning.json")).read_text())
        assert pruning["kept_heads"] and all(len(heads) == 1 for heads in pruning["kept_heads"].values())  # 1 of 2
        assert tags["compact_variant"] in VARIANTS and tags["compact_reason"].startswith(tags["compact_variant"] + " (")
        name = run_result["promotion"]["registered_model"]
        compact = client.get_model_version(name, tags["compact_version"])
        assert compact.run_id == run_id and tags["compact_variant"] in compact.description
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_model_version_by_alias(name, "compact").run_id == champion.run_id
        config = mlflow.models.get_model_info(f"models:/{name}/{compact.version}").flavors["python_function"]["config"]
        assert config["variant"] == tags["compact_variant"] and config["quantize"] == VARIANTS[config["variant"]][1]


def test_the_compress_table_lists_every_variant_of_the_last_pipeline(pipeline_result):
    from benchmarks.compress_table import table
    from benchmarks.explain_table import last_pipeline_runs
    from tasks.schema import VARIANTS

    project, _ = pipeline_result
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    rows = table(client, last_pipeline_runs(client, "compress_metric.float")).splitlines()[2:]
    assert len(rows) == len(VARIANTS) * len(SECOND_RUN_TASKS)  # the second pipeline's
    assert all(row.count("|") == 14 for row in rows)
    assert sum(row.endswith("| yes |") for row in rows) == len(SECOND_RUN_TASKS)  # one compact variant each
    assert any(row.startswith(f"| {TRANSLATION} | int8 |") and "eval_val_bleu_greedy" in row for row in rows)
