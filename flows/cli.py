"""Command line: `attnflow run [--modality M ...] [--params params.yaml] [--sweep ID]` and
`attnflow compare --task T [--sweep ID] [--markdown F | --csv F]`."""
import argparse
import sys

from pathlib import Path

from tasks.params import MODALITIES, ParamsError, load_params, project_root
from tasks.tracking.mlflow_tracking import tracking_uri


def run(args) -> int:
    from flows.pipeline import attention_pipeline  # imported late: Prefect start-up is slow

    try:
        params = load_params(args.params)  # fail fast, before Prefect starts
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = attention_pipeline(params_path=args.params, modalities=args.modality or None, sweep=args.sweep)
    uri = tracking_uri(project_root(args.params), params)
    print("\nResults")
    for modality, metrics in result["modalities"].items():
        print(f"  {modality:<7} test_accuracy {metrics['test_accuracy']:.4f}  test_macro_f1 "
              f"{metrics['test_macro_f1']:.4f}  run {metrics['run_id']}")
        promotion = metrics["promotion"]
        print(f"          {promotion['registered_model']} v{promotion['version']} -> {promotion['alias']}: "
              f"{promotion['reason']}")
    print(f"  data version (data.dvc md5): {result['data_md5']}")
    print(f"  MLflow store: {uri}  (experiment '{params.global_.tracking.experiment}',"
          f" pipeline run {result['parent_run_id']})")
    print(f"  Open the MLflow UI: make ui   (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)")
    return 0


def compare(args) -> int:
    from tasks.tracking import compare as comparison
    from tasks.tracking.mlflow_tracking import connect

    try:
        params = load_params(args.params)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    modality = next((m for m in MODALITIES if args.task in (m, params.section(m).task)), None)
    if modality is None:
        tasks = ", ".join(params.section(m).task for m in MODALITIES)
        print(f"error: unknown task {args.task!r}; choose from {tasks} (or a modality)", file=sys.stderr)
        return 2
    client, experiment_id = connect(project_root(args.params), params, modality)
    rows = comparison.compare_runs(client, experiment_id, args.sweep)
    print(comparison.as_table(rows))
    if args.markdown:
        Path(args.markdown).write_text(comparison.as_markdown(rows))
    if args.csv:
        Path(args.csv).write_text(comparison.as_csv(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline: prepare, version, train, evaluate")
    run_parser.add_argument("--modality", action="append", choices=MODALITIES,
                            help="a modality to run (repeatable); default: global.modalities in params.yaml")
    run_parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    run_parser.add_argument("--sweep", help="tag every run of this pipeline run with sweep=ID (see compare --sweep)")
    run_parser.set_defaults(handler=run)
    compare_parser = commands.add_parser("compare", help="table of a task's runs, best test_accuracy first")
    compare_parser.add_argument("--task", required=True, help="a task from params.yaml (e.g. language-id) or a modality")
    compare_parser.add_argument("--sweep", help="only runs tagged sweep=ID")
    compare_parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    compare_parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    compare_parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    compare_parser.set_defaults(handler=compare)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
