"""The promotion rule: pure logic, a real registry with hand-made runs, and the real pipeline's two runs."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tasks.kinds import get
from tasks.params import load_params
from tasks.tracking.registry import CHALLENGER, CHAMPION, Candidate, decide, register_and_promote
from tests.conftest import BUILTIN_TASKS, IMAGE, SECOND_RUN_TASKS

SAME, OTHER = "a" * 32, "b" * 32


@pytest.mark.parametrize(
    "new, champion, alias, reason",
    [
        (Candidate(0.8, SAME), None, CHAMPION, "first model"),
        (Candidate(0.9, SAME), Candidate(0.8, SAME), CHAMPION, "better on the same test data"),
        (Candidate(0.7, SAME), Candidate(0.8, SAME), CHALLENGER, "worse on the same test data"),
        (Candidate(0.8, SAME), Candidate(0.8, SAME), CHALLENGER, "equal on the same test data"),
        (Candidate(0.99, OTHER), Candidate(0.5, SAME), CHALLENGER, "different test data"),
    ],
)
def test_decide(new, champion, alias, reason):
    decision = decide(new, champion, "test_bleu")
    assert decision.alias == alias and decision.reason.startswith(reason)
    assert f"test_bleu {new.score:.4f}" in decision.reason
    if champion:
        assert f"{champion.score:.4f}" in decision.reason


@pytest.mark.parametrize(
    "new, champion, alias, reason",
    [
        (Candidate(0.10, SAME), Candidate(0.20, SAME), CHAMPION, "better on the same test data (lower is better)"),
        (Candidate(0.30, SAME), Candidate(0.20, SAME), CHALLENGER, "worse on the same test data (lower is better)"),
        (Candidate(0.20, SAME), Candidate(0.20, SAME), CHALLENGER, "equal on the same test data"),
        (Candidate(0.01, OTHER), Candidate(0.20, SAME), CHALLENGER, "different test data"),
    ],
)
def test_decide_when_lower_is_better(new, champion, alias, reason):
    """Error rates (WER): a lower score is the better model."""
    decision = decide(new, champion, "test_wer", higher_is_better=False)
    assert decision.alias == alias and decision.reason.startswith(reason)


def test_runs_rank_best_first_in_the_metric_direction():
    from tasks.kinds.base import Kind

    class ErrorRate(Kind):
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

    def new_run(accuracy: float, md5: str) -> str:
        run_id = client.create_run(experiment, tags={"test_data_md5": md5}).info.run_id
        client.log_metric(run_id, "test_accuracy", accuracy)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name="serving", python_model=Constant(), pip_requirements=[])  # no inference
        return run_id

    steps = [
        (0.5, SAME, CHAMPION, 1),
        (0.4, SAME, CHALLENGER, 1),
        (0.5, SAME, CHALLENGER, 1),
        (0.7, SAME, CHAMPION, 4),
        (0.9, OTHER, CHALLENGER, 4),
    ]
    for accuracy, md5, alias, champion_version in steps:
        run_id = new_run(accuracy, md5)
        version, decision, _ = register_and_promote(client, "m", run_id, "test_accuracy")
        assert decision.alias == alias
        assert int(client.get_model_version_by_alias("m", CHAMPION).version) == champion_version
        assert client.get_model_version_by_alias("m", alias).version == version
        assert run_id == client.get_model_version("m", version).run_id
        run = client.get_run(run_id)
        assert run.data.tags["registered_version"] == str(version)
        assert run.data.tags["promotion"] == alias and run.data.tags["promotion_reason"] == decision.reason
        assert run.data.metrics["promotion_new_test_accuracy"] == accuracy
    assert "different test data" in decision.reason
    assert run.data.metrics["promotion_champion_test_accuracy"] == 0.7


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
        metric = params.kind(task).primary_metric
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
    assert image.data.tags["promotion_reason"].startswith("worse on the same test data")
