"""Stage cache keys: a stage is skipped when what it reads is unchanged.

Each stage declares its inputs once (``Stage``): the parts of params.yaml it reads, the stage arguments that carry
earlier stages' results, and its module. The code it runs is not listed by hand: it is the stage's module, the
task kind's module and its model's module, and every project module they import, followed through the imports
(``code_closure``), so a change to any of them (a helper, the model, the serving wrapper) re-runs the stage and
what depends on it, and nothing else. The data's own code (a generator, an importer) is part of the data recipe,
which the prepare stage produces and the later stages read. The unit is a file: a change to a kind's module
re-runs the training and evaluation of every task of that kind, whichever part of it changed.

Prefect persists task results under these keys, so a hit carries over between flow runs and shows as ``Cached``.

Results can be shared between clones and workers (params.yaml ``global.results.storage``: an S3 bucket,
tasks/result_storage.py). What makes a result valid in another clone:

- The key holds no path of the project. It holds the MLflow store instead (its URI, password redacted): results
  name MLflow runs (the run that trained, evaluated, ...), valid only in the store that holds them. Clones that share
  a store share results; a project on its own local store (sqlite:///<project>/mlflow.db, the default) keeps its
  own, as when the key held the project's path.
- A result names files relative to the project root (the train stage's checkpoint, tasks/tracking/checkpoints.py),
  read against the root of the clone that reads it.
- A cached result whose files are not in this clone (a checkpoint trained on another worker) is fetched from the MLflow
  run that made it, which logged them; when that run lacks them, the stage runs again (``call_cached``'s
  ``outputs_exist`` is False). Data is not fetched by the cache: a clone gets data/ from DVC (`dvc pull`) or the
  prepare stage builds it again (its ``outputs_exist`` checks data/ against the recipe).
"""

import ast
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]
# Cached stage results are plain JSON (paths, metrics, recipes): nothing in them is code, and a result file is
# readable and diffable. Prefect's default, pickle, would run whatever a crafted result file holds when read back.
RESULT_SERIALIZER = "json"
PROJECT_PACKAGES = ("attn_models", "flows", "tasks")


def digest(*parts) -> str:
    """A stable sha256 of JSON-able parts (pydantic models are dumped first)."""
    plain = [part.model_dump(mode="json", by_alias=True) if hasattr(part, "model_dump") else part for part in parts]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def module_file(module: str, root: Path) -> Path | None:
    """The source file of a project module (a package's __init__.py), or None when there is none."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=512)
def _imports(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """Project modules a source file imports anywhere in it (top level or inside functions), as dotted names;
    `from package import name` counts as package.name when that is a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(name for name in names if name.split(".")[0] in PROJECT_PACKAGES)


def code_closure(*modules: str, root: Path | None = None) -> list[Path]:
    """The source files of the modules, the packages holding them and every project module they import, followed
    through the imports; sorted."""
    root = root or CODE_ROOT
    seen, files, pending = set(), set(), list(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is None:
            continue  # an imported name, not a module
        files.add(path)
        stat = path.stat()
        pending += [*_imports(path, stat.st_mtime_ns, stat.st_size), *parents(module)]
    return sorted(files)


def parents(module: str) -> list[str]:
    """'tasks.data.importers' -> ['tasks', 'tasks.data']: importing a module runs its packages' __init__ first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def code_fingerprint(*modules: str, root: Path | None = None) -> str:
    """sha256 over the relative paths and bytes of the modules' code closure."""
    root = root or CODE_ROOT
    sha = hashlib.sha256()
    for source in code_closure(*modules, root=root):
        sha.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes())
    return sha.hexdigest()


@dataclass(frozen=True)
class Stage:
    """What one stage reads, declared once; its cache key follows from it.

    params: what it reads of params.yaml: sub-sections of the task's section ("model"), or "global.<key>";
    upstream: the task arguments that hold earlier stages' results (a data recipe, a trained checkpoint);
    module: the stage's module. The code it runs is that module and, with kind_code, the task's kind's module and
    its model's, and the modules the spec names in the spec_code attributes, with all they import.
    """

    name: str
    params: tuple[str, ...]
    upstream: tuple[str, ...]
    module: str
    kind_code: bool = True
    spec_code: tuple[str, ...] = ()  # spec attributes naming more code it runs, 'module:function' (the explainer)
    # the files of the task's pretrained backbone (model.backbone), by their sha256: the same source path with other
    # files in it is another model to start from (only training reads them; later stages follow its checkpoint)
    backbone_files: bool = False
    # the pretrain stage's checkpoint the task's encoder starts from (argument `pretrained`), by its sha256: another
    # pretraining is another start. Added only when there is one, so the keys of tasks without are what they were.
    pretrained: bool = False

    def code_modules(self, spec) -> tuple[str, ...]:
        """The modules whose code the stage runs for a task of this kind (spec)."""
        if not self.kind_code:
            return (self.module,)
        named = [getattr(spec, attribute).partition(":")[0] for attribute in self.spec_code]
        return self.module, type(spec).__module__, spec.model_module, *named

    def param_values(self, params, task: str) -> dict:
        section = params.task(task)
        return {
            path: getattr(params.global_, path.removeprefix("global."))
            if path.startswith("global.")
            else getattr(section, path)
            for path in self.params
        }

    def task_options(self) -> dict:
        """The Prefect @task options every cached stage shares: named after the stage (one task run per task),
        keyed by cache_key, its result persisted as JSON in a storage that reads back nothing else."""
        from tasks.result_storage import RESULT_STORAGE

        return {
            "name": self.name,
            "task_run_name": f"{self.name}-{{task}}",
            "cache_key_fn": self.cache_key,
            "persist_result": True,
            "result_serializer": RESULT_SERIALIZER,
            "result_storage": RESULT_STORAGE,
        }

    def cache_key(self, _context, inputs: dict) -> str:
        """Prefect's cache_key_fn: the stage, the task, the MLflow store its result points into (not the
        project's path: the module docstring says why), what it reads and its code."""
        from tasks.params import redact
        from tasks.tracking.mlflow_tracking import tracking_uri

        task = inputs["task"]
        return f"{self.name}-" + digest(
            task,
            redact(tracking_uri(inputs["root"], inputs["params"])),
            self.param_values(inputs["params"], task),
            [inputs[name] for name in self.upstream],
            code_fingerprint(*self.code_modules(inputs["params"].kind(task))),
            *([backbone_digest(inputs["params"].task(task), inputs["root"], task)] if self.backbone_files else []),
            *([inputs["pretrained"]["checkpoint_sha256"]] if self.pretrained and inputs.get("pretrained") else []),
        )


def backbone_digest(section, root: Path, task: str) -> str | None:
    """The sha256 over the files of the section's pretrained backbone (tasks/backbones.py), None without one."""
    from tasks import backbones

    return backbones.lineage_of(section, root, task).get(backbones.SHA256_TAG)


def call_cached(stage, *, force: bool, outputs_exist, **inputs):
    """Run a cached stage, its result kept where global.results.storage says; run it afresh when forced or when a
    cached result's outputs are gone and cannot be fetched (outputs_exist, which may fetch them, is False)."""
    from tasks.result_storage import save_result_storage

    # where Prefect keeps the result: a block it must find on its server
    storage = save_result_storage(inputs["params"].global_.results.storage)
    result = stage.with_options(refresh_cache=force, result_storage=storage)(**inputs)
    if not outputs_exist(result):
        result = stage.with_options(refresh_cache=True, result_storage=storage)(**inputs)
    return result
