"""Every import layout docs/reference/import-layouts.md documents, on tiny files made here, through params.yaml as a
user writes it: split files or folders given, or the missing splits carved from train. Each case checks the split sizes.

The expected sizes follow the carving rule (tasks/data/importers.py): per class (stratified), or per speaker for
speech, round(n * fraction) examples go to each missing split, test first, always keeping one for train.
"""

import pytest

from tasks.data.importers import DataImportError
from tasks.params import load_params
from tasks.stages.prepare import import_data
from tests.conftest import IMAGE, SPEECH, TEXT, TRANSLATION, tiny_params, write_params
from tests.test_import import make_png, make_wav, write_lines, write_rows

LABELS = ("a", "b", "c")


def imported(tmp_path, task: str, import_from: dict) -> dict:
    """Import through the params file, as the prepare stage does; returns the examples per split."""
    params = tiny_params()
    params["tasks"][task]["data"]["import_from"] = {"val_fraction": 0.2, "test_fraction": 0.2, **import_from}
    loaded = load_params(write_params(tmp_path, params))
    return import_data(task, loaded, tmp_path, tmp_path / "out")["splits"]


# ---- text -------------------------------------------------------------------------------------
def text_file(path, rows: int, delimiter: str = ",", header=("text", "label")):
    """rows per label (a, b, c), with a header unless it is None."""
    body = [[f"{label} words number {i}", label] for label in LABELS for i in range(rows)]
    return write_rows(path, ([list(header)] if header else []) + body, delimiter)


def test_text_train_val_and_test_files(tmp_path):
    for name, rows in (("train", 10), ("dev", 3), ("test", 4)):
        text_file(tmp_path / f"{name}.csv", rows)
    assert imported(
        tmp_path, TEXT, {"path": "train.csv", "val": {"path": "dev.csv"}, "test": {"path": "test.csv"}}
    ) == {"train": 30, "val": 9, "test": 12}


def test_text_train_and_test_files_val_carved(tmp_path):
    text_file(tmp_path / "train.csv", 10)
    text_file(tmp_path / "test.csv", 4)
    assert imported(tmp_path, TEXT, {"path": "train.csv", "test": {"path": "test.csv"}}) == {
        "train": 24,
        "val": 6,
        "test": 12,
    }


def test_text_one_file_both_carved(tmp_path):
    text_file(tmp_path / "all.csv", 10)
    assert imported(tmp_path, TEXT, {"path": "all.csv"}) == {"train": 18, "val": 6, "test": 6}


def test_text_folder_of_split_files(tmp_path):
    (tmp_path / "news").mkdir()
    for name, rows in (("train", 10), ("val", 3), ("test", 4)):
        text_file(tmp_path / "news" / f"{name}.csv", rows)
    assert imported(tmp_path, TEXT, {"path": "news"}) == {"train": 30, "val": 9, "test": 12}


def test_text_folder_with_train_only_carves_both(tmp_path):
    (tmp_path / "news").mkdir()
    text_file(tmp_path / "news" / "train.tsv", 10, "\t")
    assert imported(tmp_path, TEXT, {"path": "news", "layout": "tsv"}) == {"train": 18, "val": 6, "test": 6}


def test_tsv_split_files_inherit_layout_header_and_columns(tmp_path):
    header = ("id", "label", "content")
    for name, rows in (("train", 10), ("dev", 3), ("test", 4)):
        body = [[str(i), label, f"{label} words {i}"] for label in LABELS for i in range(rows)]
        write_rows(tmp_path / f"{name}.tsv", [list(header), *body], "\t")
    import_from = {
        "path": "train.tsv",
        "layout": "tsv",
        "text_columns": ["content"],
        "label_column": "label",
        "val": {"path": "dev.tsv"},
        "test": {"path": "test.tsv"},
    }
    assert imported(tmp_path, TEXT, import_from) == {"train": 30, "val": 9, "test": 12}
    params = tiny_params()
    params["tasks"][TEXT]["data"]["import_from"] = import_from
    test_file = load_params(write_params(tmp_path, params)).task(TEXT).data.import_from.test
    assert (test_file.layout, test_file.has_header, test_file.text_columns, test_file.label_column) == (
        "tsv",
        True,
        ["content"],
        "label",
    )


def test_a_split_file_can_set_its_own_layout(tmp_path):
    """AG News: a headerless TSV to train on, a CSV with a header to test on."""
    text_file(tmp_path / "train.tsv", 10, "\t", header=None)
    text_file(tmp_path / "test.csv", 4, header=("description", "class"))
    assert imported(
        tmp_path,
        TEXT,
        {
            "path": "train.tsv",
            "layout": "tsv",
            "has_header": False,
            "text_columns": [0],
            "label_column": 1,
            "test": {
                "path": "test.csv",
                "layout": "csv",
                "has_header": True,
                "text_columns": ["description"],
                "label_column": "class",
            },
        },
    ) == {"train": 24, "val": 6, "test": 12}


@pytest.mark.parametrize(
    "layout, delimiter, hint",
    [
        ("csv", "\t", "it looks tab-separated: set layout: tsv"),
        ("tsv", ",", "it looks comma-separated: set layout: csv"),
    ],
)
def test_the_wrong_layout_is_named(tmp_path, layout, delimiter, hint):
    text_file(tmp_path / "train.txt", 10, delimiter)
    with pytest.raises(DataImportError, match=f"train.txt: missing column.*{hint}"):
        imported(tmp_path, TEXT, {"path": "train.txt", "layout": layout})
    text_file(tmp_path / "plain.txt", 10, delimiter, header=None)
    with pytest.raises(DataImportError, match=f"plain.txt, row 1: missing column.*{hint}"):
        imported(
            tmp_path,
            TEXT,
            {"path": "plain.txt", "layout": layout, "has_header": False, "text_columns": [0], "label_column": 1},
        )


# ---- images -----------------------------------------------------------------------------------
def image_tree(root, splits: dict[str | None, int]):
    """Per split folder (None: no split folder) `count` PNGs per class."""
    for split, count in splits.items():
        for c, label in enumerate(LABELS):
            for i in range(count):
                make_png(
                    root.joinpath(*([split] if split else []), label, f"{split}{label}{i}.png"), seed=c * 50 + i, size=4
                )
    return root


def image_manifest(root, splits: list[str] | None, per_class: int = 10, name: str = "labels.csv"):
    rows = [["file", "label", *(["split"] if splits else [])]]
    for c, label in enumerate(LABELS):
        for i in range(per_class):
            make_png(root / "img" / f"{label}{i}.png", seed=c * 50 + i, size=4)
            rows.append([f"img/{label}{i}.png", label, *([splits[i % len(splits)]] if splits else [])])
    return write_rows(root / name, rows, "\t" if name.endswith(".tsv") else ",")


@pytest.mark.parametrize(
    "splits, expected",
    [
        ({"train": 5, "val": 2, "test": 3}, {"train": 15, "val": 6, "test": 9}),
        ({"train": 5, "dev": 2, "test": 3}, {"train": 15, "val": 6, "test": 9}),  # dev, validation, valid: val
        ({"train": 10, "test": 3}, {"train": 24, "val": 6, "test": 9}),
        ({None: 10}, {"train": 18, "val": 6, "test": 6}),
    ],
    ids=["train-val-test", "train-dev-test", "train-test", "no-split-folders"],
)
def test_image_folders(tmp_path, splits, expected):
    image_tree(tmp_path / "pics", splits)
    assert imported(tmp_path, IMAGE, {"path": "pics"}) == expected


@pytest.mark.parametrize(
    "splits, expected",
    [
        (["train", "train", "train", "val", "test"], {"train": 18, "val": 6, "test": 6}),
        (["train", "train", "train", "train", "test"], {"train": 18, "val": 6, "test": 6}),  # val carved from 24
        (None, {"train": 18, "val": 6, "test": 6}),
    ],
    ids=["split-column", "split-column-without-val", "no-split-column"],
)
def test_image_manifest(tmp_path, splits, expected):
    image_manifest(tmp_path / "src", splits)
    split_column = {"split_column": "split"} if splits else {}
    assert (
        imported(tmp_path, IMAGE, {"path": "src/labels.csv", "layout": "csv", "image_column": "file", **split_column})
        == expected
    )


def test_a_manifest_may_be_tab_separated(tmp_path):
    image_manifest(tmp_path / "src", None, name="labels.tsv")
    split = imported(tmp_path, IMAGE, {"path": "src/labels.tsv", "layout": "csv", "image_column": "file"})
    assert split == {"train": 18, "val": 6, "test": 6}


# ---- speech -----------------------------------------------------------------------------------
WORDS, SPEAKERS = ("yes", "no"), 10


def speech_commands(root, lists: dict[str, list[int]]):
    """Every word by every speaker; lists: list file name -> the speakers it names."""
    for w, word in enumerate(WORDS):
        for s in range(SPEAKERS):
            make_wav(root / word / f"spk{s}_nohash_0.wav", seed=w * 50 + s, seconds=0.05)
    for name, speakers in lists.items():
        (root / name).write_text("".join(f"{word}/spk{s}_nohash_0.wav\n" for word in WORDS for s in speakers))
    return root


@pytest.mark.parametrize(
    "lists, expected",
    [
        ({"validation_list.txt": [0, 1], "testing_list.txt": [2, 3, 4]}, {"train": 10, "val": 4, "test": 6}),
        ({"testing_list.txt": [2, 3, 4]}, {"train": 12, "val": 2, "test": 6}),  # round(7 * 0.2) of the 7 others
        ({}, {"train": 12, "val": 4, "test": 4}),
    ],
    ids=["both-lists", "testing-list-only", "no-lists"],
)
def test_speech_commands_folder(tmp_path, lists, expected):
    speech_commands(tmp_path / "sc", lists)
    assert imported(tmp_path, SPEECH, {"path": "sc"}) == expected


@pytest.mark.parametrize("with_split", [True, False], ids=["split-column", "no-split-column"])
def test_speech_manifest(tmp_path, with_split):
    rows = [["clip", "word", *(["part"] if with_split else [])]]
    for w, word in enumerate(WORDS):
        for s in range(SPEAKERS):
            make_wav(tmp_path / "src" / "wav" / f"{word}-spk{s}_nohash_0.wav", seed=w * 50 + s, seconds=0.05)
            part = "test" if s < 3 else "validation" if s < 5 else "train"
            rows.append([f"wav/{word}-spk{s}_nohash_0.wav", word, *([part] if with_split else [])])
    write_rows(tmp_path / "src" / "clips.csv", rows)
    split_column = {"split_column": "part"} if with_split else {}
    # without a split column the speakers are "yes-spk0" ...: 20 of them, 4 each to test and val
    expected = {"train": 10, "val": 4, "test": 6} if with_split else {"train": 12, "val": 4, "test": 4}
    assert (
        imported(
            tmp_path,
            SPEECH,
            {"path": "src/clips.csv", "layout": "csv", "audio_column": "clip", "label_column": "word", **split_column},
        )
        == expected
    )


# ---- translation ------------------------------------------------------------------------------
def parallel(root, stems: dict[str, int]):
    for stem, count in stems.items():
        write_lines(root / f"{stem}.de", [f"Satz {stem} {i}." for i in range(count)])
        write_lines(root / f"{stem}.en.gz", [f"Sentence {stem} {i}." for i in range(count)])
    return root


@pytest.mark.parametrize(
    "stems, splits, expected",
    [
        (
            {"train": 20, "dev": 4, "newstest": 5},
            {"train": "train", "val": "dev", "test": "newstest"},
            {"train": 20, "val": 4, "test": 5},
        ),
        ({"train": 20, "dev": 4}, {"train": "train", "val": "dev"}, {"train": 16, "val": 4, "test": 4}),
        ({"corpus": 20}, {"train": "corpus"}, {"train": 12, "val": 4, "test": 4}),
    ],
    ids=["train-val-test", "train-val", "train-only"],
)
def test_parallel_files(tmp_path, stems, splits, expected):
    parallel(tmp_path / "corpus", stems)
    assert (
        imported(tmp_path, TRANSLATION, {"path": "corpus", "source_lang": "de", "target_lang": "en", "splits": splits})
        == expected
    )
