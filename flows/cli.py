"""Command line: `attnflow run | reproduce | sweep | compare | schedule | model | monitor` (see `attnflow -h`).

Each command imports what it needs when it runs: `attnflow run` starts Prefect's server first, so the server comes
up while MLflow, Prefect and the pipeline import (seconds each). A user's mistake (bad params, a bad --set or --grid,
an unknown run id or task, a missing file, data an importer rejects) ends the command with one line on stderr and
the exit code of its kind (``EXIT_CODES``), checked before any server starts where it can be; the full traceback of
anything logged goes to the log file (flows/logging.yml), never to the terminal.
"""

import argparse
import atexit
import gc
import importlib
import os
import signal
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

from tasks import backbones, stopping
from tasks.errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    AttnflowError,
    UserError,
)
from tasks.executor import check_reachable
from tasks.lineage import is_commit
from tasks.params import (
    ParamsError,
    configurations,
    load_params,
    override,
    parse_assignment,
    parse_grid,
    project_root,
    redact,
)
from tasks.serving.server import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV
from tasks.tracking.store import tracking_uri

TRACKING_SERVER_TIMEOUT_S = 10  # how long `check_tracking_server` waits for an answer

EXAMPLES = """examples:
  attnflow run                                   the tasks of params.yaml (global.tasks, else all of them)
  attnflow run --task digit-classification --set tasks.digit-classification.train.epochs=5 --set global.seed=7
  attnflow sweep --task language-id --grid model.depth=1,2 --grid train.lr=0.001,0.003
  attnflow compare --task digit-classification --markdown runs.md
  attnflow schedule serve                        run the pipeline on global.schedule (a local Prefect server)
  PREFECT_API_URL=http://SERVER:4200/api attnflow schedule deploy --pool attnflow   workers run the schedule
  attnflow reproduce 3f2c...                     a task run's id, from the MLflow UI or `attnflow run`
  ATTNFLOW_SERVE_TOKEN=... attnflow model serve --task digit-classification --host 0.0.0.0 [--variant compact]
  attnflow monitor --task digit-classification   compare served answers with the model's test split

exit codes:
""" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def print_table(rows: list[dict], columns: list[str]) -> None:
    from tasks.tracking.compare import as_table

    print(as_table([{column: row[column] for column in columns} for row in rows]))


@contextmanager
def flows_module(module: str, params_path: str):
    """Import a flows module (torch, MLflow and Prefect: seconds) and point Prefect at a server for its flows, under
    the project's lock (tasks/locking.py): a second command in the same project waits here, saying so, before it
    starts anything (two temporary servers on one Prefect database would race on its migrations).

    With no server configured ($PREFECT_API_URL or a profile's api.url) a temporary one is started first, so it
    comes up while the module imports, and it is stopped on exit (Prefect's own temporary server would start
    only at the first flow call, and load the server's code into this process first).
    """
    from tasks.locking import project_lock

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with project_lock(project_root(params_path), on_wait=say), prefect_server_for(module) as imported:
        yield imported


@contextmanager
def prefect_server_for(module: str):
    """Import module with Prefect pointed at the configured server, or at a temporary one started for it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        PREFECT_UI_URL,
        temporary_settings,
    )

    from tasks.scheduling.server import TEMPORARY_STOP_S, start_temporary_server, stop_server, wait_until_up

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        yield importlib.import_module(module)
        return
    home = PREFECT_HOME.value()
    process, api_url = start_temporary_server(home)
    try:
        imported = importlib.import_module(module)
        wait_until_up(api_url, process, home / "temporary-server.log")
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ""}),
            everywhere(api_url),
        ):
            yield imported
    finally:
        stop_server(process, TEMPORARY_STOP_S)  # drains this process's logs first


@contextmanager
def everywhere(api_url: str):
    """The temporary server for every thread and child process of this one, not only this thread's context.

    temporary_settings holds for the contexts that copy this thread's; a thread started with a context of its own
    (Prefect restarts its log worker after a failed send, as it did under heavy load) reads Prefect's process-global
    settings, and a child process its environment. Finding no server configured, either would start Prefect's own
    temporary server, on another database, and leave it running. So the settings become the process-global ones too
    (as Prefect's own test harness does, prefect.testing.utilities.prefect_test_harness), and PREFECT_API_URL is set
    in the environment; both are put back on the way out."""
    from prefect.context import _temporary_global_settings_context, get_settings_context

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with _temporary_global_settings_context(get_settings_context()):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def params_with_overrides(args):
    """The params file with each --set applied (validated like the file); and the overrides as one string."""
    params = load_params(args.params)
    if not args.set:
        return params, ""
    try:
        return override(params, dict(parse_assignment(text) for text in args.set)), " ".join(args.set)
    except ParamsError as error:
        raise ParamsError(f"--set {' '.join(args.set)}: {error}") from None


def check_tracking_server(uri: str) -> None:
    """A tracking server (an http(s) URI) that does not answer: say so at once, naming where the URI comes from
    (MLflow would retry for minutes, then fail with a traceback). Any HTTP answer will do: a proxy in front of the
    server may ask for credentials, which MLflow sends and this check does not."""
    import httpx

    if not uri.startswith(("http://", "https://")):
        return
    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=TRACKING_SERVER_TIMEOUT_S)
    except httpx.TransportError as error:
        raise UserError(
            f"no MLflow tracking server answers at {redact(uri)} (global.tracking.uri in params.yaml, else "
            f"MLFLOW_TRACKING_URI): {type(error).__name__}"
        ) from None


def run(args) -> int:
    params, overrides = params_with_overrides(args)  # fail fast, before Prefect starts
    for name in args.task or ():
        params.task(name)  # an unknown one: ParamsError naming the tasks there are
    check_tracking_server(tracking_uri(project_root(args.params), params))
    check_reachable(params.global_.executor)
    backbones.check_sources(params, project_root(args.params), args.task or params.selected_tasks())
    with flows_module("flows.pipeline", args.params) as pipeline:
        result = pipeline.attention_pipeline(
            params_path=args.params,
            tasks=args.task or None,
            force=args.force,
            params=params if overrides else None,
            tags={"cli_overrides": overrides} if overrides else None,
        )
    uri = redact(tracking_uri(project_root(args.params), params))
    print("\nResults")
    rows = [
        {
            "task": name,
            "test metrics": ", ".join(f"{metric} {r[metric]:.4f}" for metric in params.kind(name).metrics),
            "run_id": r["run_id"],
            "cached_from_run_id": r["cached_from_run_id"] or "-",
        }
        for name, r in result["tasks"].items()
    ]
    print_table(rows, ["task", "test metrics", "run_id", "cached_from_run_id"])
    for task, metrics in result["tasks"].items():
        if metrics["promotion"]:
            promotion = metrics["promotion"]
            print(
                f"  {task}: {promotion['registered_model']} v{promotion['version']} -> {promotion['alias']}: "
                f"{promotion['reason']}"
            )
    print(f"  data version (data.dvc md5): {result['data_md5']}")
    print(
        f"  MLflow store: {uri}  (experiment '{params.global_.tracking.experiment}',"
        f" pipeline run {result['parent_run_id']})"
    )
    if uri.startswith(("http://", "https://")):
        print(f"  Open the MLflow UI: {uri}")
    else:
        print(f"  Open the MLflow UI: make ui   (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)")
    return 0


def check_run_exists(params_path: str, run_id: str) -> None:
    """The run is a task run of this project's tracking store (checked before a server starts)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(project_root(params_path), load_params(params_path))
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise UserError(f"no run {run_id!r}: there is no MLflow store at {redact(uri)} yet (no pipeline has run)")
    check_tracking_server(uri)
    try:
        run = MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id!r} in the MLflow store {redact(uri)}") from None
    if "kind" not in run.data.tags:
        raise UserError(f"run {run_id} is not a task run (a pipeline run? pick one of its task runs)")
    if not is_commit(run.data.tags.get("git_sha", "")):
        raise UserError(
            f"run {run_id} records no commit (git_sha {run.data.tags.get('git_sha')!r}): cannot check the code"
        )


def reproduce(args) -> int:
    check_run_exists(args.params, args.run_id)
    with flows_module("flows.experiments", args.params) as experiments:
        result = experiments.reproduce(args.run_id, params_path=args.params, allow_code_change=args.allow_code_change)
    print(
        f"\nReproduced run {args.run_id} as run {result['run_id']} on data version {result['data_md5']}"
        f" (restored from DVC; the re-run versioned it as {result['restored_data_md5']})"
    )
    print_table(
        [{"metric": name, **row} for name, row in result["metrics"].items()],
        ["metric", "original", "reproduced", "match"],
    )
    print("exact match" if result["match"] else "MISMATCH")
    return 0 if result["match"] else EXIT_FAILED


def sweep(args) -> int:
    grid = parse_grid(args.grid)
    params = load_params(args.params)
    configurations(params, args.task, grid)  # every combination valid, before any server
    check_tracking_server(tracking_uri(project_root(args.params), params))
    check_reachable(params.global_.executor)
    with flows_module("flows.experiments", args.params) as experiments:
        result = experiments.sweep(args.task, grid, params_path=args.params, register=not args.no_register)
    spec = params.kind(args.task)
    print(f"\nSweep {result['sweep_id']} ({args.task}), ranked by {result['ranked_by']} (validation)")
    print_table(result["rows"], [*result["keys"], result["ranked_by"], *spec.metrics, "run_id"])
    promotion = result["promotion"]
    if promotion:
        print(f"  winner: {promotion['registered_model']} v{promotion['version']} -> {promotion['alias']}: "
              f"{promotion['reason']}")  # fmt: skip
    elif result["registered"]:
        print("  winner: already registered when its run was made (every stage came from the cache)")
    else:
        print("  no model registered (--no-register)")
    return 0


def serve(args) -> int:
    from flows.schedule import serve_pipeline

    load_params(args.params)  # fail fast, before a server starts
    serve_pipeline(args.params)
    return 0


def deploy(args) -> int:
    """The scheduled deployments on a work pool of the Prefect server, for its workers (docs/how-to/work-pools.md)."""
    from flows.schedule import WorkPoolMissing, deploy_to_pool
    from tasks.scheduling.server import ServerUnavailable

    load_params(args.params)  # fail fast, before the server is asked
    if not args.pool.strip():
        raise UserError("--pool needs the name of a work pool (make deploy POOL=NAME)")
    try:
        api_url, names = deploy_to_pool(args.params, args.pool)
    except ServerUnavailable as error:
        raise UserError(str(error), EXIT_FAILED) from None
    except WorkPoolMissing as error:
        raise UserError(str(error)) from None
    for name in names:
        print(f"deployed {name} to the work pool {args.pool!r} on {api_url}")
    print(f"start a worker where this checkout is (same path): prefect worker start --pool {args.pool}")
    return 0


def status(args) -> int:
    from flows.schedule import pipeline_status
    from tasks.scheduling.server import ServerUnavailable

    try:
        entries = pipeline_status(args.params)
    except ServerUnavailable as error:
        raise UserError(str(error), EXIT_FAILED) from None
    if not entries:
        print("no deployments of the pipeline yet; create them with `attnflow schedule serve`")
    for entry in entries:
        print(f"{entry['name']}{'  (paused)' if entry['paused'] else ''}")
        print(f"  schedule: {', '.join(entry['schedules']) or 'none'}   parameters: {entry['parameters']}")
        print(f"  next run: {entry['next'] or 'none scheduled'}")
        print("  last runs:" + ("" if entry["last_runs"] else " none"))
        for name, state, when in entry["last_runs"]:
            print(f"    {when}  {state:<10} {name}")
    return 0


def serve_model(args) -> int:
    """Serve a registered version of a task's model (tasks/serving/server.py). Everything a user can get wrong (the
    task, the address without a token, the token file, the port, the store, the alias) is checked before the model
    loads, and each ends in one line."""
    from functools import partial

    from tasks.monitoring.request_log import log_answers, request_log_for
    from tasks.serving import server
    from tasks.tracking.registry import CHAMPION, registered_model_name

    params = load_params(args.params)
    params.task(args.task)  # an unknown task: ParamsError naming the tasks there are
    name, alias = registered_model_name(params, args.task), args.variant or CHAMPION
    try:
        token = server.read_token(args.token_file, os.environ)
        server.check_bind(args.host, token)
        uri = tracking_uri(project_root(args.params), params)
        check_store_exists(uri)
        sock = server.listening_socket(args.host, args.port)
        model, info = server.load_registered(uri, name, alias)
    except server.ServeError as error:
        raise UserError(str(error)) from None
    guard = "bearer token required; /health open" if token else "no token: open to this machine only"
    print(f"serving {name} v{info['version']} ({alias}, run {info['run_id']}) on "
          f"http://{args.host}:{args.port} ({guard})", flush=True)  # fmt: skip
    store = request_log_for(params, project_root(args.params), name)  # summaries of the answers, never the inputs
    print(f"request log: {store.path}", flush=True)
    app = server.create_app(model, info, token, on_answers=partial(log_answers, store))
    with suppress(KeyboardInterrupt):  # uvicorn finished the open requests, then handed the signal back: a stop
        server.run_server(app, sock)
    print(f"stopped serving {name} v{info['version']}", flush=True)
    return 0


def check_store_exists(uri: str) -> None:
    """A local store that is not there yet: say so (MLflow would create an empty one); a server that does not answer."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise UserError(f"there is no MLflow store at {redact(uri)} yet (no pipeline has run)")
    check_tracking_server(uri)


def monitor(args) -> int:
    """Check the served classifiers' request logs for drift (flows/monitor.py); drift exits with EXIT_FAILED."""
    params = load_params(args.params)  # fail fast, before a server starts
    from flows.monitor import DriftDetected, monitored

    try:
        monitored(params, args.task)
    except ValueError as error:
        raise UserError(str(error)) from None
    with prefect_server_for("flows.monitor") as module:
        try:
            result = module.monitor(params_path=args.params, task=args.task)
        except DriftDetected as error:
            raise UserError(f"drift: {error}", EXIT_FAILED) from None
    for entry in result["models"]:
        served = f"{entry['model']} v{entry['version']} ({entry['alias']})" if "version" in entry else entry["model"]
        run = f"  [MLflow run {entry['monitoring_run_id']}]" if entry.get("monitoring_run_id") else ""
        print(f"{served}: {entry['status']}: {entry['reason']}{run}")
    return 0


def compare(args) -> int:
    from tasks.tracking import compare as comparison
    from tasks.tracking.mlflow_tracking import connect

    params = load_params(args.params)
    spec = params.kind(args.task)  # an unknown task: ParamsError naming the tasks there are
    check_tracking_server(tracking_uri(project_root(args.params), params))
    client, experiment_id = connect(project_root(args.params), params, args.task)
    rows = comparison.compare_runs(client, experiment_id, spec, args.sweep)
    print(comparison.ranking(spec))
    print(comparison.as_table(rows))
    if args.markdown:
        Path(args.markdown).write_text(comparison.as_markdown(rows))
    if args.csv:
        Path(args.csv).write_text(comparison.as_csv(rows))
    return 0


def command(commands, name: str, summary: str, handler, parents: list, details: str = ""):
    """A subcommand whose own -h says what it does: the summary in `attnflow -h`, summary and details in its own."""
    description = f"{summary[0].upper()}{summary[1:]}.{' ' + details if details else ''}"
    sub = commands.add_parser(name, parents=parents, help=summary, description=description)
    sub.set_defaults(handler=handler)
    return sub


def parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    root = argparse.ArgumentParser(
        prog="attnflow",
        description="Attention-model pipeline: Prefect flows, MLflow tracking, DVC-versioned data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"attnflow {version('attnflow')}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file; its folder is the project")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_parser = command(
        commands, "run", "run the pipeline: prepare, version, train, evaluate, explain, compress, promote", run,
        [common], "Each stage is skipped when what it reads (params, data, code) is unchanged since a run made it.",
    )  # fmt: skip
    run_parser.add_argument(
        "--task", action="append", help="a task of params.yaml to run (repeatable); default: global.tasks, else all"
    )
    run_parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a params key for this run, e.g. tasks.digit-classification.train.epochs=5 (repeatable; "
        "validated like the file; recorded on the runs as the tag cli_overrides and in their params.yaml artifact)",
    )
    run_parser.add_argument("--force", action="store_true", help="ignore the stage cache and run every stage")

    reproduce_parser = command(
        commands, "reproduce", "re-run a tracked task run and compare its metrics", reproduce, [common],
        "The run's params and data version (restored from DVC) are used; the code must be the run's commit.",
    )  # fmt: skip
    reproduce_parser.add_argument("run_id", help="a task run's id (the MLflow UI, or `attnflow run`'s table)")
    reproduce_parser.add_argument(
        "--allow-code-change", action="store_true", help="go on when the code differs from the run's recorded commit"
    )

    sweep_parser = command(
        commands,
        "sweep",
        "run a grid of settings for one task, rank the runs on validation and register the winner",
        sweep,
        [common],
    )
    sweep_parser.add_argument("--task", required=True, help="a task of params.yaml")
    sweep_parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a key of the task's section and its values, e.g. model.depth=1,2 (repeatable)",
    )
    sweep_parser.add_argument(
        "--no-register", action="store_true", help="register no model (by default the winner on validation only)"
    )

    compare_parser = command(
        commands, "compare", "print a table of a task's runs, best first (by its primary metric)", compare, [common]
    )
    compare_parser.add_argument("--task", required=True, help="a task of params.yaml (e.g. language-id)")
    compare_parser.add_argument("--sweep", help="only the runs of this sweep (its sweep_id)")
    compare_parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    compare_parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")

    schedule_parser = commands.add_parser(
        "schedule", help="run the pipeline on a schedule with Prefect (serve, deploy, status)",
        description="Run the pipeline on params.yaml's global.schedule with Prefect: served by this process, or "
        "deployed to a work pool whose workers run it.",
    )  # fmt: skip
    schedules = schedule_parser.add_subparsers(dest="schedule_command", required=True, metavar="COMMAND")
    command(
        schedules, "serve", "run the pipeline and the monitor on their schedules in this process", serve, [common],
        "Starts a local Prefect server with its UI on :4200 unless PREFECT_API_URL is set.",
    )  # fmt: skip
    deploy_parser = command(
        schedules, "deploy", "put the scheduled deployments on a work pool of the Prefect server", deploy, [common],
        "The server is PREFECT_API_URL's; `prefect worker start --pool NAME` runs them where this checkout is.",
    )  # fmt: skip
    deploy_parser.add_argument("--pool", required=True, help="the work pool (create it: prefect work-pool create NAME "
                               "--type process)")  # fmt: skip
    command(schedules, "status", "list the scheduled deployments, their next and last runs", status, [common])

    model_parser = commands.add_parser(
        "model", help="serve a task's registered model", description="A task's registered models: serve one over HTTP."
    )
    models = model_parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    serve_model_parser = command(
        models, "serve", "serve a task's registered model over HTTP", serve_model, [common],
        f"Paths: /invocations, /metrics, /version, /health. A bearer token (${TOKEN_ENV} or --token-file) guards "
        "every path but /health; without one the server listens on this machine only.",
    )  # fmt: skip
    serve_model_parser.add_argument("--task", required=True, help="a task of params.yaml (e.g. digit-classification)")
    serve_model_parser.add_argument(
        "--variant",
        metavar="ALIAS",
        help="the registered model's alias to serve: the champion when left out, or challenger, compact (the "
        "compressed variant)",
    )
    serve_model_parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; another needs a token)"
    )
    serve_model_parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})"
    )
    serve_model_parser.add_argument(
        "--token-file", metavar="FILE", help=f"a file holding the bearer token (instead of ${TOKEN_ENV})"
    )

    monitor_parser = command(
        commands, "monitor", "compare the served classifiers' answers with their test split (drift)", monitor,
        [common], "Exits 1 when a feature drifted; the check is an MLflow run of <experiment>-monitoring.",
    )  # fmt: skip
    monitor_parser.add_argument("--task", help="one task of params.yaml (e.g. digit-classification); default: all")
    return root


def configure_logging() -> None:
    """Prefect logs to stdout without tracebacks, and everything to $PREFECT_HOME/attnflow.log (flows/logging.yml),
    unless PREFECT_LOGGING_SETTINGS_PATH is set; MLflow's logs and Python warnings go through logging too. Before
    Prefect and MLflow are imported."""
    os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(Path(__file__).with_name("logging.yml")))
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's loggers reach ours, not stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar redrawn per artifact download
    Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser().mkdir(parents=True, exist_ok=True)
    import logging

    logging.captureWarnings(True)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (as `timeout` and service managers send it), raised in the main thread like Ctrl-C's
    KeyboardInterrupt, so that on the way out every open MLflow run is closed (KILLED) and the temporary Prefect
    server is stopped. During a flow Prefect handles SIGTERM first, then hands it back to this handler."""


def on_sigterm(signum, frame):
    raise Interrupted("SIGTERM")


def skip_the_last_collections() -> None:
    """At exit, after the other exit handlers (registered before them, it runs after them): freeze every object left,
    so that the interpreter's last garbage collections pass them by and the OS frees the memory at once. Those
    collections of torch's, MLflow's, Prefect's and the pipeline's objects took about 3 s of every command's exit on
    2 quiet cores, more on busy ones: half of a stop by Ctrl-C (6 s, 2 to 3 s without them). Nothing is lost: the
    MLflow runs and the temporary server are closed before, logging's own exit handler still flushes the log files;
    only objects left in reference cycles are not finalized."""
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if "prefect" not in sys.modules:  # a fresh process: the command's own logging and signals (not a test, a worker)
        configure_logging()
        signal.signal(signal.SIGTERM, on_sigterm)
        stopping.watch()
        atexit.register(skip_the_last_collections)
    try:
        return args.handler(args)
    except KeyboardInterrupt as error:
        stopped = "SIGTERM" if isinstance(error, Interrupted) else "Ctrl-C"
        print(f"error: interrupted by {stopped}; its open MLflow runs are closed as KILLED", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        code = exit_code(error)
        if code is None:
            raise  # not a user's mistake: a bug, with its traceback
        print(f"error: {error}", file=sys.stderr)
        return code


def exit_code(error: Exception) -> int | None:
    """The exit code an error carries (tasks/errors.py), or None for a bug, which is raised with its traceback."""
    return error.exit_code if isinstance(error, AttnflowError) else None


if __name__ == "__main__":
    sys.exit(main())
