"""Speech recognition: the built-in data (layout, speaker-disjoint splits, same bytes for the same seed), every import
layout on tiny files made here (Common Voice with MP3 clips, a CSV/TSV manifest, LibriSpeech), bad data named, the
error rates, and the served champion transcribing raw audio with its alignment."""

import base64
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from tasks.data.asr_data import generate_asr_dataset, import_asr, read_split
from tasks.data.importers import DataImportError
from tasks.kinds import get
from tests.conftest import ASR
from tests.test_import import write_rows

SMALL = dict(num_speakers=6, utterances_per_speaker=2, min_words=2, max_words=3, val_fraction=0.2, test_fraction=0.2)


def digests(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "data"
    return out, generate_asr_dataset(out, seed=5, **SMALL)


def test_builtin_layout_and_speaker_disjoint_splits(builtin):
    out, summary = builtin
    assert summary["num_clips"] == 12 and summary["splits"] == {"train": 8, "val": 2, "test": 2}
    speakers = {}
    for split in ("train", "val", "test"):
        rows = read_split(out, split)
        assert rows == sorted(rows, key=lambda row: (row["path"], row["sentence"], row["speaker"]))
        for row in rows:
            assert (out / row["path"]).is_file() and row["path"].startswith("clips/")
            assert 2 <= len(row["sentence"].split()) <= 3
            info = soundfile.info(out / row["path"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16") and info.duration > 0.3
        speakers[split] = {row["speaker"] for row in rows}
    assert not speakers["train"] & speakers["test"] and not speakers["train"] & speakers["val"]


def test_builtin_is_byte_identical_for_the_same_seed(builtin, tmp_path):
    out, _ = builtin
    generate_asr_dataset(tmp_path / "again", seed=5, **SMALL)
    assert digests(tmp_path / "again") == digests(out)


@pytest.mark.parametrize(
    "arguments, message",
    [({"voices": ["en+nonsense"]}, "unknown eSpeak voice"), ({"vocabulary": ["one", "one"]}, "distinct single words")],
)
def test_builtin_bad_arguments_name_them(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_asr_dataset(tmp_path / "out", **SMALL | arguments)


# ---- imports --------------------------------------------------------------------------------------------
def clip(path, seed: int, rate: int = 8000, seconds: float = 0.4, fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(rate * seconds)).astype(np.float32)
    soundfile.write(path, samples, rate, format=fmt)
    return path


def common_voice(root, files=("train", "dev", "test"), speakers=10):
    """Common Voice: clips/*.mp3 and a TSV per split with client_id, path, sentence (and columns we do not read)."""
    for f, name in enumerate(files):
        rows = [["client_id", "path", "sentence", "up_votes"]]
        for s in range(speakers if name == "train" else 2):
            speaker = f"{name}-speaker{s}"
            for u in range(2):
                file = f"common_voice_en_{f}{s}{u}.mp3"
                clip(root / "clips" / file, seed=100 * f + 10 * s + u, rate=48000, fmt="MP3")
                rows.append([speaker, file, f'Sentence {s}  "number" {u}.', "2"])
        (root / f"{name}.tsv").write_text("".join("\t".join(row) + "\n" for row in rows))  # unquoted, as Common Voice
    return root


def test_common_voice_mp3_with_every_split_file(tmp_path):
    summary = import_asr(common_voice(tmp_path / "cv"), tmp_path / "out", layout="common_voice", sample_rate=16000)
    assert summary["splits"] == {"train": 20, "val": 4, "test": 4}
    row = read_split(tmp_path / "out", "val")[0]
    assert row["sentence"] == 'Sentence 0 "number" 0.' and row["speaker"] == "dev-speaker0"  # spaces collapsed
    assert soundfile.info(tmp_path / "out" / row["path"]).samplerate == 16000


def test_common_voice_without_dev_carves_val_by_speaker(tmp_path):
    summary = import_asr(common_voice(tmp_path / "cv", files=("train", "test")), tmp_path / "out",
                         layout="common_voice", val_fraction=0.2)  # fmt: skip
    assert summary["splits"] == {"train": 16, "val": 4, "test": 4}  # 2 of the 10 training speakers
    val, train = ({row["speaker"] for row in read_split(tmp_path / "out", s)} for s in ("val", "train"))
    assert val and not val & train


@pytest.mark.parametrize("separator, name", [(",", "clips.csv"), ("\t", "clips.tsv")])
@pytest.mark.parametrize("with_split", [True, False], ids=["split-column", "carved"])
def test_manifest(tmp_path, separator, name, with_split):
    rows = [["audio", "text", "who", *(["part"] if with_split else [])]]
    for s in range(10):
        for u in range(2):
            clip(tmp_path / "src" / "wav" / f"s{s}u{u}.flac", seed=10 * s + u, fmt="FLAC")
            part = ["test" if s < 2 else "dev" if s < 4 else "train"] if with_split else []
            rows.append([f"wav/s{s}u{u}.flac", f"words {s} {u}", f"spk{s}", *part])
    write_rows(tmp_path / "src" / name, rows, separator)
    split_column = {"split_column": "part"} if with_split else {}
    summary = import_asr(tmp_path / "src" / name, tmp_path / "out", audio_column="audio", transcript_column="text",
                         speaker_column="who", **split_column)  # fmt: skip
    assert summary["splits"] == {"train": 12, "val": 4, "test": 4} if with_split else {"train": 16, "val": 2, "test": 2}


def librispeech(root, speakers=range(10)):
    for s in speakers:
        chapter = root / f"{s}" / "7"
        lines = []
        for u in range(2):
            clip(chapter / f"{s}-7-000{u}.flac", seed=10 * s + u, fmt="FLAC")
            lines.append(f"{s}-7-000{u} WORDS OF SPEAKER {s}")
        (chapter / f"{s}-7.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_split_folders_and_one_folder(tmp_path):
    librispeech(tmp_path / "ls" / "train-clean-100", range(6))
    librispeech(tmp_path / "ls" / "dev-clean", range(6, 8))
    librispeech(tmp_path / "ls" / "test-clean", range(8, 10))
    summary = import_asr(tmp_path / "ls", tmp_path / "out", layout="librispeech")
    assert summary["splits"] == {"train": 12, "val": 4, "test": 4}
    assert read_split(tmp_path / "out", "test")[0]["sentence"] == "WORDS OF SPEAKER 8"
    summary = import_asr(librispeech(tmp_path / "one"), tmp_path / "out2", layout="librispeech", val_fraction=0.2,
                         test_fraction=0.2)  # fmt: skip
    assert summary["splits"] == {"train": 12, "val": 4, "test": 4}  # carved by speaker: 2 + 2 of 10


def test_bad_data_names_the_file(tmp_path):
    root = librispeech(tmp_path / "ls", range(4))
    (root / "2" / "7" / "2-7-0001.flac").unlink()
    with pytest.raises(DataImportError, match=re.escape(f"{root / '2' / '7' / '2-7.trans.txt'}, line 2: no audio")):
        import_asr(root, tmp_path / "a", layout="librispeech")
    write_rows(tmp_path / "m.csv", [["path", "sentence"], ["x.wav", " "]])
    clip(tmp_path / "x.wav", seed=1)
    with pytest.raises(DataImportError, match=re.escape("m.csv, row 2: empty 'sentence'")):
        import_asr(tmp_path / "m.csv", tmp_path / "b")
    write_rows(tmp_path / "long.csv", [["path", "sentence"], *[[f"l{i}.wav", "a b"] for i in range(10)]])
    for i in range(10):
        clip(tmp_path / f"l{i}.wav", seed=i, seconds=2.0)
    with pytest.raises(DataImportError, match=r"l0.wav.*2.0 s long \(data.max_seconds is 1.5\)"):
        import_asr(tmp_path / "long.csv", tmp_path / "c", max_seconds=1.5)


# ---- metrics and serving --------------------------------------------------------------------------------
def test_error_rates_are_lower_is_better():
    spec = get("asr")
    scores = spec.score(["one two", "three"], ["one two", "three four"])  # one word of four missing
    assert scores["test_wer"] == pytest.approx(0.25)
    assert scores["test_cer"] == pytest.approx(5 / 17)  # " four": 5 of the 7 + 10 reference characters
    assert not spec.higher_is_better and spec.primary_metric == "test_wer"


def test_champion_transcribes_raw_audio_with_its_alignment(pipeline_runs):
    import mlflow

    project = pipeline_runs[0]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/attnflow-connected-digits@champion")
    data = project / "data" / ASR
    rows = read_split(data, "test")
    audio = [base64.b64encode((data / row["path"]).read_bytes()).decode() for row in rows[:2]]
    samples = soundfile.read(data / rows[0]["path"], dtype="float32")[0].tolist()
    answers = model.predict(pd.DataFrame({"audio": [*audio, samples]}))
    assert len(answers) == 3 and answers[0]["transcript"] == answers[2]["transcript"]  # the same clip, two encodings
    client = mlflow.MlflowClient()
    champion_run = client.get_model_version_by_alias("attnflow-connected-digits", "champion").run_id
    hypotheses = client.download_artifacts(champion_run, "transcripts/test_hypotheses.txt")
    evaluated = Path(hypotheses).read_text().split("\n")
    assert [answer["transcript"] for answer in answers[:2]] == evaluated[:2]  # served as evaluated
    for answer in answers:
        assert answer["output_tokens"][-1] == "[EOS]" and len(answer["alignment"]) == len(answer["output_tokens"])
        assert all(abs(sum(row) - 1) < 1e-3 for row in answer["alignment"])
