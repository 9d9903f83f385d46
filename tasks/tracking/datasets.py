"""The data a task run trained and was tested on, as MLflow dataset inputs: one per split (train, val, test),
named after the task, sourced at its path in the project's DVC-tracked data/ folder, with a digest that DVC's own
record gives.

The digest of a split is DVC's: a split of one file has that file's md5, as DVC records it; a split of several files
has the md5 that DVC would give a directory of them (the md5 of their sorted JSON listing of relpath and md5),
marked ".dir" as DVC marks directories. Both come from the listing DVC keeps for data/ in its cache (the data.dvc
md5's .dir object), so no file is read again; a file missing from it (a cache that was cleared) is hashed here.
"""

import hashlib
import json
import os
from pathlib import Path

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag

from tasks.paths import ProjectPaths

SPLITS = ("train", "val", "test")
CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for the role of an input (train, val, test)


class DvcDatasetSource(DatasetSource):
    """A split in a project's DVC-tracked data/ folder at one data version (the md5 in data.dvc)."""

    def __init__(self, path: str, data_md5: str):
        self.path, self.data_md5 = path, data_md5

    @staticmethod
    def _get_source_type() -> str:
        return "dvc"

    def load(self):
        raise NotImplementedError(f"check data version {self.data_md5} out with DVC and read {self.path}")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"path": self.path, "data_md5": self.data_md5}

    @classmethod
    def from_dict(cls, source_dict: dict) -> "DvcDatasetSource":
        return cls(source_dict["path"], source_dict["data_md5"])


def dvc_listing(root: Path, data_md5: str) -> dict[str, str]:
    """relpath (under data/) -> md5 of every file of a data version, from DVC's cache; empty if it is not there."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        listing = Path(repo.cache.local.path) / data_md5[:2] / data_md5[2:]
    if not listing.is_file():
        return {}
    return {entry["relpath"]: entry["md5"] for entry in json.loads(listing.read_text())}


def split_digest(files: list[Path], data_dir: Path, listing: dict[str, str]) -> str:
    """DVC's md5 of one file, or of a directory of several ("<md5>.dir"), from its listing of data/."""
    entries = []
    for path in files:
        relpath = path.relative_to(data_dir).as_posix()
        md5 = listing.get(relpath) or hashlib.md5(path.read_bytes()).hexdigest()
        entries.append({"md5": md5, "relpath": relpath})
    if len(entries) == 1:
        return entries[0]["md5"]
    listing_json = json.dumps(sorted(entries, key=lambda entry: entry["relpath"]), sort_keys=True)
    return hashlib.md5(listing_json.encode()).hexdigest() + ".dir"


def split_inputs(root: Path, task: str, spec, data_md5: str) -> list[DatasetInput]:
    """The train, val and test splits of a task's prepared data (spec: its kind) as MLflow dataset inputs."""
    data_dir, listing = ProjectPaths(root).data, dvc_listing(root, data_md5)
    inputs = []
    for split in SPLITS:
        files = spec.split_files(data_dir / task, split)
        where = Path(os.path.commonpath(files)).relative_to(root)  # the split's file, or the folder holding it
        source = DvcDatasetSource(where.as_posix(), data_md5)
        dataset = MetaDataset(source, name=f"{task}-{split}", digest=split_digest(files, data_dir, listing))
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, split)]))
    return inputs
