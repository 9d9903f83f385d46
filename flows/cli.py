"""Command line: `attnflow run [--modality M ...] [--params params.yaml]`, `attnflow serve` (the pipeline on
params.yaml's global.schedule, on a real Prefect server) and `attnflow status` (deployments, next and last runs)."""
import argparse
import sys

from tasks.params import MODALITIES, ParamsError, load_params, project_root
from tasks.tracking.mlflow_tracking import tracking_uri


def run(args) -> int:
    from flows.pipeline import attention_pipeline  # imported late: Prefect start-up is slow

    params = load_params(args.params)  # fail fast, before Prefect starts
    result = attention_pipeline(params_path=args.params, modalities=args.modality or None)
    uri = tracking_uri(project_root(args.params), params)
    print("\nResults")
    for modality, metrics in result["modalities"].items():
        print(f"  {modality:<7} test_accuracy {metrics['test_accuracy']:.4f}  test_macro_f1 "
              f"{metrics['test_macro_f1']:.4f}  run {metrics['run_id']}")
    print(f"  data version (data.dvc md5): {result['data_md5']}")
    print(f"  MLflow store: {uri}  (experiment '{params.global_.tracking.experiment}',"
          f" pipeline run {result['parent_run_id']})")
    print(f"  Open the MLflow UI: make ui   (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline: prepare, version, train, evaluate")
    run_parser.add_argument("--modality", action="append", choices=MODALITIES,
                            help="a modality to run (repeatable); default: global.modalities in params.yaml")
    run_parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    run_parser.set_defaults(handler=run)
    serve_parser = commands.add_parser("serve", help="serve the pipeline on params.yaml's global.schedule "
                                       "(starts a local Prefect server unless PREFECT_API_URL is set)")
    status_parser = commands.add_parser("status", help="list the pipeline's deployments, next and last runs")
    for sub, handler in ((serve_parser, serve), (status_parser, status)):
        sub.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
        sub.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
