"""Load any modality's prepared data as train/val/test splits."""
import hashlib
from pathlib import Path

from tokenizers import Tokenizer

from tasks.data.datasets import (Splits, load_image_splits, load_speech_splits, load_text_splits,
                                 load_translation_splits)


def load_splits(modality: str, data_dir: Path, section, seed: int, tokenizer: Tokenizer | None = None) -> Splits:
    if modality == "text":
        return load_text_splits(data_dir, section, seed, tokenizer)
    if modality == "translation":
        return load_translation_splits(data_dir, section, seed, tokenizer)
    loader = {"image": load_image_splits, "speech": load_speech_splits}[modality]
    return loader(data_dir, section, seed)


def test_split_md5(modality: str, data_dir: Path) -> str:
    """md5 over the test split alone (file names and bytes): two test accuracies are comparable only when it matches."""
    if modality == "text":
        files = [data_dir / "test.csv"]
    elif modality == "translation":
        files = sorted(data_dir.glob("test.*"))
    elif modality == "image":
        files = sorted(p for p in (data_dir / "test").glob("*/*") if p.is_file())
    else:
        files = [data_dir / "testing_list.txt"] + [data_dir / name for name in sorted(
            (data_dir / "testing_list.txt").read_text().split())]
    digest = hashlib.md5()
    for path in files:
        digest.update(path.relative_to(data_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
