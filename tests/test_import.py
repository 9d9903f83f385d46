"""Bring your own data: data.import_from imports image, speech, text and translation data into the built-in layouts,
checks it,
and on bad data stops with the file (and row) named, leaving data/ and data.dvc as they were."""

import csv
import gzip
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from PIL import Image
from prefect import flow

from tasks.caching import call_cached
from tasks.data.datasets import read_parallel, read_text_csv, train_tokenizer
from tasks.data.importers import (
    DataImportError,
    import_images,
    import_speech,
    import_text,
    import_translation,
    source_fingerprint,
)
from tasks.kinds import get
from tasks.params import ParamsError, load_params
from tasks.stages.prepare import data_recipe, prepare_data, read_recipe
from tasks.stages.version import version_data
from tests.conftest import BUILTIN_TASKS, IMAGE, REPO, SPEECH, TEXT, TRANSLATION, tiny_params, write_params

SHARED = REPO.parent / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent (real datasets beside the checkout)")


# ---- tiny data made here ----------------------------------------------------------------------
def make_png(path: Path, seed: int, size: int = 10, suffix_format: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=suffix_format)
    return path


def make_wav(path: Path, seed: int, rate: int = 8000, channels: int = 2, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (int(rate * seconds), channels))
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def image_folders(root: Path, classes=("cat", "dog"), train=6, test=2) -> Path:
    for c, name in enumerate(classes):
        for i in range(train):
            make_png(root / "train" / name / f"{name}{i}.png", seed=10 * c + i)
        for i in range(test):
            make_png(root / "test" / name / f"t{name}{i}.jpg", seed=100 + 10 * c + i, suffix_format="JPEG")
    return root


def speech_folder(root: Path, words=("yes", "no"), speakers=6) -> Path:
    for w, word in enumerate(words):
        for s in range(speakers):
            make_wav(root / word / f"spk{s}_nohash_0.wav", seed=10 * w + s)
    (root / "_background_noise_").mkdir()
    make_wav(root / "_background_noise_" / "noise.wav", seed=99)
    (root / "testing_list.txt").write_text("".join(f"{word}/spk0_nohash_0.wav\n" for word in words))
    return root


def write_rows(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


def text_rows(n=8):
    return [[f"title {label} {i}", f"body words {i}", label] for label in ("a", "b", "c") for i in range(n)]


def write_lines(path: Path, lines: list[str]) -> Path:
    """One sentence a line, UTF-8; gzipped when the name ends in .gz."""
    data = "".join(line + "\n" for line in lines).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def parallel_folder(root: Path, pairs=12) -> Path:
    """train gzipped, val plain, no test split (it is carved from train)."""
    write_lines(root / "train.de.gz", [f"Ein Hund Nummer {i} läuft." for i in range(pairs)])
    write_lines(root / "train.en.gz", [f"Dog number {i} runs." for i in range(pairs)])
    write_lines(root / "val.de", ["Eine Katze schläft.", "Zwei Männer  sitzen\t draußen. "])
    write_lines(root / "val.en", ["A cat sleeps.", "Two men sit outside."])
    return root


TRANSLATION_FILES = {"source_lang": "de", "target_lang": "en", "splits": {"train": "train", "val": "val"}}


def tree_digest(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def section(kind: str):
    """The section of the built-in task of a kind."""
    return load_params(REPO / "params.yaml").task(BUILTIN_TASKS[kind])


# ---- each layout --------------------------------------------------------------------------------
def test_image_folders_missing_val_is_carved_and_loads(tmp_path):
    source = image_folders(tmp_path / "src")
    (tmp_path / "src" / "train" / "cat" / "notes.txt").write_text("not an image: skipped by suffix")
    out = tmp_path / "out"
    summary = import_images(source, out, seed=3)
    assert summary["splits"] == {"train": 10, "val": 2, "test": 4}
    assert {p.suffix for p in out.rglob("*") if p.is_file()} == {".png"}
    assert sorted(p.name for p in (out / "test" / "dog").iterdir()) == ["tdog0.png", "tdog1.png"]
    splits = get("image").load_splits(out, section("image"), 0, None)
    assert splits.class_names == ["cat", "dog"] and splits.train[0][0].shape == (1, 32, 32)
    again = tmp_path / "again"
    import_images(source, again, seed=3)
    assert tree_digest(out) == tree_digest(again)  # deterministic: DVC md5 reproducible


def test_image_csv_manifest_with_split_column(tmp_path):
    rows = [["file", "kind", "part"]]
    for c, name in enumerate(("ant", "bee", "fly")):
        for i, part in enumerate(["train"] * 3 + ["validation", "test"]):
            make_png(tmp_path / "src" / "img" / f"{name}_{i}.bmp", seed=c * 10 + i, suffix_format="BMP")
            rows.append([f"img/{name}_{i}.bmp", name, part])
    manifest = write_rows(tmp_path / "src" / "labels.csv", rows)
    summary = import_images(
        manifest, tmp_path / "out", layout="csv", image_column="file", label_column="kind", split_column="part"
    )
    assert summary["splits"] == {"train": 9, "val": 3, "test": 3}
    assert (tmp_path / "out" / "val" / "bee" / "bee_3.png").is_file()


def test_speech_commands_8khz_stereo_is_resampled_mono_and_split_by_speaker(tmp_path):
    source = speech_folder(tmp_path / "src")
    out = tmp_path / "out"
    summary = import_speech(source, out, sample_rate=16000, val_fraction=0.2, seed=1)
    assert summary["classes"] == ["no", "yes"]  # _background_noise_ is not a class
    info = soundfile.info(out / "yes" / "spk1_nohash_0.wav")
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 8000)
    assert (out / "testing_list.txt").read_text() == "no/spk0_nohash_0.wav\nyes/spk0_nohash_0.wav\n"
    val = (out / "validation_list.txt").read_text().split()
    assert val and {name.split("/")[1] for name in val if name.startswith("yes")} == {
        name.split("/")[1] for name in val if name.startswith("no")
    }  # whole speakers go to val
    splits = get("speech").load_splits(out, section("speech"), 0, None)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12 - 2 - len(val), len(val), 2)
    assert splits.train[0][0].shape == (16000,)
    again = tmp_path / "again"
    import_speech(source, again, sample_rate=16000, val_fraction=0.2, seed=1)
    assert tree_digest(out) == tree_digest(again)


def test_speech_csv_manifest(tmp_path):
    rows = [["audio", "label"]]
    for w, word in enumerate(("on", "off")):
        for s in range(6):
            make_wav(tmp_path / "src" / "clips" / f"{word}-{s}.flac", seed=w * 10 + s, rate=22050, channels=1)
            rows.append([f"clips/{word}-{s}.flac", word])
    manifest = write_rows(tmp_path / "src" / "clips.csv", rows)
    summary = import_speech(manifest, tmp_path / "out", layout="csv", sample_rate=16000, seed=0)
    assert sum(summary["splits"].values()) == 12 and all(summary["splits"].values())
    assert soundfile.info(tmp_path / "out" / "on" / "on-0.wav").samplerate == 16000


def test_text_csv_and_headerless_tsv(tmp_path):
    csv_file = write_rows(tmp_path / "news.csv", [["title", "body", "topic"], *text_rows()])
    import_text(csv_file, tmp_path / "from_csv", text_columns=["title", "body"], label_column="topic", seed=5)
    texts, labels = read_text_csv(tmp_path / "from_csv" / "train.csv")
    assert texts[0].startswith("title ") and " body words " in texts[0] and set(labels) == {"a", "b", "c"}
    assert all(read_text_csv(tmp_path / "from_csv" / f"{split}.csv")[0] for split in ("val", "test"))

    tsv_file = tmp_path / "news.tsv"  # as AG News writes it: tab-separated, quotes are plain characters
    tsv_file.write_text("".join(f'he said "{i}"\t{label}\n' for label in "xyz" for i in range(8)))
    import_text(tsv_file, tmp_path / "from_tsv", layout="tsv", has_header=False, text_columns=[0], label_column=1)
    texts, labels = read_text_csv(tmp_path / "from_tsv" / "test.csv")
    assert texts[0].startswith('he said "') and set(labels) == set("xyz")  # quotes kept as written


def test_parallel_files_plain_and_gzipped_with_a_carved_test_split(tmp_path):
    out = tmp_path / "out"
    summary = import_translation(
        parallel_folder(tmp_path / "src"), out, test_fraction=0.25, seed=3, **TRANSLATION_FILES
    )
    assert summary == {"num_pairs": 14, "splits": {"train": 9, "val": 2, "test": 3}}
    assert sorted(p.name for p in out.iterdir()) == [
        f"{s}.{lang}" for s in ("test", "train", "val") for lang in ("de", "en")
    ]
    sources, targets = read_parallel(out, "val", ("de", "en"))
    assert sources == ["Eine Katze schläft.", "Zwei Männer sitzen draußen."]  # whitespace runs become one space
    assert targets == ["A cat sleeps.", "Two men sit outside."]
    sources, targets = read_parallel(out, "test", ("de", "en"))
    assert [s.split()[3] for s in sources] == [t.split()[2] for t in targets]  # still aligned after carving
    again = tmp_path / "again"
    import_translation(tmp_path / "src", again, test_fraction=0.25, seed=3, **TRANSLATION_FILES)
    assert tree_digest(out) == tree_digest(again)  # deterministic: DVC md5 reproducible
    tokenizer = train_tokenizer(sum(read_parallel(out, "train", ("de", "en")), []), 60, reversible=True)
    params = load_params(REPO / "params.yaml").task(TRANSLATION)
    params = params.model_copy(update={"data": params.data.model_copy(update={"import_from": None})})
    splits = get("translation").load_splits(out, params, 0, tokenizer)
    source_ids, target_ids = splits.train[0]
    assert target_ids[0] == 2 and target_ids[-1] == 3 and len(splits.test) == 3  # [BOS] ... [EOS]


def test_params_import_from_is_validated(tmp_path):
    params = tiny_params()
    params["tasks"][TEXT]["data"] = {
        "import_from": {
            "path": "x.tsv",
            "layout": "tsv",
            "has_header": False,
            "text_columns": ["description"],
            "label_column": 1,
        }
    }
    with pytest.raises(ParamsError, match="integer positions"):
        load_params(write_params(tmp_path, params))
    params["tasks"][TEXT]["data"] = {}
    with pytest.raises(ParamsError, match="data.builtin .* or data.import_from"):
        load_params(write_params(tmp_path, params))
    params["tasks"][TEXT]["data"] = {"import_from": {"path": "x.csv", "bogus": 1}}
    with pytest.raises(ParamsError, match="bogus"):
        load_params(write_params(tmp_path, params))
    params["tasks"][TEXT]["data"] = {
        "import_from": {"path": "x.tsv", "layout": "tsv", "has_header": False, "text_columns": [0], "label_column": 1}
    }
    params["tasks"][IMAGE]["data"]["import_from"] = {"path": "pictures"}  # beside builtin: import_from wins
    loaded = load_params(write_params(tmp_path, params))
    assert data_recipe(IMAGE, loaded, tmp_path)["source"] == "import"
    assert data_recipe(TEXT, loaded, tmp_path)["content_sha256"] == "missing"


def test_source_fingerprint_follows_files(tmp_path):
    source = image_folders(tmp_path / "src", train=2, test=1)
    before = source_fingerprint(source)
    assert source_fingerprint(source) == before
    make_png(source / "train" / "cat" / "new.png", seed=1)
    assert source_fingerprint(source) != before


# ---- bad data: a clear error, nothing changed ------------------------------------------------------
def bad_png(root: Path) -> tuple[Path, str]:
    source = image_folders(root / "pics")
    (source / "train" / "dog" / "dog3.png").write_bytes(b"this is no picture")
    return source, "dog3.png"


def truncated_png(root: Path) -> tuple[Path, str]:
    source = image_folders(root / "pics", train=4)
    path = make_png(source / "train" / "cat" / "big.png", seed=5, size=64)
    path.write_bytes(path.read_bytes()[:300])
    return source, "big.png"


def truncated_wav(root: Path) -> tuple[Path, str]:
    source = speech_folder(root / "speech")
    path = source / "no" / "spk3_nohash_0.wav"
    path.write_bytes(path.read_bytes()[:1000])
    return source, "spk3_nohash_0.wav: truncated WAV"


def broken_wav(root: Path) -> tuple[Path, str]:
    source = speech_folder(root / "speech")
    (source / "yes" / "spk2_nohash_0.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    return source, "spk2_nohash_0.wav"


def missing_column(root: Path) -> tuple[Path, str]:
    return write_rows(root / "t.csv", [["title", "topic"], *[[t, lab] for t, _, lab in text_rows()]]), "'body'"


def empty_text(root: Path) -> tuple[Path, str]:
    rows = text_rows()
    rows[4][:2] = [" ", ""]
    return write_rows(root / "t.csv", [["title", "body", "topic"], *rows]), "t.csv, row 6: empty text"


def unknown_label(root: Path) -> tuple[Path, str]:
    folder = root / "texts"
    folder.mkdir()
    write_rows(folder / "train.csv", [["title", "body", "topic"], *text_rows()])
    write_rows(folder / "test.csv", [["title", "body", "topic"], ["t", "b", "a"], ["t", "b", "zebra"]])
    return folder, "test.csv, row 3: unknown label 'zebra'"


def missing_folder(root: Path) -> tuple[Path, str]:
    return root / "nowhere", "nowhere: image folder not found"


def misaligned_parallel_files(root: Path) -> tuple[Path, str]:
    source = parallel_folder(root / "parallel")
    write_lines(source / "val.en", ["A cat sleeps."])
    return source, f"{source / 'val.de'} has 2 lines but {source / 'val.en'} has 1: parallel files must be line-aligned"


def empty_parallel_line(root: Path) -> tuple[Path, str]:
    source = parallel_folder(root / "parallel")
    write_lines(source / "train.en.gz", [f"Dog number {i} runs." if i != 6 else "  " for i in range(12)])
    return source, "train.en.gz, line 7: empty line"


def not_utf8(root: Path) -> tuple[Path, str]:
    source = parallel_folder(root / "parallel")
    (source / "val.de").write_bytes("Eine Katze schläft.\nZwei Männer.\n".encode("latin-1"))
    return source, "val.de, line 1: not UTF-8 text"


def missing_side(root: Path) -> tuple[Path, str]:
    source = parallel_folder(root / "parallel")
    (source / "train.en.gz").unlink()
    return source, "train.en: parallel file not found (nor train.en.gz)"


def broken_gzip(root: Path) -> tuple[Path, str]:
    source = parallel_folder(root / "parallel")
    (source / "train.de.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    return source, "train.de.gz: not a readable gzip file"


BAD = {
    "image": [bad_png, truncated_png, missing_folder],
    "speech": [truncated_wav, broken_wav],
    "text": [missing_column, empty_text, unknown_label],
    "translation": [misaligned_parallel_files, empty_parallel_line, not_utf8, missing_side, broken_gzip],
}
TEXT_COLUMNS = {"text_columns": ["title", "body"], "label_column": "topic"}
IMPORT_OPTIONS = {"text": TEXT_COLUMNS, "translation": TRANSLATION_FILES}


@pytest.mark.parametrize(
    "kind,make_bad", [(m, f) for m, fs in BAD.items() for f in fs], ids=lambda v: getattr(v, "__name__", v)
)
def test_bad_data_names_the_file(tmp_path, kind, make_bad):
    source, message = make_bad(tmp_path)
    importer = {
        "image": import_images,
        "speech": import_speech,
        "text": import_text,
        "translation": import_translation,
    }[kind]
    with pytest.raises(DataImportError, match=re.escape(message)):
        importer(source, tmp_path / "out", **IMPORT_OPTIONS.get(kind, {}))


@flow
def prepare_and_version(tasks, params, root, version=True):
    recipes = [  # as the pipeline calls it: cached (its result storage saved on the server first), with retries
        call_cached(
            prepare_data,
            force=False,
            outputs_exist=lambda recipe: True,
            task=m,
            params=params,
            root=root,
            recipe=data_recipe(m, params, root),
        )  # fmt: skip
        for m in tasks
    ]
    return recipes, (version_data(root) if version else None)


def test_a_bad_import_changes_nothing_in_data_or_data_dvc(tmp_path, tiny_project, prefect_server):
    params = tiny_params()
    image_folders(tiny_project / "my_images")
    params["tasks"][IMAGE]["data"]["import_from"] = {"path": "my_images"}  # relative: read from the project root
    params_path = write_params(tiny_project, params)
    recipes, _ = prepare_and_version([TEXT, IMAGE], load_params(params_path), tiny_project)
    assert [r["source"] for r in recipes] == ["builtin", "import"]
    assert (
        read_recipe(tiny_project / "data" / IMAGE)
        == recipes[1]
        == data_recipe(IMAGE, load_params(params_path), tiny_project)
    )
    assert (tiny_project / "data" / IMAGE / "val").is_dir()
    before, dvc_before = tree_digest(tiny_project / "data"), (tiny_project / "data.dvc").read_text()

    for folder in ("i", "s", "t", "p"):
        (tmp_path / folder).mkdir()
    bad = {
        "image": bad_png(tmp_path / "i"),
        "speech": truncated_wav(tmp_path / "s"),
        "text": empty_text(tmp_path / "t"),
        "translation": misaligned_parallel_files(tmp_path / "p"),
    }
    for kind, (source, message) in bad.items():
        edited = yaml.safe_load(params_path.read_text())
        edited["tasks"][BUILTIN_TASKS[kind]]["data"]["import_from"] = {"path": str(source),
                                                                          **IMPORT_OPTIONS.get(kind, {})}  # fmt: skip
        with pytest.raises(DataImportError, match=re.escape(message)):
            prepare_and_version([BUILTIN_TASKS[kind]], load_params(write_params(tiny_project, edited)), tiny_project)
        assert tree_digest(tiny_project / "data") == before and not (tiny_project / "data" / SPEECH).exists()
        assert not (tiny_project / "data" / TRANSLATION).exists()
        assert (tiny_project / "data.dvc").read_text() == dvc_before
        assert not any((tiny_project / ".attnflow-tmp").iterdir())  # the scratch copy is gone


def test_a_split_can_come_from_its_own_file_with_its_own_columns(tmp_path, prefect_server):
    """AG News' layout: a headerless TSV to train on, a CSV with a header (and other columns) to test on."""
    (tmp_path / "news").mkdir()
    (tmp_path / "news" / "train.tsv").write_text(
        "".join(f"story {i} about {label}\t{label}\n" for label in ("World", "Sports") for i in range(10))
    )
    test_rows = [[f"title {i}", f"{label} news {i}", label] for label in ("World", "Sports") for i in range(3)]
    write_rows(tmp_path / "news" / "test.csv", [["title", "description", "class"], *test_rows])
    params = tiny_params()
    params["tasks"][TEXT]["data"] = {
        "import_from": {
            "path": "news/train.tsv",
            "layout": "tsv",
            "has_header": False,
            "text_columns": [0],
            "label_column": 1,
            "test": {
                "path": "news/test.csv",
                "layout": "csv",
                "has_header": True,
                "text_columns": ["description"],
                "label_column": "class",
            },
        }
    }
    loaded = load_params(write_params(tmp_path, params))
    prepare_and_version([TEXT], loaded, tmp_path, version=False)

    data = tmp_path / "data" / TEXT
    test_texts, test_labels = read_text_csv(data / "test.csv")
    assert sorted(zip(test_texts, test_labels)) == sorted((row[1], row[2]) for row in test_rows)
    train_texts, _ = read_text_csv(data / "train.csv")
    val_texts, _ = read_text_csv(data / "val.csv")  # carved from the training file
    assert val_texts and len(train_texts) + len(val_texts) == 20 and all(t.startswith("story") for t in val_texts)

    before = data_recipe(TEXT, loaded, tmp_path)["content_sha256"]
    write_rows(tmp_path / "news" / "test.csv", [["title", "description", "class"], *test_rows[:-1]])
    assert data_recipe(TEXT, loaded, tmp_path)["content_sha256"] != before  # the test file is part of the recipe


# ---- real datasets, small slices ----------------------------------------------------------------------
def copy_slice(source: Path, target: Path, per_folder: int) -> None:
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for file in sorted(folder.iterdir())[:per_folder]:
            shutil.copy(file, target / folder.name / file.name)


@needs_shared
def test_real_cifar10_folders(tmp_path):
    source = tmp_path / "cifar"
    for split, count in (("train", 5), ("test", 2)):
        copy_slice(SHARED / "cifar10_subset" / split, source / split, count)
    summary = import_images(source, tmp_path / "out", seed=42)
    assert len(summary["classes"]) == 10 and summary["splits"]["test"] == 20 and summary["splits"]["val"] == 10
    params = section("image").model_copy(update={"data": section("image").data.model_copy(update={"channels": 3})})
    assert get("image").load_splits(tmp_path / "out", params, 0, None).val[0][0].shape == (3, 32, 32)


@needs_shared
def test_real_speech_commands(tmp_path):
    source = tmp_path / "sc"
    for word in ("yes", "no", "_silence_"):
        (source / word).mkdir(parents=True)
        for file in sorted((SHARED / "speech_commands_12" / word).glob("*.wav"))[:8]:
            shutil.copy(file, source / word / file.name)
    summary = import_speech(source, tmp_path / "out", sample_rate=8000, seed=42)  # 16 kHz sources, downsampled
    assert summary["classes"] == ["_silence_", "no", "yes"] and all(summary["splits"].values())
    assert soundfile.info(tmp_path / "out" / "yes" / sorted((source / "yes").iterdir())[0].name).samplerate == 8000
    loaded = get("speech").load_splits(tmp_path / "out", section("speech"), 0, None)
    assert loaded.class_names == ["_silence_", "no", "yes"]
    speakers = {
        split: {p.name.split("_nohash_")[0] for p in getattr(loaded, split).items} for split in ("train", "test")
    }
    assert not speakers["train"] & speakers["test"]


def first_per_class(path: Path, delimiter: str, label_position: int, per_class: int, header: bool) -> list[str]:
    kept, counts = [], {}
    with path.open(newline="", encoding="utf-8") as file:
        lines = file.read().splitlines(keepends=True) if delimiter == "\t" else None
    if lines is not None:  # TSV: one row a line
        for line in lines:
            label = line.rstrip("\n").split("\t")[label_position]
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                kept.append(line)
        return kept
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    kept = [rows[0]] if header else []
    for row in rows[1:]:
        if counts.get(row[label_position], 0) < per_class:
            counts[row[label_position]] = counts.get(row[label_position], 0) + 1
            kept.append(row)
    return kept


@needs_shared
def test_real_ag_news_csv_and_headerless_tsv(tmp_path):
    rows = first_per_class(SHARED / "ag_news" / "test.csv", ",", 2, 10, header=True)
    csv_file = write_rows(tmp_path / "test.csv", rows)
    summary = import_text(csv_file, tmp_path / "csv_out", text_columns=["title", "description"], label_column="class")
    assert summary["classes"] == ["Business", "Sci/Tech", "Sports", "World"] and summary["splits"] == {
        "train": 24,
        "val": 8,
        "test": 8,
    }

    tsv_file = tmp_path / "train.tsv"
    tsv_file.write_text(
        "".join(first_per_class(SHARED / "ag_news" / "train_sample_10k_alps_dev.tsv", "\t", 1, 10, header=False)),
        encoding="utf-8",
    )
    summary = import_text(
        tsv_file, tmp_path / "tsv_out", layout="tsv", has_header=False, text_columns=[0], label_column=1
    )
    assert len(summary["classes"]) == 4 and sum(summary["splits"].values()) == 40
    texts, _ = read_text_csv(tmp_path / "tsv_out" / "train.csv")
    assert all(texts)


@needs_shared
def test_real_multi30k_slice_plain_and_gzipped(tmp_path):
    """The benchmark's layout: gzipped train/val, a test split named test_2016_flickr (here plain text)."""
    source = tmp_path / "multi30k"
    for stem, count, suffix in (("train", 40, ".gz"), ("val", 8, ".gz"), ("test_2016_flickr", 6, "")):
        for lang in ("de", "en"):
            lines = gzip.decompress((SHARED / "multi30k" / f"{stem}.{lang}.gz").read_bytes()).decode().splitlines()
            write_lines(source / f"{stem}.{lang}{suffix}", lines[:count])
    out = tmp_path / "out"
    summary = import_translation(
        source,
        out,
        source_lang="de",
        target_lang="en",
        splits={"train": "train", "val": "val", "test": "test_2016_flickr"},
    )
    assert summary["splits"] == {"train": 40, "val": 8, "test": 6}
    sources, targets = read_parallel(out, "train", ("de", "en"))
    assert sources[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    assert targets[0] == "Two young, White males are outside near many bushes."
    tokenizer = train_tokenizer(sources + targets, 300, reversible=True)
    assert all(tokenizer.decode(tokenizer.encode(sentence).ids) == sentence for sentence in sources + targets)


# ---- hostile input: every case a DataImportError naming the file -------------------------------------------------
def test_a_decompression_bomb_image_is_refused(tmp_path):
    source = image_folders(tmp_path / "pics")
    Image.new("1", (15000, 15000)).save(source / "train" / "cat" / "bomb.png")  # 225M pixels in a few kB
    with pytest.raises(DataImportError, match="bomb.png: image too large to decode safely"):
        import_images(source, tmp_path / "out")


def test_nul_bytes_and_non_utf8_text_name_the_file(tmp_path):
    (tmp_path / "nul.csv").write_bytes(b"text,label\nhello,a\nbad\x00row,b\n")
    with pytest.raises(DataImportError, match=r"nul.csv, row 3: contains a NUL byte"):
        import_text(tmp_path / "nul.csv", tmp_path / "a")
    (tmp_path / "files.csv").write_bytes(b"image,label\nx\x00.png,a\n")
    with pytest.raises(DataImportError, match=r"files.csv, row 2: contains a NUL byte"):
        import_images(tmp_path / "files.csv", tmp_path / "d", layout="csv")
    (tmp_path / "latin.csv").write_bytes("text,label\ncafé,a\n".encode("latin-1"))
    with pytest.raises(DataImportError, match="latin.csv: not UTF-8 text"):
        import_text(tmp_path / "latin.csv", tmp_path / "b")
    (tmp_path / "manifest.csv").write_bytes("image,label\ncafé.png,a\n".encode("latin-1"))
    with pytest.raises(DataImportError, match="manifest.csv: not UTF-8 text"):
        import_images(tmp_path / "manifest.csv", tmp_path / "c", layout="csv")


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    rows = [["text", "label"], *[[f"words {i}", "ab"[i % 2]] for i in range(20)]]
    path = write_rows(tmp_path / "excel.csv", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as spreadsheet programs save UTF-8
    assert sum(import_text(path, tmp_path / "out")["splits"].values()) == 20


def test_clip_names_with_spaces_stay_in_their_split(tmp_path):
    source = speech_folder(tmp_path / "speech")
    for word in ("yes", "no"):
        make_wav(source / word / "my speaker_nohash_0.wav", seed=7)
    (source / "validation_list.txt").write_text("yes/my speaker_nohash_0.wav\nno/my speaker_nohash_0.wav\n")
    import_speech(source, tmp_path / "out", sample_rate=8000)
    val = get("speech").load_splits(tmp_path / "out", section("speech"), 0, None).val
    assert sorted(p.name for p in val.items) == ["my speaker_nohash_0.wav"] * 2


def test_a_gzip_bomb_is_refused(tmp_path, monkeypatch):
    from tasks.data import importers

    monkeypatch.setattr(importers, "MAX_TEXT_BYTES", 10_000)  # 2 GiB by default
    source = parallel_folder(tmp_path / "parallel")
    write_lines(source / "train.de.gz", ["Ein Satz." for _ in range(5000)])  # 50 kB of text in a few hundred bytes
    with pytest.raises(DataImportError, match="train.de.gz: more than .* of text"):
        import_translation(source, tmp_path / "out", **TRANSLATION_FILES)
