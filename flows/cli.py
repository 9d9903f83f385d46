"""Command line: `attnflow run [--modality M ...] [--params params.yaml]`."""
import argparse
import sys

from tasks.params import MODALITIES, ParamsError, load_params, project_root
from tasks.tracking.mlflow_tracking import tracking_uri


def run(args) -> int:
    from flows.pipeline import attention_pipeline  # imported late: Prefect start-up is slow

    try:
        params = load_params(args.params)  # fail fast, before Prefect starts
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline: prepare, version, train, evaluate")
    run_parser.add_argument("--modality", action="append", choices=MODALITIES,
                            help="a modality to run (repeatable); default: global.modalities in params.yaml")
    run_parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    run_parser.set_defaults(handler=run)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
