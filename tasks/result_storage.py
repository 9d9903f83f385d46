"""Where Prefect keeps the cached stages' results, read back as JSON only.

The stages persist their results with the JSON serializer (tasks/caching.py), but Prefect reads a result file with
whatever serializer the file itself names: a file crafted to say "pickle" (or "cloudpickle") would be unpickled, and
run its code, at the next cache lookup. This storage hands Prefect a result record only when it names the JSON
serializer; any other file is refused unread. Prefect then treats the key as not cached, runs the stage and writes
a JSON record over the refused file, and a warning names it.

Where, params.yaml's ``global.results.storage`` says:

- null: Prefect's own local storage (LocalFileSystem), in the folder Prefect's settings name for results
  (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, by default under ``PREFECT_HOME``), looked up when a file is read or
  written, so a run pointed at another Prefect home by its environment keeps its results there;
- an S3 URL (s3://bucket/prefix): Prefect's RemoteFileSystem through s3fs, shared by every clone and worker that
  names it, so a stage cached on one is a cache hit on another (tasks/caching.py says what else that needs). The
  block holds the URL alone: s3fs takes the credentials, the region and an S3-compatible store's address from the
  environment of the process that reads or writes (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
  AWS_ENDPOINT_URL, or ~/.aws), never from params.yaml or the Prefect server.

Both read through ``JsonOnly``. Prefect takes result storage only as a block saved on its server (a task names it
"<block type>/<name>"), so ``save_result_storage`` saves the one params name on the server a process talks to, once,
before its first cached stage (checking first that a bucket answers), and returns that name for the stages.
"""

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.logging import get_logger

from tasks.errors import EXIT_STORAGE, AttnflowError

ALLOWED_SERIALIZER = "json"


class RefusedResult(ValueError):
    """A result file that does not name the JSON serializer: never deserialized."""


class ResultStorageError(AttnflowError, RuntimeError):
    """global.results.storage cannot be reached (no credentials, no such bucket, no answer): nothing ran."""

    exit_code = EXIT_STORAGE


def checked_record(content: bytes, path: Path) -> bytes:
    """content, if it is a Prefect result record (JSON) naming the JSON serializer; else RefusedResult."""
    try:
        serializer = json.loads(content)["metadata"]["serializer"]["type"]
    except (ValueError, TypeError, KeyError):
        serializer = None
    if serializer != ALLOWED_SERIALIZER:
        get_logger("attnflow.results").warning(
            "Refused the cached result %s: it is not a JSON result record (serializer %r); the stage runs again",
            path,
            serializer,
        )
        raise RefusedResult(f"{path}: not a JSON result record (serializer {serializer!r}); refused unread")
    return content


class JsonOnly:
    """A Prefect file system block's reads, handed back only when they are JSON result records (``checked_record``).
    Put before the block class it guards: its reads wrap that class's."""

    async def aread_path(self, path: str) -> bytes:
        return checked_record(await super().aread_path(path), self._resolve_path(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return checked_record(super().read_path(path, _sync=True), self._resolve_path(path))


class JsonResultStorage(JsonOnly, LocalFileSystem):
    """Local result storage that reads back JSON result records only (the module docstring says why)."""

    _block_type_name = "attnflow JSON result storage"
    _block_type_slug = "attnflow-json-result-storage"

    def _resolve_path(self, path: str) -> Path:
        if self.basepath:
            return super()._resolve_path(path)
        from prefect.settings import get_current_settings

        folder = str(Path(get_current_settings().results.local_storage_path).expanduser())
        return self.model_copy(update={"basepath": folder})._resolve_path(path)


class JsonRemoteResultStorage(JsonOnly, RemoteFileSystem):
    """Result storage in a bucket (s3://bucket/prefix) that reads back JSON result records only."""

    _block_type_name = "attnflow JSON remote result storage"
    _block_type_slug = "attnflow-json-remote-result-storage"

    @property
    def filesystem(self):
        """A client of its own, made from the environment now: fsspec would hand back a client made earlier in this
        process with the same arguments, and with the environment (credentials, endpoint) of then."""
        if not self._filesystem:
            import fsspec

            self._filesystem = fsspec.filesystem(urlsplit(self.basepath).scheme, skip_instance_cache=True,
                                                 **self.settings)  # fmt: skip
        return self._filesystem


RESULT_STORAGE_NAME = "attnflow-results"
RESULT_STORAGE = f"{JsonResultStorage._block_type_slug}/{RESULT_STORAGE_NAME}"
STORAGE_KEY = "global.results.storage"
S3_ENVIRONMENT = (
    "S3 reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION (or ~/.aws) and, for an S3-compatible "
    "store, AWS_ENDPOINT_URL"
)


def save_result_storage(location: str | None = None) -> str:
    """Save the storage block of location (global.results.storage; None: the local folder) on the Prefect server of
    this process (its API URL), once per server; returns its name for a task's result_storage."""
    from prefect.settings import PREFECT_API_URL

    return _save_on(PREFECT_API_URL.value(), location)


@lru_cache
def _save_on(api_url: str | None, location: str | None) -> str:
    if location is None:
        JsonResultStorage().save(RESULT_STORAGE_NAME, overwrite=True)
        return RESULT_STORAGE
    block = JsonRemoteResultStorage(basepath=location)
    check_bucket(block)
    name = f"{RESULT_STORAGE_NAME}-{hashlib.sha256(location.encode()).hexdigest()[:16]}"  # one block per location
    block.save(name, overwrite=True)
    return f"{JsonRemoteResultStorage._block_type_slug}/{name}"


def check_bucket(block: JsonRemoteResultStorage) -> None:
    """The bucket of the block's URL answers with these credentials; else ResultStorageError naming the setting."""
    bucket = urlsplit(block.basepath).netloc
    try:
        block.filesystem.info(bucket)
    except Exception as error:  # botocore's (no credentials, no connection), s3fs's (no such bucket, denied)
        raise ResultStorageError(
            f"{STORAGE_KEY} {block.basepath}: bucket {bucket!r} cannot be used ({type(error).__name__}: {error}); "
            f"{S3_ENVIRONMENT}"
        ) from None
