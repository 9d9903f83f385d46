"""Cached stage results are read back as JSON only: a result file crafted to run code when unpickled is refused
unread, the stage runs again, and its JSON result replaces the crafted file (tasks/result_storage.py)."""

import json
import os
import uuid
from pathlib import Path

import pytest
from prefect import flow, task
from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
from prefect.serializers import PickleSerializer
from prefect.settings import get_current_settings

from tasks.caching import RESULT_SERIALIZER
from tasks.result_storage import RESULT_STORAGE, RefusedResult, checked_record, save_result_storage


class RunsCode:
    """Unpickling it creates the file named by $ATTNFLOW_PWNED: the proof that a pickle was loaded."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ATTNFLOW_PWNED']}",))


def crafted_pickle_record() -> bytes:
    record = ResultRecord(result=RunsCode(), metadata=ResultRecordMetadata(serializer=PickleSerializer()))
    return record.serialize()


def test_a_record_naming_pickle_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNFLOW_PWNED", str(tmp_path / "pwned"))
    with pytest.raises(RefusedResult, match="serializer 'pickle'"):
        checked_record(crafted_pickle_record(), tmp_path / "key")
    with pytest.raises(RefusedResult, match="serializer None"):
        checked_record(b"\x80\x04not json", tmp_path / "key")
    assert not (tmp_path / "pwned").exists()
    record = b'{"metadata": {"serializer": {"type": "json"}}, "result": "1"}'
    assert checked_record(record, tmp_path / "key") == record


def test_a_cached_stage_with_a_crafted_result_runs_again(prefect_server, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNFLOW_PWNED", str(tmp_path / "pwned"))
    key = f"attnflow-test-{uuid.uuid4().hex}"
    runs = []

    @task(cache_key_fn=lambda *_: key, persist_result=True, result_serializer=RESULT_SERIALIZER,
          result_storage=RESULT_STORAGE)  # fmt: skip
    def stage(value: int) -> dict:
        runs.append(value)
        return {"value": value}

    @flow
    def pipeline(value: int) -> dict:
        save_result_storage()
        return stage(value)

    assert pipeline(1) == {"value": 1} and pipeline(2) == {"value": 1}  # the second is a cache hit
    assert runs == [1]
    stored = Path(get_current_settings().results.local_storage_path).expanduser() / key
    assert json.loads(stored.read_bytes())["metadata"]["serializer"]["type"] == "json"

    stored.write_bytes(crafted_pickle_record())
    assert pipeline(3) == {"value": 3}  # not cached: refused, run again
    assert runs == [1, 3] and not (tmp_path / "pwned").exists()
    assert json.loads(stored.read_bytes())["metadata"]["serializer"]["type"] == "json"
