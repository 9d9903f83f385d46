"""Load any modality's prepared data as train/val/test splits."""
from pathlib import Path

from tokenizers import Tokenizer

from tasks.data.datasets import Splits, load_image_splits, load_speech_splits, load_text_splits


def load_splits(modality: str, data_dir: Path, section, seed: int, tokenizer: Tokenizer | None = None) -> Splits:
    if modality == "text":
        return load_text_splits(data_dir, section, seed, tokenizer)
    loader = {"image": load_image_splits, "speech": load_speech_splits}[modality]
    return loader(data_dir, section, seed)
