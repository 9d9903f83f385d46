"""Stage cache keys: a stage is skipped when what it reads is unchanged.

Each key hashes exactly what its stage depends on: its params section, the data version and the
source code of the stage. Prefect persists task results under these keys, so a hit carries over
between flow runs and shows as ``Cached`` in Prefect.
"""
import hashlib
import json
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]


def digest(*parts) -> str:
    """A stable sha256 of JSON-able parts (pydantic models are dumped first)."""
    plain = [part.model_dump(mode="json", by_alias=True) if hasattr(part, "model_dump") else part for part in parts]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def code_fingerprint(*paths: str) -> str:
    """sha256 over the Python sources under the given paths (relative to the code root)."""
    sha = hashlib.sha256()
    for relative in paths:
        target = CODE_ROOT / relative
        for source in sorted(target.rglob("*.py") if target.is_dir() else [target]):
            sha.update(str(source.relative_to(CODE_ROOT)).encode())
            sha.update(source.read_bytes())
    return sha.hexdigest()


def call_cached(stage, *, force: bool, outputs_exist, **inputs):
    """Run a cached stage; run it afresh when forced or when a cached result's outputs are gone."""
    result = stage.with_options(refresh_cache=force)(**inputs)
    if not outputs_exist(result):
        result = stage.with_options(refresh_cache=True)(**inputs)
    return result
