"""Where Prefect keeps the cached stages' results, read back as JSON only.

The stages persist their results with the JSON serializer (tasks/caching.py), but Prefect reads a result file with
whatever serializer the file itself names: a file crafted to say "pickle" (or "cloudpickle") would be unpickled, and
run its code, at the next cache lookup. This storage hands Prefect a result record only when it names the JSON
serializer; any other file is refused unread. Prefect then treats the key as not cached, runs the stage and writes
a JSON record over the refused file, and a warning names it.

It is Prefect's own local storage (LocalFileSystem), in the folder Prefect's settings name for results
(``PREFECT_RESULTS_LOCAL_STORAGE_PATH``, by default under ``PREFECT_HOME``), looked up when a file is read or
written, so a run pointed at another Prefect home by its environment keeps its results there. Prefect takes result
storage only as a block saved on its server (a task names it ``RESULT_STORAGE``, "<block type>/<name>"), so
``save_result_storage`` saves it on the server a process talks to, once, before its first cached stage.
"""

import json
from functools import lru_cache
from pathlib import Path

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import LocalFileSystem
from prefect.logging import get_logger

ALLOWED_SERIALIZER = "json"


class RefusedResult(ValueError):
    """A result file that does not name the JSON serializer: never deserialized."""


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


class JsonResultStorage(LocalFileSystem):
    """Local result storage that reads back JSON result records only (the module docstring says why)."""

    _block_type_name = "attnflow JSON result storage"
    _block_type_slug = "attnflow-json-result-storage"

    def _resolve_path(self, path: str) -> Path:
        if self.basepath:
            return super()._resolve_path(path)
        from prefect.settings import get_current_settings

        folder = str(Path(get_current_settings().results.local_storage_path).expanduser())
        return self.model_copy(update={"basepath": folder})._resolve_path(path)

    async def aread_path(self, path: str) -> bytes:
        return checked_record(await super().aread_path(path), self._resolve_path(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return checked_record(super().read_path(path, _sync=True), self._resolve_path(path))


RESULT_STORAGE_NAME = "attnflow-results"
RESULT_STORAGE = f"{JsonResultStorage._block_type_slug}/{RESULT_STORAGE_NAME}"


def save_result_storage() -> None:
    """Save the storage block on the Prefect server of this process (its API URL), once per server."""
    from prefect.settings import PREFECT_API_URL

    _save_on(PREFECT_API_URL.value())


@lru_cache
def _save_on(api_url: str | None) -> None:
    JsonResultStorage().save(RESULT_STORAGE_NAME, overwrite=True)
