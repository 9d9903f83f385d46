"""The promotion rule, on the validation split: pure logic, a real registry with hand-made runs, the promote stage
with runs better on validation and worse on test, and the real pipeline's two runs."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tasks.kinds import get
from tasks.params import load_params
from tasks.tracking.registry import CHALLENGER, CHAMPION, Candidate, decide, register_and_promote
from tests.conftest import ASR, BUILTIN_TASKS, IMAGE, SECOND_RUN_TASKS, tiny_params, write_params

SAME, OTHER = "a" * 32, "b" * 32


@pytest.mark.parametrize(
    "new, champion, alias, reason",
    [
        (Candidate(0.8, SAME), None, CHAMPION, "first model"),
        (Candidate(0.9, SAME), Candidate(0.8, SAME), CHAMPION, "better on the same validation data"),
        (Candidate(0.7, SAME), Candidate(0.8, SAME), CHALLENGER, "worse on the same validation data"),
        (Candidate(0.8, SAME), Candidate(0.8, SAME), CHALLENGER, "equal on the same validation data"),
        (Candidate(0.99, OTHER), Candidate(0.5, SAME), CHALLENGER, "different validation data"),
    ],
)
def test_decide(new, champion, alias, reason):
    decision = decide(new, champion, "eval_val_bleu")
    assert decision.alias == alias and decision.reason.startswith(reason)
    assert f"eval_val_bleu {new.score:.4f}" in decision.reason
    if champion:
        assert f"{champion.score:.4f}" in decision.reason


@pytest.mark.parametrize(
    "new, champion, alias, reason",
    [
        (Candidate(0.10, SAME), Candidate(0.20, SAME), CHAMPION, "better on the same validation data (lower is"),
        (Candidate(0.30, SAME), Candidate(0.20, SAME), CHALLENGER, "worse on the same validation data (lower is"),
        (Candidate(0.20, SAME), Candidate(0.20, SAME), CHALLENGER, "equal on the same validation data"),
        (Candidate(0.01, OTHER), Candidate(0.20, SAME), CHALLENGER, "different validation data"),
    ],
)
def test_decide_when_lower_is_better(new, champion, alias, reason):
    """Error rates (WER): a lower score is the better model."""
    decision = decide(new, champion, "eval_val_wer", higher_is_better=False)
    assert decision.alias == alias and decision.reason.startswith(reason)


def test_runs_rank_best_first_in_the_metric_direction():
    class ErrorRate(type(get("image"))):
        metrics, higher_is_better = ("test_wer",), False

    scores = [0.3, None, 0.1, 0.2]
    assert sorted(scores, key=ErrorRate().rank_key) == [0.1, 0.2, 0.3, None]
    assert sorted(scores, key=get("image").rank_key) == [0.3, 0.2, 0.1, None]


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


def test_register_and_promote_moves_aliases_in_a_real_registry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())

    def new_run(accuracy: float, md5: str | None) -> str:
        run_id = client.create_run(experiment, tags={"val_data_md5": md5} if md5 else {}).info.run_id
        client.log_metric(run_id, "eval_val_accuracy" if md5 else "test_accuracy", accuracy)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name="serving", python_model=Constant(), pip_requirements=[])  # no inference
        return run_id

    # a champion from before validation figures were logged: a new model is not compared with it
    legacy = mlflow.register_model(f"runs:/{new_run(0.99, None)}/serving", "old").version
    client.set_registered_model_alias("old", CHAMPION, legacy)
    decision = register_and_promote(client, "old", new_run(0.1, SAME), "eval_val_accuracy")[1]
    assert decision.alias == CHALLENGER and "val_data_md5 aaaaaaaa vs champion's not reco" in decision.reason
    steps = [
        (0.5, SAME, CHAMPION, 1),
        (0.4, SAME, CHALLENGER, 1),
        (0.5, SAME, CHALLENGER, 1),
        (0.7, SAME, CHAMPION, 4),
        (0.9, OTHER, CHALLENGER, 4),
    ]
    for accuracy, md5, alias, champion_version in steps:
        run_id = new_run(accuracy, md5)
        version, decision, _ = register_and_promote(client, "m", run_id, "eval_val_accuracy")
        assert decision.alias == alias
        assert int(client.get_model_version_by_alias("m", CHAMPION).version) == champion_version
        assert client.get_model_version_by_alias("m", alias).version == version
        assert run_id == client.get_model_version("m", version).run_id
        run = client.get_run(run_id)
        assert run.data.tags["registered_version"] == str(version)
        assert run.data.tags["promotion"] == alias and run.data.tags["promotion_reason"] == decision.reason
        assert run.data.metrics["promotion_new_eval_val_accuracy"] == accuracy
    assert "different validation data" in decision.reason
    assert run.data.metrics["promotion_champion_eval_val_accuracy"] == 0.7


def promote_stage_runs(tmp_path, task: str, figures: list[tuple[float, float]]) -> list[dict]:
    """Runs of a task with the given (validation, test) figures of its primary metric, on the same validation and
    test data, each promoted in turn by the real promote stage (a Prefect task, into a real MLflow store in
    tmp_path); returns what the stage returned for each."""
    from tasks.stages.promote import promote_model
    from tasks.tracking.mlflow_tracking import connect

    params = load_params(write_params(tmp_path, tiny_params()))
    spec = params.kind(task)
    client, experiment = connect(tmp_path, params, task)
    results = []
    for val, test in figures:
        tags = {"task": task, "kind": spec.name, "val_data_md5": SAME, "test_data_md5": OTHER}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        client.log_metric(run_id, spec.val_metric, val)
        client.log_metric(run_id, spec.primary_metric, test)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name="serving", python_model=Constant(), pip_requirements=[])
        results.append({"run_id": run_id, **promote_model(task, params, tmp_path, run_id)})
    return results


def test_the_promote_stage_decides_on_validation_not_test(tmp_path, monkeypatch, prefect_server):
    """The second model is better on validation and worse on test: it becomes champion. The third is worse on
    validation and better on test: it stays a challenger. The test figures never decide."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second, third = promote_stage_runs(tmp_path, IMAGE, [(0.80, 0.90), (0.85, 0.70), (0.82, 0.99)])
    assert [r["alias"] for r in (first, second, third)] == [CHAMPION, CHAMPION, CHALLENGER]
    assert second["reason"].startswith("better on the same validation data (higher is better)")
    assert "eval_val_accuracy 0.8500 vs champion 0.8000" in second["reason"] and "0.70" not in second["reason"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(second["run_id"])
    assert run.data.metrics["promotion_new_eval_val_accuracy"] == 0.85
    assert run.data.metrics["promotion_champion_eval_val_accuracy"] == 0.80
    assert not any(name.startswith("promotion_") and "test" in name for name in run.data.metrics)
    name = second["registered_model"]
    assert client.get_model_version_by_alias(name, CHAMPION).run_id == second["run_id"]
    card = client.get_model_version(name, third["version"]).description
    assert "**Decided on**: validation (eval_val_accuracy): 0.8200" in card and "`test_accuracy` 0.9900" in card


def test_the_promote_stage_takes_the_lower_validation_error_rate(tmp_path, monkeypatch, prefect_server):
    """Speech recognition's WER: lower is better, on validation; the test WER (here the other way round) does not
    count."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not get("asr").higher_is_better and get("asr").val_metric == "eval_val_wer"
    first, second, third = promote_stage_runs(tmp_path, ASR, [(0.30, 0.20), (0.25, 0.40), (0.28, 0.10)])
    assert [r["alias"] for r in (first, second, third)] == [CHAMPION, CHAMPION, CHALLENGER]
    assert second["reason"].startswith("better on the same validation data (lower is better)")
    assert third["reason"].startswith("worse on the same validation data (lower is better)")


def test_pipeline_runs_promote_the_better_and_keep_the_worse_as_challenger(pipeline_runs):
    project, first, second = pipeline_runs
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client, params = MlflowClient(uri, registry_uri=uri), load_params(project / "params.yaml")
    assert set(second["tasks"]) == set(SECOND_RUN_TASKS)
    for task in BUILTIN_TASKS.values():
        name = first["tasks"][task]["promotion"]["registered_model"]
        champion = client.get_model_version_by_alias(name, CHAMPION)  # every task has one
        good = client.get_run(first["tasks"][task]["run_id"])
        assert good.data.tags["promotion"] == CHAMPION and good.data.tags["promotion_reason"].startswith("first model")
        if task not in SECOND_RUN_TASKS:
            assert champion.run_id == good.info.run_id
            continue
        metric = params.kind(task).val_metric
        worse = client.get_run(second["tasks"][task]["run_id"])
        scores = good.data.metrics[metric], worse.data.metrics[metric]
        better = scores[1] > scores[0] if params.kind(task).higher_is_better else scores[1] < scores[0]
        expected = CHAMPION if better else CHALLENGER  # the rule, whatever training gave
        assert worse.data.tags["promotion"] == expected
        assert client.get_model_version_by_alias(name, expected).run_id == worse.info.run_id
        assert champion.run_id == (worse if expected == CHAMPION else good).info.run_id
        assert worse.data.tags["champion_version_before"] == "1"
        assert worse.data.metrics[f"promotion_champion_{metric}"] == scores[0]
        assert f"{metric} {scores[1]:.4f}" in worse.data.tags["promotion_reason"]
        assert client.get_model_version_by_alias(name, "compact").run_id == champion.run_id  # compact follows it
        registration = worse.data.tags["compact_registration"]
        assert registration.startswith("registered" if expected == CHAMPION else "not registered: the model it")
    image = client.get_run(second["tasks"][IMAGE]["run_id"])  # designed to be clearly worse
    assert image.data.tags["promotion"] == CHALLENGER
    assert image.data.tags["promotion_reason"].startswith("worse on the same validation data")
