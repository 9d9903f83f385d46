"""Issue 32, end to end: tasks are named by the user, and the name, not the kind, picks the data folder, the MLflow
experiment, the registered model and what `attnflow model serve --task` serves.

The project holds two text tasks and one image task. One text task is built in (language-id). The other
(sentiment) is imported from a CSV written here, with labels of its own. `attnflow run` trains the three, in one
pipeline run on the session's Prefect server.
"""

import copy
import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from tasks.data.datasets import read_text_csv
from tasks.errors import EXIT_INVALID
from tests.conftest import IMAGE, TEXT, tiny_params, write_params
from tests.test_cli import assert_one_line_error, attnflow
from tests.test_import import tree_digest, write_rows
from tests.test_model_server import TOKEN, call, served_command

IMPORTED = "sentiment"
KINDS = {TEXT: "text", IMPORTED: "text", IMAGE: "image"}  # the project's tasks, by name
WORDS = {  # each label's words: none shared, so the labels are learnable
    "happy": ["great", "lovely", "wonderful", "sunny", "delight"],
    "sad": ["gloomy", "tears", "lonely", "grey", "sorrow"],
    "angry": ["furious", "rage", "shouting", "slammed", "outrage"],
}


def sentiment_csv(path, rows_per_label: int = 12):
    """A CSV with a header (text, label), rows_per_label rows of each label, each text 3 to 6 of its label's words."""
    rng = np.random.default_rng(0)
    rows = [
        [" ".join(rng.choice(words, rng.integers(3, 7))), label]
        for label, words in WORDS.items()
        for _ in range(rows_per_label)
    ]  # fmt: skip
    return write_rows(path, [["text", "label"], *rows])


def named_tasks_params() -> dict:
    """tiny_params with a second text task, sentiment (language-id's settings, its data imported from
    sentiment.csv), selecting the two text tasks and the image task."""
    params = tiny_params()
    section = copy.deepcopy(params["tasks"][TEXT])
    section["data"] = {"import_from": {"path": "sentiment.csv", "val_fraction": 0.2, "test_fraction": 0.2}}
    params["tasks"][IMPORTED] = section
    params["global"]["tasks"] = list(KINDS)
    return params


def text_request(texts: list[str]) -> str:
    return json.dumps({"dataframe_records": [{"text": text} for text in texts]})


def served_answers(project, tmp_path, task: str, texts: list[str]) -> tuple[list[dict], dict]:
    """What `attnflow model serve --task <task>` answers to texts, and what its /version says it serves."""
    return served_records(project, tmp_path, task, [{"text": text} for text in texts])


def served_records(project, tmp_path, task: str, records: list[dict]) -> tuple[list[dict], dict]:
    """What `attnflow model serve --task <task>` answers to records (one input each, e.g. {"audio": ...}), and
    what its /version says it serves."""
    with served_command(project, tmp_path, task=task) as port:
        status, body = call(port, "/invocations", json.dumps({"dataframe_records": records}), token=TOKEN)
        assert status == 200, body
        status, version = call(port, "/version", token=TOKEN)
        assert status == 200, version
    return json.loads(body)["predictions"], json.loads(version)


@pytest.mark.slow  # a pipeline run of three tasks and two served models: 2 to 4 minutes on 2 cores
def test_each_named_task_has_its_own_data_experiment_model_and_server(tiny_project, prefect_server, tmp_path, capsys):
    sentiment_csv(tiny_project / "sentiment.csv")
    params_path = write_params(tiny_project, named_tasks_params())
    assert main(["run", "--params", str(params_path)]) == 0, capsys.readouterr().err

    data = tiny_project / "data"
    assert sorted(path.name for path in data.iterdir() if path.is_dir()) == sorted(KINDS)  # no folder per kind
    digests = {task: tree_digest(data / task) for task in KINDS}
    assert all(digests.values()) and len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 3
    for split in ("train", "val", "test"):
        texts, labels = read_text_csv(data / IMPORTED / f"{split}.csv")
        assert texts and set(labels) <= set(WORDS), split
        assert not set(labels) & set(read_text_csv(data / TEXT / f"{split}.csv")[1])

    uri = f"sqlite:///{tiny_project / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    task_runs = {}
    for task, kind in KINDS.items():
        experiment = client.get_experiment_by_name(f"attnflow-{task}")
        assert experiment is not None, [e.name for e in client.search_experiments()]
        [run] = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        assert (run.data.tags["task"], run.data.tags["kind"]) == (task, kind)
        task_runs[task] = run.info.run_id
        champion = client.get_model_version_by_alias(f"attnflow-{task}", "champion")
        assert champion.run_id == run.info.run_id, task
    experiments = {e.name for e in client.search_experiments()}
    assert {f"attnflow-{task}" for task in KINDS} <= experiments
    assert not experiments & {f"attnflow-{kind}" for kind in KINDS.values()}
    assert {m.name for m in client.search_registered_models()} == {f"attnflow-{task}" for task in KINDS}

    asked = ["what a lovely sunny day", "tears and sorrow", "he slammed the door in rage"]
    answers, version = served_answers(tiny_project, tmp_path, IMPORTED, asked)
    assert (version["task"], version["kind"], version["run_id"]) == (IMPORTED, "text", task_runs[IMPORTED])
    assert len(answers) == 3
    for answer in answers:
        assert answer["label"] in WORDS and set(answer["probabilities"]) == set(WORDS)

    languages = {locale.split("_")[0] for locale in tiny_params()["tasks"][TEXT]["data"]["builtin"]["locales"]}
    answers, version = served_answers(tiny_project, tmp_path, TEXT, asked)
    assert (version["task"], version["kind"], version["run_id"]) == (TEXT, "text", task_runs[TEXT])
    for answer in answers:
        assert answer["label"] in languages and set(answer["probabilities"]) == languages


@pytest.mark.integration  # the command line, run in its own process as a user runs it
@pytest.mark.parametrize("command", [["run"], ["model", "serve"]])
def test_an_unknown_task_is_one_line_naming_the_tasks_before_anything_runs(tmp_path, command):
    write_params(tmp_path, named_tasks_params())
    result = attnflow(tmp_path, *command, "--task", "nope", timeout=120)
    assert_one_line_error(result, EXIT_INVALID, "unknown task 'nope'", f"{TEXT}, {IMAGE}", IMPORTED)
    assert not (tmp_path / ".prefect" / "temporary-server.log").exists()  # no server was started
    assert not (tmp_path / "mlflow.db").exists()  # nor a store created
