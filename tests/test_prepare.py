"""The prepare stage builds data/<task> from its recipe, atomically, and only when the recipe changed."""

from prefect import flow

from tasks.params import load_params
from tasks.stages.prepare import builtin_recipe, data_recipe, dataset_matches, prepare_data, read_recipe
from tests.conftest import IMAGE, SPEECH


@flow
def prepare(task, params, root):
    return prepare_data.fn(task, params, root, data_recipe(task, params, root))  # the body, no cache


def test_a_dataset_is_rebuilt_only_when_its_recipe_changes(tiny_project, prefect_server):
    params = load_params(tiny_project / "params.yaml")
    for task in (SPEECH, IMAGE):
        recipe = prepare(task, params, tiny_project)
        assert recipe == builtin_recipe(task, params) == read_recipe(tiny_project / "data" / task)
        assert dataset_matches(tiny_project, recipe)  # tuples in the params compare equal to JSON lists

    marker = tiny_project / "data" / SPEECH / "yes" / "untouched"
    marker.write_text("")
    prepare(SPEECH, params, tiny_project)
    assert marker.exists()  # same recipe: nothing rebuilt

    changed = params.model_copy(update={"global_": params.global_.model_copy(update={"seed": 7})})
    prepare(SPEECH, changed, tiny_project)
    assert not marker.exists()  # new recipe: rebuilt and swapped in whole
    assert read_recipe(tiny_project / "data" / SPEECH)["arguments"]["seed"] == 7
    assert not any((tiny_project / ".attnflow-tmp").iterdir())  # no scratch left behind
