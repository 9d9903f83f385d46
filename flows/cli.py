"""Command line: `attnflow run | reproduce | sweep | compare | serve | status` (see `attnflow -h`).

Each command imports what it needs when it runs: `attnflow run` starts Prefect's server first, so the server comes
up while MLflow, Prefect and the pipeline import (seconds each).
"""

import argparse
import importlib
import sys
from contextlib import contextmanager
from pathlib import Path

from tasks.modalities import MODALITIES, get
from tasks.params import ParamsError, load_params, project_root

EXIT_INVALID, EXIT_MISMATCH, EXIT_CODE_CHANGED = 2, 1, 3


def print_table(rows: list[dict], columns: list[str]) -> None:
    from tasks.tracking.compare import as_table

    print(as_table([{column: row[column] for column in columns} for row in rows]))


@contextmanager
def flows_module(module: str):
    """Import a flows module (torch, MLflow and Prefect: seconds) and point Prefect at a server for its flows.

    With no server configured ($PREFECT_API_URL or a profile's api.url) a temporary one is started first, so it
    comes up while the module imports, and it is stopped on exit (Prefect's own temporary server would start
    only at the first flow call, and load the server's code into this process first).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        PREFECT_UI_URL,
        temporary_settings,
    )

    from tasks.scheduling.server import start_temporary_server, stop_server, wait_until_up

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        yield importlib.import_module(module)
        return
    home = PREFECT_HOME.value()
    process, api_url = start_temporary_server(home)
    try:
        imported = importlib.import_module(module)
        wait_until_up(api_url, process, home / "temporary-server.log")
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ""}):  # no UI: no "View at" links
            yield imported
    finally:
        stop_server(process)  # drains this process's logs first


def run(args) -> int:
    params = load_params(args.params)  # fail fast, before Prefect starts
    with flows_module("flows.pipeline") as pipeline:
        result = pipeline.attention_pipeline(
            params_path=args.params, modalities=args.modality or None, force=args.force
        )
    from tasks.tracking.mlflow_tracking import tracking_uri

    uri = tracking_uri(project_root(args.params), params)
    print("\nResults")
    rows = [
        {
            "modality": m,
            "test metrics": ", ".join(f"{name} {r[name]:.4f}" for name in get(m).metrics),
            "run_id": r["run_id"],
            "cached_from_run_id": r["cached_from_run_id"] or "-",
        }
        for m, r in result["modalities"].items()
    ]
    print_table(rows, ["modality", "test metrics", "run_id", "cached_from_run_id"])
    for modality, metrics in result["modalities"].items():
        if metrics["promotion"]:
            promotion = metrics["promotion"]
            print(
                f"  {modality}: {promotion['registered_model']} v{promotion['version']} -> {promotion['alias']}: "
                f"{promotion['reason']}"
            )
    print(f"  data version (data.dvc md5): {result['data_md5']}")
    print(
        f"  MLflow store: {uri}  (experiment '{params.global_.tracking.experiment}',"
        f" pipeline run {result['parent_run_id']})"
    )
    print(f"  Open the MLflow UI: make ui   (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)")
    return 0


def reproduce(args) -> int:
    with flows_module("flows.experiments") as experiments:
        try:
            result = experiments.reproduce(
                args.run_id, params_path=args.params, allow_code_change=args.allow_code_change
            )
        except experiments.CodeChangedError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_CODE_CHANGED
    print(
        f"\nReproduced run {args.run_id} as run {result['run_id']} on data version {result['data_md5']}"
        f" (restored from DVC; the re-run versioned it as {result['restored_data_md5']})"
    )
    print_table(
        [{"metric": name, **row} for name, row in result["metrics"].items()],
        ["metric", "original", "reproduced", "match"],
    )
    print("exact match" if result["match"] else "MISMATCH")
    return 0 if result["match"] else EXIT_MISMATCH


def sweep(args) -> int:
    with flows_module("flows.experiments") as experiments:
        result = experiments.sweep(args.modality, experiments.parse_grid(args.grid), params_path=args.params)
    spec = get(args.modality)
    print(f"\nSweep {result['sweep_id']} ({args.modality}), ranked by {spec.primary_metric}")
    print_table(result["rows"], [*result["keys"], *spec.metrics, "run_id"])
    return 0


def serve(args) -> int:
    from flows.schedule import serve_pipeline

    load_params(args.params)  # fail fast, before a server starts
    serve_pipeline(args.params)
    return 0


def status(args) -> int:
    from flows.schedule import pipeline_status
    from tasks.scheduling.server import ServerUnavailable

    try:
        entries = pipeline_status(args.params)
    except ServerUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not entries:
        print("no deployments of the pipeline yet; create them with `attnflow serve`")
    for entry in entries:
        print(f"{entry['name']}{'  (paused)' if entry['paused'] else ''}")
        print(f"  schedule: {', '.join(entry['schedules']) or 'none'}   parameters: {entry['parameters']}")
        print(f"  next run: {entry['next'] or 'none scheduled'}")
        print("  last runs:" + ("" if entry["last_runs"] else " none"))
        for name, state, when in entry["last_runs"]:
            print(f"    {when}  {state:<10} {name}")
    return 0


def compare(args) -> int:
    from tasks.tracking import compare as comparison
    from tasks.tracking.mlflow_tracking import connect

    params = load_params(args.params)
    modality = next((m for m in params.present_modalities() if args.task in (m, params.section(m).task)), None)
    if modality is None:
        tasks = ", ".join(params.section(m).task for m in params.present_modalities())
        print(f"error: unknown task {args.task!r}; choose from {tasks} (or a modality)", file=sys.stderr)
        return 2
    client, experiment_id = connect(project_root(args.params), params, modality)
    rows = comparison.compare_runs(client, experiment_id, modality, args.sweep)
    print(comparison.as_table(rows))
    if args.markdown:
        Path(args.markdown).write_text(comparison.as_markdown(rows))
    if args.csv:
        Path(args.csv).write_text(comparison.as_csv(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnflow", description="Attention-model pipeline: Prefect, MLflow, DVC.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file; its folder is the project")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser(
        "run", parents=[common], help="run the pipeline: prepare, version, train, evaluate"
    )
    run_parser.add_argument(
        "--modality",
        action="append",
        choices=MODALITIES,
        help="a modality to run (repeatable); default: global.modalities in params.yaml",
    )
    run_parser.add_argument("--force", action="store_true", help="ignore the stage cache and run every stage")
    run_parser.set_defaults(handler=run)

    reproduce_parser = commands.add_parser(
        "reproduce", parents=[common], help="re-run a tracked modality run and compare its metrics"
    )
    reproduce_parser.add_argument("run_id")
    reproduce_parser.add_argument(
        "--allow-code-change", action="store_true", help="go on when the code differs from the run's recorded commit"
    )
    reproduce_parser.set_defaults(handler=reproduce)

    sweep_parser = commands.add_parser(
        "sweep", parents=[common], help="run a grid of parameters for one modality and rank the runs"
    )
    sweep_parser.add_argument("--modality", required=True, choices=MODALITIES)
    sweep_parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a key of the modality's section and its values, e.g. model.depth=1,2 (repeatable)",
    )
    sweep_parser.set_defaults(handler=sweep)

    serve_parser = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the pipeline on params.yaml's "
        "global.schedule (starts a local Prefect server unless PREFECT_API_URL is set)",
    )
    serve_parser.set_defaults(handler=serve)
    status_parser = commands.add_parser(
        "status", parents=[common], help="list the pipeline's deployments, next and last runs"
    )
    status_parser.set_defaults(handler=status)

    compare_parser = commands.add_parser(
        "compare", parents=[common], help="table of a task's runs, best first (test_accuracy, test_bleu)"
    )
    compare_parser.add_argument(
        "--task", required=True, help="a task from params.yaml (e.g. language-id) or a modality"
    )
    compare_parser.add_argument("--sweep", help="only the runs of this sweep (its sweep_id)")
    compare_parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    compare_parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    compare_parser.set_defaults(handler=compare)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
