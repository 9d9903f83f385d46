"""Wall time of the pipeline with the task pipelines one after another (global.executor kind sequential) and at
once on a local Dask cluster (kind dask), as a user runs them (docs/benchmarks.md, "Parallel stages on a Dask cluster"):

    python benchmarks/executor.py --part sweep      # (b) a 4-configuration sweep of one task, sequential vs dask
    python benchmarks/executor.py --part pipeline   # (a) the default pipeline, `attnflow run` (about 25 min on 2 cores)
    python benchmarks/executor.py --part sweep --workers 4 --set tasks.digit-classification.train.epochs=10

Each measurement runs the command line in its own fresh clone of this checkout's HEAD commit (uncommitted changes are
not measured) with its own Prefect home: nothing is cached from another, and each generates its data, versions it with
DVC and trains from scratch. It prints a Markdown table, with the machine's cores and its load before each run (the
machine may be shared: the table says so).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.executor import cores  # noqa: E402

SWEEP_TASK = "digit-classification"  # the built-in image task
SWEEP_GRID = ["model.depth=2,4", "train.lr=0.001,0.002"]  # 4 configurations
# minutes, not an hour, on 2 shared cores
SWEEP_SETTINGS = [f"tasks.{SWEEP_TASK}.train.epochs=2", "global.compress.enabled=false"]


def clone(workspace: Path) -> Path:
    """A fresh clone of this checkout at its HEAD commit."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(workspace)], check=True)
    subprocess.run(["git", "fetch", "--quiet", str(REPO), "HEAD"], cwd=workspace, check=True)
    subprocess.run(["git", "checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"], cwd=workspace, check=True)
    return workspace


def with_settings(workspace: Path, settings: list[str], executor: dict) -> None:
    """The clone's params.yaml with the settings (key=value, YAML values) and global.executor written in."""
    from tasks.params import load_params, override, parse_assignment

    params = override(load_params(workspace / "params.yaml"), dict(parse_assignment(text) for text in settings))
    raw = params.model_dump(mode="json", by_alias=True)
    raw["global"]["executor"] = executor
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def timed(workspace: Path, arguments: list[str]) -> float:
    """Seconds the command line takes in the clone (its own code, its own Prefect home and temporary server)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(workspace / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(workspace))  # fmt: skip
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", *arguments], cwd=workspace, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def measure(name: str, arguments: list[str], settings: list[str], workers: int, kinds: list[str], scratch: Path):
    """The command timed with the executor sequential, then on a local cluster of ``workers`` processes (or the kinds
    asked for); the sequential row notes $OMP_NUM_THREADS when it is set (torch's threads in that one process)."""
    rows = []
    threads = f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})" if "OMP_NUM_THREADS" in os.environ else ""
    executors = {f"sequential{threads}": {"kind": "sequential"},
                 f"dask, {workers} workers": {"kind": "dask", "workers": workers}}  # fmt: skip
    for label, executor in executors.items():
        if executor["kind"] not in kinds:
            continue
        workspace = clone(scratch / f"{name}-{executor['kind']}")
        with_settings(workspace, settings, executor)
        before = load()
        seconds = timed(workspace, arguments)
        rows.append({"what": name, "executor": label, "seconds": seconds, "load": before})
        print(f"{name}, {label}: {seconds:.0f} s (load average before: {before})", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| measured | executor | wall time | vs sequential | load average before (1, 5, 15 min) |",
             "|---|---|---:|---:|---|"]  # fmt: skip
    sequential = {}
    for row in rows:
        base = sequential.setdefault(row["what"], row["seconds"])
        lines.append(f"| {row['what']} | {row['executor']} | {row['seconds']:.0f} s | {base / row['seconds']:.2f}x "
                     f"| {row['load']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["pipeline", "sweep", "both"], default="sweep")
    parser.add_argument("--executor", dest="kinds", action="append", choices=["sequential", "dask"],
                        help="measure only this executor (repeatable; default both)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="the local cluster's worker processes (default 2)")
    parser.add_argument("--set", dest="settings", action="append", default=None, metavar="KEY=VALUE",
                        help=f"a params setting for the sweep (default: {' '.join(SWEEP_SETTINGS)})")  # fmt: skip
    args = parser.parse_args(argv)
    rows, kinds = [], args.kinds or ["sequential", "dask"]
    with tempfile.TemporaryDirectory(prefix="attnflow-executor-") as scratch:
        if args.part in ("pipeline", "both"):
            rows += measure("default pipeline (`attnflow run`)", ["run"], [], args.workers, kinds, Path(scratch))
        if args.part in ("sweep", "both"):
            grid = [part for entry in SWEEP_GRID for part in ("--grid", entry)]
            name = f"sweep of {SWEEP_TASK}, 4 configurations"
            rows += measure(name, ["sweep", "--task", SWEEP_TASK, *grid],
                            args.settings or SWEEP_SETTINGS, args.workers, kinds, Path(scratch))  # fmt: skip
    print(f"{cores()} cores; python benchmarks/executor.py {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
