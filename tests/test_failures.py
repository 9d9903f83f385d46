"""A task that really fails (a corrupt test image) is FAILED in MLflow with its error and traceback,
the other tasks still finish, and the flow run fails naming it; nothing is left RUNNING."""

from pathlib import Path

from mlflow.tracking import MlflowClient

from flows.pipeline import attention_pipeline
from tasks.caching import call_cached
from tasks.params import load_params
from tasks.stages.prepare import data_recipe, prepare_data
from tests.conftest import IMAGE, TEXT, TRANSLATION, tiny_params, write_params


def test_a_failing_task_is_failed_in_mlflow_and_the_others_finish(tiny_project, prefect_server):
    edit = tiny_params()
    edit["global"]["tasks"] = RUN = [TEXT, IMAGE, TRANSLATION]  # a classifier, the broken one, a sequence task
    params_path = write_params(tiny_project, edit)
    params = load_params(params_path)
    call_cached(
        prepare_data,
        force=False,
        outputs_exist=lambda recipe: True,
        task=IMAGE,
        params=params,
        root=tiny_project,
        recipe=data_recipe(IMAGE, params, tiny_project),
    )  # as the pipeline calls it
    # then one file broken
    broken = sorted((tiny_project / "data" / IMAGE / "test").rglob("*.png"))[0]
    broken.write_bytes(b"not an image")

    state = attention_pipeline(params_path=str(params_path), return_state=True)

    assert state.is_failed() and f"tasks failed: {IMAGE}" in state.message
    client = MlflowClient(f"sqlite:///{tiny_project / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]  # pipeline + per task
    [parent] = client.search_runs(experiments, f"tags.prefect_flow_run_id = '{state.state_details.flow_run_id}'")
    assert parent.info.status == "FAILED" and f"tasks failed: {IMAGE}" in parent.data.tags["error"]
    children = {
        run.data.tags["task"]: run
        for run in client.search_runs(experiments, f"tags.pipeline_run_id = '{parent.info.run_id}'")
    }
    assert {m: r.info.status for m, r in children.items()} == {m: "FINISHED" for m in RUN} | {IMAGE: "FAILED"}
    image = children[IMAGE]
    assert "UnidentifiedImageError" in image.data.tags["error"]
    traceback = Path(client.download_artifacts(image.info.run_id, "error_traceback.txt")).read_text()
    assert broken.name in traceback and "Traceback" in traceback
    assert not client.search_runs(experiments, "attributes.status = 'RUNNING'")
