"""What makes a cached result valid in another clone (tasks/caching.py): keys that name the MLflow store, not the
project's folder; checkpoints named relative to the project; trained files fetched from the run that logged them.
No Prefect server: the keys are computed directly, the files go through a real local MLflow store."""

import logging

import pytest
from mlflow.tracking import MlflowClient

from tasks.names import CHECKPOINT, TOKENIZER
from tasks.params import Params
from tasks.stages.prepare import builtin_recipe
from tasks.stages.train import STAGE
from tasks.tracking.checkpoints import checkpoint_path, fetch_trained, log_trained, relative_checkpoint
from tests.conftest import TEXT, tiny_params

LOGGER = logging.getLogger("test")


def train_key(root, params) -> str:
    inputs = {"task": TEXT, "params": params, "root": root, "data_recipe": builtin_recipe(TEXT, params)}
    return STAGE.cache_key(None, inputs)


def test_clones_sharing_an_mlflow_store_share_keys_and_projects_on_their_own_stores_do_not(tmp_path, monkeypatch):
    params = Params.model_validate(tiny_params())
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train_key(first, params) != train_key(second, params)  # sqlite:///<project>/mlflow.db each
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:secret@mlflow.example/")
    assert train_key(first, params) == train_key(second, params)
    shared = train_key(first, params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:rotated@mlflow.example/")
    assert train_key(first, params) == shared  # the same store, whatever its password
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://other.example/")
    assert train_key(first, params) != shared


def test_a_train_result_names_its_checkpoint_relative_to_the_project(tmp_path):
    root = tmp_path / "project"
    trained = {"checkpoint": relative_checkpoint(root, root / "outputs" / "abc"), "run_id": "abc"}
    assert trained["checkpoint"] == f"outputs/abc/{CHECKPOINT}"
    assert checkpoint_path(tmp_path / "clone", trained) == tmp_path / "clone" / "outputs" / "abc" / CHECKPOINT
    old = {"checkpoint": str(root / "outputs" / "abc" / CHECKPOINT)}  # a result from before: an absolute path
    assert checkpoint_path(tmp_path / "clone", old) == root / "outputs" / "abc" / CHECKPOINT


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local MLflow store (one for the module: making its database takes seconds) and an experiment in it."""
    folder = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return client, client.create_experiment("e", artifact_location=(folder / "artifacts").as_uri())


def test_a_clone_without_the_trained_files_fetches_them_from_the_run(tmp_path, store):
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    out_dir = origin / "outputs" / run_id
    out_dir.mkdir(parents=True)
    (out_dir / CHECKPOINT).write_bytes(b"weights")
    (out_dir / TOKENIZER).write_text("{}")
    log_trained(client, run_id, out_dir)
    trained = {"checkpoint": relative_checkpoint(origin, out_dir), "run_id": run_id}

    assert fetch_trained(client, clone, trained, LOGGER)
    assert (clone / "outputs" / run_id / CHECKPOINT).read_bytes() == b"weights"
    assert (clone / "outputs" / run_id / TOKENIZER).read_text() == "{}"  # what loads beside it
    assert [path.name for path in (clone / "outputs").iterdir()] == [run_id]  # no scratch folder left


def test_a_run_without_the_trained_files_means_training_again(tmp_path, store, caplog):
    client, experiment = store
    run_id = client.create_run(experiment).info.run_id  # trained before the files were logged
    trained = {"checkpoint": f"outputs/{run_id}/{CHECKPOINT}", "run_id": run_id}
    with caplog.at_level(logging.WARNING):
        assert not fetch_trained(client, tmp_path / "clone", trained, LOGGER)
    assert "cannot be fetched" in caplog.text and "training again" in caplog.text
    assert not (tmp_path / "clone" / "outputs" / run_id).exists()


def test_a_backbone_with_other_files_under_the_same_path_trains_anew(tmp_path):
    from tests.hf_models import save_tiny_bert
    from tests.test_pretrained_pipeline import backbone_params

    source = save_tiny_bert(tmp_path / "bert", seed=0)
    params = Params.model_validate(backbone_params(str(source)))
    before = train_key(tmp_path, params)
    assert train_key(tmp_path, params) == before
    save_tiny_bert(source, seed=1)  # other weights, the same folder: params.yaml does not change
    assert train_key(tmp_path, params) != before
