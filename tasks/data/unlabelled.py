"""Unlabelled texts for a text task's pretrain stage (tasks/stages/pretrain.py): read from the user's file or folder
and written into the task's data folder as one file, so that DVC versions them with the labelled data (data.dvc).

The source is a text file, or a folder whose .txt files (at any depth, in sorted order) are read; each non-empty line
is one text, its surrounding whitespace stripped. The copy is deterministic: the same source gives the same bytes
(and the same DVC md5). A source that is missing, not UTF-8 or holds no text stops the prepare stage with a
``DataImportError`` naming it.
"""

from pathlib import Path

from tasks.data.importers import DataImportError, require
from tasks.names import UNLABELLED_TEXTS

TEXT_SUFFIX = ".txt"


def text_files(source: Path) -> list[Path]:
    """The files of the source: itself, or a folder's .txt files in sorted order."""
    require(source, "unlabelled texts (pretrain.source)")
    if source.is_file():
        return [source]
    files = sorted(path for path in source.rglob(f"*{TEXT_SUFFIX}") if path.is_file())
    if not files:
        raise DataImportError(f"{source}: no {TEXT_SUFFIX} file in the folder of unlabelled texts (pretrain.source)")
    return files


def read_lines(path: Path) -> list[str]:
    """The texts of one file: its non-empty lines, stripped."""
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataImportError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return [line.strip() for line in content.splitlines() if line.strip()]


def import_unlabelled_texts(source: Path, out_dir: Path) -> dict:
    """Write the source's texts to out_dir/UNLABELLED_TEXTS, one a line; returns how many."""
    texts = [text for path in text_files(Path(source)) for text in read_lines(path)]
    if not texts:
        raise DataImportError(f"{source}: no text in the unlabelled texts (pretrain.source)")
    (out_dir / UNLABELLED_TEXTS).write_text("\n".join(texts) + "\n", encoding="utf-8")
    return {"unlabelled": len(texts)}


def read_unlabelled_texts(data_dir: Path) -> list[str]:
    """The prepared unlabelled texts of a task's data folder."""
    return (data_dir / UNLABELLED_TEXTS).read_text(encoding="utf-8").splitlines()
