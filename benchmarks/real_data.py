"""Quality benchmarks on real datasets: run the pipeline on one of ../shared/datasets and record the result.

    python benchmarks/real_data.py ag_news                       # benchmarks/configs/ag_news.yaml
    python benchmarks/real_data.py ag_news --set train.epochs=2  # a shorter run (the override is recorded)
    make benchmark DATASET=ag_news

The dataset is imported into a throw-away clone of this checkout (outputs/benchmarks/<config>/), so it goes through
the same flows as the built-in data: an import into data/, a DVC version, a tracked MLflow run with its attention
maps and model. The clone is kept, so a re-run reuses the cached import. The result (metric, training time,
hardware, exact command, MLflow run) is appended to benchmarks/results/real_data.jsonl and the table in
docs/real_data.md is rewritten from that file: the newest result per config and device.

    python benchmarks/real_data.py speech_commands_12 --set train.budget_minutes=10 \
        --set model.time_shift_ms=100 --ablation "time shift 100 ms"

A run with ``--ablation LABEL`` goes to the ablation table instead, beside the newest run of the same config and
budget as configured: one change against the recipe, at the same training time.
"""

import argparse
import functools
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "benchmarks" / "configs"
RESULTS = REPO / "benchmarks" / "results" / "real_data.jsonl"
TABLE = REPO / "docs" / "real_data.md"
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
HAND_WRITTEN = "<!-- Written by hand from here on: benchmarks/real_data.py keeps it as it is. -->"


def load_config(name: str, datasets: Path) -> tuple[dict, str, dict]:
    """The params of a benchmark config, with import paths made absolute; its task; its `benchmark` block."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        sys.exit(f"error: {path} not found (configs: {known})")
    params = yaml.safe_load(path.read_text())
    target = params.pop("benchmark")  # {metric, target, dataset}: what the issue asks of this dataset
    (task,) = params["tasks"]  # a config holds one task
    from tasks.kinds.base import SPLIT_FILE_KEYS

    import_from = params["tasks"][task]["data"]["import_from"]
    for spec in (import_from, *(import_from.get(split) for split in SPLIT_FILE_KEYS)):
        if spec is not None:  # paths in configs are relative to the datasets folder
            spec["path"] = str(datasets / spec["path"])
    backbone = params["tasks"][task]["model"].get("backbone")
    if backbone and backbone["source"].startswith("."):  # a pretrained folder beside the datasets (not a hub id)
        backbone["source"] = str((datasets / backbone["source"]).resolve())
    return params, task, target


def apply_overrides(params: dict, task: str, overrides: list[str]) -> dict:
    """--set train.epochs=2 -> params['tasks'][task]['train']['epochs'] = 2 (validated with the rest of the params)."""
    from tasks.params import Params, with_overrides

    values = {}
    for item in overrides:
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    return with_overrides(Params.model_validate(params), task, values).model_dump(mode="json", by_alias=True)


def prepare_workspace(workspace: Path) -> None:
    """A clone of this checkout at its HEAD commit (uncommitted changes are not benchmarked): its own git repo,
    data/, data.dvc, DVC remote and MLflow store. The run records the commit (its git_sha tag)."""
    if not (workspace / ".git").is_dir():
        workspace.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(workspace)], check=True)
    subprocess.run(["git", "fetch", "--quiet", str(REPO), "HEAD"], cwd=workspace, check=True)
    subprocess.run(["git", "checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"], cwd=workspace, check=True)


def hardware() -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "gpu": gpu, "device": "cuda" if gpu else "cpu"}


def newest_run(workspace: Path, params: dict, task: str, since_ms: int) -> dict:
    """The task run the benchmark just made: its test metrics, training time and lineage."""
    from mlflow.tracking import MlflowClient

    from tasks.params import Params
    from tasks.tracking.mlflow_tracking import experiment_name, tracking_uri

    loaded = Params.model_validate(params)
    client = MlflowClient(tracking_uri(workspace, loaded))
    experiment = client.get_experiment_by_name(experiment_name(loaded, task))
    (run,) = client.search_runs(
        [experiment.experiment_id],
        f"attributes.start_time >= {since_ms} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    trained_by = client.get_run(run.data.tags.get("cached_from_run_id", run.info.run_id))  # a cached result's origin
    return {
        "run_id": run.info.run_id,
        "metrics": {k: round(v, 4) for k, v in run.data.metrics.items() if k.startswith("test_")},
        "train_seconds": round(trained_by.data.metrics["train_seconds"], 1),
        "schedule": trained_by.data.tags.get("train_schedule"),  # a time budget's plan (tasks/training/budget.py)
        "data_md5": run.data.tags["data_md5"],
        "git_sha": run.data.tags["git_sha"],
        "device": run.data.tags["device"],
    }


def against_trainer(workspace: Path, params: dict, task: str) -> dict:
    """Fine-tune the task's backbone on the split the pipeline just trained on, with Hugging Face's Trainer and the
    task's schedule (benchmarks/hf_trainer.py), in a process of its own like the pipeline's: its training time and
    accuracies."""
    section = params["tasks"][task]
    backbone, train = section["model"].get("backbone"), section["train"]
    if not backbone:
        sys.exit(f"error: --against-trainer needs tasks.{task}.model.backbone in the config (a pretrained model)")
    command = [
        sys.executable, "-m", "benchmarks.hf_trainer", str(workspace / "data" / task),
        "--backbone", backbone["source"],
        "--epochs", str(train["epochs"]), "--batch-size", str(train["batch_size"]),
        "--lr", str(backbone.get("lr") or train["lr"]),
        "--max-len", str(section["model"]["max_len"] + SPECIAL_TOKENS),
        "--weight-decay", str(train.get("weight_decay", 0.0)), "--warmup-epochs", str(train.get("warmup_epochs", 0)),
        "--seed", str(params["global"]["seed"]),
        *(["--max-steps", str(train["max_steps"])] if train.get("max_steps") else []),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: benchmarks/hf_trainer.py failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


SPECIAL_TOKENS = 2  # a BERT-style tokenizer's [CLS] and [SEP]: the Trainer's max_length counts them, model.max_len not


def trainer_table(results) -> list[str]:
    """Runs with --against-trainer: the pipeline's fine-tuning against the Trainer's on the same split and schedule."""
    lines = [
        "",
        "## Against Hugging Face's Trainer",
        "",
        "Runs with `--against-trainer`: the same backbone, split and schedule fine-tuned by `transformers.Trainer` in",
        'a bare script (`benchmarks/hf_trainer.py`), right after the pipeline, in the same invocation. "train" is',
        "each one's training loop alone; the issue asks for at most 1.2x the Trainer's time and a test accuracy",
        "within 0.5 points of it.",
        "",
        "| dataset | pipeline train | Trainer train | ratio | pipeline test | Trainer test | difference | hardware | "
        "commit | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        trainer, ours = result["trainer"], result["metrics"].get("test_accuracy")
        lines.append(
            f"| {result['dataset']} | {result['train_seconds'] / 60:.1f} min | {trainer['train_seconds'] / 60:.1f} min "
            f"| {result['train_seconds'] / trainer['train_seconds']:.2f}x | {ours} | {trainer['test_accuracy']} | "
            f"{(ours - trainer['test_accuracy']) * 100:+.1f} points | {hardware_name(result)} | "
            f"{result['git_sha'][:8]} | `{result['command']}` |"
        )
    return lines


def write_table(results: list[dict]) -> None:
    newest, budgeted, ablations = {}, {}, {}
    for result in results:  # the newest result per config and device (and budget, and ablation: tables of their own)
        if result.get("ablation"):
            ablations[
                (result["config"], result["hardware"]["device"], result["ablation"], result.get("budget_minutes"))
            ] = result
        elif result.get("budget_minutes") is None:
            newest[(result["config"], result["hardware"]["device"])] = result
        else:
            budgeted[(result["config"], result["hardware"]["device"], result["budget_minutes"])] = result
    lines = [
        "# Quality on real datasets",
        "",
        "Written by `benchmarks/real_data.py` from `benchmarks/results/real_data.jsonl` "
        "(every run it made, newest last);",
        "the newest result per config and device. Datasets: `../shared/datasets/` (see its README). Each run imports",
        "the dataset into a clone of the project, versions it with DVC and trains, evaluates and logs it through the",
        'pipeline flows; "train" is the train stage\'s wall time, "total" the whole `attnflow run`.',
        "",
        "| dataset | metric | result | target | met | train | total | hardware | commit | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in sorted(newest.values(), key=lambda r: (r["dataset"], r["config"])):
        value, target, met = against_target(result)
        where = hardware_name(result)
        lines.append(
            f"| {result['dataset']} | {result['metric']} | {value} | >= {target:g} | {met} | "
            f"{result['train_seconds'] / 60:.1f} min | {result['total_seconds'] / 60:.1f} min | {where} | "
            f"{result['git_sha'][:8]} | `{result['command']}` |"
        )
    lines += note_lines(newest.values(), lambda r: r["config"])
    if budgeted:
        lines += budget_table(budgeted.values())
    if ablations:
        lines += ablation_table(ablations.values(), results)
    compared = {(r["config"], r["hardware"]["device"]): r for r in results if r.get("trainer")}
    if compared:
        lines += trainer_table(compared.values())
    TABLE.write_text("\n".join(lines) + "\n" + written_by_hand())


def written_by_hand() -> str:
    """What the table's file holds from the HAND_WRITTEN line on (measurements no run of this script makes, e.g.
    benchmarks/decoding_grid.py's): kept as it is when the tables are written again."""
    text = TABLE.read_text() if TABLE.is_file() else ""
    return "\n" + text[text.index(HAND_WRITTEN) :] if HAND_WRITTEN in text else ""


def against_target(result: dict) -> tuple[float | None, float, str]:
    """A run's result, the target its config asks for now (a target raised since the run counts; the run's own
    when the config is gone) and whether the result meets it ("yes"/"no")."""
    path = CONFIGS / f"{result['config']}.yaml"
    target = yaml.safe_load(path.read_text())["benchmark"]["target"] if path.is_file() else result["target"]
    value = result["metrics"].get(result["metric"])
    return value, target, "yes" if value is not None and value >= target else "no"


def note_lines(results, name) -> list[str]:
    """A table's notes: a line per result with a --note, led by name(result) in bold."""
    notes = [r for r in results if r.get("note")]
    return ["", "Notes:", ""] + [f"- **{name(r)}**: {r['note']}" for r in notes] if notes else []


def hardware_name(result: dict) -> str:
    return result["hardware"]["gpu"] or f"{result['hardware']['cpu_cores']}-core CPU ({result['hardware']['cpu']})"


def budget_table(results) -> list[str]:
    """Runs with train.budget_minutes: the plan each made and how close its training came to the budget."""
    lines = [
        "",
        "## Time-budgeted training",
        "",
        "Runs with `train.budget_minutes` (docs/how-to/time-budgets.md): the last plan the train stage made",
        '(and the schedule it chose), and its training time ("train": the train stage\'s training, from the built',
        "model to the saved checkpoint) against the budget. `train.epochs` is then only a cap.",
        "",
        "| dataset | budget | plan | train | train / budget | metric | result | target | met | hardware | commit "
        "| command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    results = sorted(results, key=lambda r: (r["dataset"], r["budget_minutes"]))
    for result in results:
        share = result["train_seconds"] / (60 * result["budget_minutes"])
        value, target, met = against_target(result)
        lines.append(
            f"| {result['dataset']} | {result['budget_minutes']:g} min | {result['schedule']} | "
            f"{result['train_seconds'] / 60:.1f} min | {share:.2f} | {result['metric']} | {value} | >= {target:g} | "
            f"{met} | {hardware_name(result)} | {result['git_sha'][:8]} | "
            f"`{result['command']}` |"
        )
    return lines + note_lines(results, lambda r: f"{r['config']}, {r['budget_minutes']:g} min")


def budget_name(result: dict) -> str:
    return f"{result['budget_minutes']:g} min" if result.get("budget_minutes") else "epochs"


@functools.cache
def config_at(sha: str, config: str) -> str | None:
    """The text of a benchmark config at a commit of this repository; None where the commit is not here."""
    shown = subprocess.run(
        ["git", "show", f"{sha}:benchmarks/configs/{config}.yaml"], cwd=REPO, capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


def settings(result: dict) -> dict:
    """The --set values of a result's command, by key."""
    return {key: yaml.safe_load(value) for key, value in re.findall(r"--set (\S+?)=(\S+)", result["command"])}


def recipe(result: dict, keys=None) -> dict | None:
    """What a result ran: its config at its commit (without the benchmark block) with its command's --set values
    applied, only those of ``keys`` when given; None when the commit is not in this repository. Compared as
    written, not validated, so that a run from before a params key existed still matches a later one of the same
    recipe. A config is read in the layout of its commit: one named task under `tasks`, or (before tasks had names)
    one section named after its kind; the recipe is that section and `global`, without the keys that named them."""
    text = config_at(result["git_sha"], result["config"])
    if text is None:
        return None
    config = yaml.safe_load(text)
    config.pop("benchmark", None)
    global_settings = dict(config.get("global", {}))
    if "tasks" in config:
        [task] = config["tasks"].values()
    else:
        [kind] = global_settings.pop("modalities")
        task = config[kind]
        task.pop("task", None)
    task = {key: value for key, value in task.items() if key != "kind"}
    for key, value in settings(result).items():
        if keys is None or key in keys:
            *parents, leaf = key.split(".")
            section = task
            for name in parents:
                section = section.setdefault(name, {})
            section[leaf] = value
    return {"global": global_settings, "task": task}


def reference_run(ablation: dict, results: list[dict]) -> dict | None:
    """The run an ablation is measured against, the nearest in time of those on the same device and budget whose
    recipe is the ablation's config as written at its commit with the ablation's values of the keys that run sets
    (its budget, and settings the two share, such as the CIFAR-10 subset's mixing turned off for a quick pair), and
    is not the ablation's own recipe. So a config that has since taken up an earlier ablation's change (the CIFAR-10
    subset's mixing) is compared with that run."""
    own = recipe(ablation)
    if own is None:
        return None
    candidates = [
        r for r in results
        if r is not ablation and r["config"] == ablation["config"]
        and r["hardware"]["device"] == ablation["hardware"]["device"]
        and r.get("budget_minutes") == ablation.get("budget_minutes")
    ]  # fmt: skip
    same = [r for r in candidates if (ran := recipe(r)) not in (None, own) and ran == recipe(ablation, settings(r))]
    when = datetime.fromisoformat(ablation["date"]).timestamp()
    return min(same, key=lambda r: abs(datetime.fromisoformat(r["date"]).timestamp() - when), default=None)


def ablation_table(results, everything: list[dict]) -> list[str]:
    """Runs with --ablation: each beside its reference run (the config as written, same budget and device)."""
    lines = [
        "",
        "## Ablations",
        "",
        "One change to a config (its `--set` keys) against the config as written at the same commit, the same time",
        "budget and seed: the run of that recipe nearest in time (an earlier ablation's run when the config has since",
        "taken up its change); the newest run of each.",
        "",
        "| dataset | budget | change | metric | result | against as configured | target | met | train | commit "
        "| command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in sorted(results, key=lambda r: (r["dataset"], r.get("budget_minutes") or 0, r["date"])):
        value, target, met = against_target(result)
        reference = reference_run(result, everything)
        base = reference["metrics"].get(reference["metric"]) if reference else None
        against = f"{value - base:+.4f} (from {base})" if base is not None and value is not None else "no reference"
        budget = budget_name(result)
        lines.append(
            f"| {result['dataset']} | {budget} | {result['ablation']} | {result['metric']} | {value} | {against} | "
            f">= {target:g} | {met} | {result['train_seconds'] / 60:.1f} min | {result['git_sha'][:8]} | "
            f"`{result['command']}` |"
        )
    return lines + note_lines(results, lambda r: f"{r['config']}, {budget_name(r)}, {r['ablation']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a file name in benchmarks/configs/ without .yaml, e.g. ag_news")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the task's section, e.g. train.epochs=2 (repeatable)",
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="folder of the real datasets")
    parser.add_argument(
        "--workspace", type=Path, help="the project clone to run in (default outputs/benchmarks/CONFIG)"
    )
    parser.add_argument("--note", help="a remark recorded with the result (e.g. what limits it)")
    parser.add_argument("--ablation", metavar="LABEL", help="record the run as this change to the config (its table)")
    parser.add_argument(
        "--against-trainer",
        action="store_true",
        help="then fine-tune its backbone with Hugging Face's Trainer on the same split (benchmarks/hf_trainer.py)",
    )
    args = parser.parse_args(argv)
    if not args.datasets.is_dir():
        sys.exit(f"error: {args.datasets} not found: the real datasets sit in ../shared/datasets beside the checkout")

    params, task, benchmark = load_config(args.config, args.datasets.resolve())
    params = apply_overrides(params, task, args.overrides)
    workspace = (args.workspace or REPO / "outputs" / "benchmarks" / args.config).resolve()
    prepare_workspace(workspace)
    params_path = workspace / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    words = (
        [args.config, *(f"--set {o}" for o in args.overrides)]
        + ([f"--ablation '{args.ablation}'"] if args.ablation else [])
        + (["--against-trainer"] if args.against_trainer else [])
    )
    command = "python benchmarks/real_data.py " + " ".join(words)
    since_ms = int(time.time() * 1000)
    started = time.perf_counter()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(workspace)}
    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--params", str(params_path)], cwd=workspace, env=env
    )
    total = time.perf_counter() - started
    if run.returncode != 0:
        print(f"error: the pipeline failed (exit {run.returncode}); nothing recorded", file=sys.stderr)
        return run.returncode
    result = {
        "config": args.config,
        "dataset": benchmark["dataset"],
        "metric": benchmark["metric"],
        "target": benchmark["target"],
        "command": command,
        "hardware": hardware(),
        "total_seconds": round(total, 1),
        "budget_minutes": params["tasks"][task]["train"].get("budget_minutes"),
        "workspace": str(workspace),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **newest_run(workspace, params, task, since_ms),
        **({"note": args.note} if args.note else {}),
        **({"ablation": args.ablation} if args.ablation else {}),
    }
    if args.against_trainer:
        result["trainer"] = against_trainer(workspace, params, task)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as file:
        file.write(json.dumps(result) + "\n")
    write_table([json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()])
    print(json.dumps(result, indent=2))
    print(
        f"\n{TABLE.relative_to(REPO)} updated; MLflow UI: mlflow ui --backend-store-uri "
        f"sqlite:///{workspace / 'mlflow.db'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
