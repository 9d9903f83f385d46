"""The default built-in image model trained in one process and in several (train.distributed.nproc), with the same
epochs and global batch size: test accuracy and wall time of each (docs/benchmarks.md, "Distributed training").

    python benchmarks/ddp_image.py                       # params.yaml's digit-classification: 30 epochs, nproc 1 and 2
    python benchmarks/ddp_image.py --epochs 10 --nproc 1 2 4 --seeds 7 8

It generates the built-in digits into a temporary folder and trains through the train stage's own code
(tasks/training/job.py, tasks/training/distributed.py), without Prefect or MLflow; the test accuracy is the evaluate
stage's (argmax over the test split). It prints a Markdown table, a row per seed and process count, then the mean
over the seeds of each process count and of its difference from one process (each seed's runs share the data, the
initial weights, the global batches and each item's augmentations: they differ in dropout masks and rounding).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.data.builtin_image import generate_image_dataset  # noqa: E402
from tasks.defaults import resolved_section  # noqa: E402
from tasks.names import CHECKPOINT  # noqa: E402
from tasks.params import load_params, override  # noqa: E402
from tasks.reproducibility import resolve_device  # noqa: E402
from tasks.training.distributed import Events, launch  # noqa: E402
from tasks.training.job import train_and_save  # noqa: E402
from tasks.training.loop import make_loader, predict  # noqa: E402

TASK = "digit-classification"  # the built-in image task


def train(params, root: Path, nproc: int) -> tuple[Path, float]:
    """The checkpoint trained with nproc processes, and the seconds it took."""
    out_dir = root / "outputs" / f"nproc{nproc}"
    out_dir.mkdir(parents=True)
    started = time.perf_counter()
    if nproc == 1:
        train_and_save(TASK, params, root, out_dir, None, Events(handler=lambda *event: None))
    else:
        device = resolve_device(params.global_.device)
        launch(nproc, device, train_and_save, (TASK, params, root, out_dir, None), lambda *event: None)
    return out_dir / CHECKPOINT, time.perf_counter() - started


def test_accuracy(params, root: Path, checkpoint_path: Path) -> float:
    spec, section = params.kind(TASK), params.task(TASK)
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    model = spec.build_model(checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])
    section = resolved_section(section, checkpoint.get("resolved", {}))  # `auto` keys, as training resolved them
    splits = spec.load_splits(root / "data" / TASK, section, params.global_.seed, None)
    logits, labels = predict(model, make_loader(splits.test, splits, section.eval.batch_size), torch.device("cpu"))
    return (logits.argmax(-1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help=f"instead of params.yaml's tasks.{TASK}.train.epochs")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", help="instead of params.yaml's global.seed (data, weights, "
                        "batches), each in turn")  # fmt: skip
    options = parser.parse_args()
    base = load_params(REPO / "params.yaml")
    if options.epochs:
        base = override(base, {f"tasks.{TASK}.train.epochs": options.epochs})
    section = base.task(TASK)
    print(f"{TASK}: {section.train.epochs} epochs, global batch {section.train.batch_size}, "
          f"{len(os.sched_getaffinity(0))} cores, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)  # fmt: skip
    print("| seed | nproc | batch per process | test accuracy | wall time (s) |\n| --- | --- | --- | --- | --- |")
    accuracies = {nproc: [] for nproc in options.nproc}
    for seed in options.seeds or [base.global_.seed]:
        seeded = override(base, {"global.seed": seed})
        for nproc, (accuracy, seconds) in zip(options.nproc, train_each(seeded, options.nproc), strict=True):
            accuracies[nproc].append(accuracy)
            print(f"| {seed} | {nproc} | {section.train.batch_size // nproc} | {accuracy:.4f} | {seconds:.0f} |",
                  flush=True)  # fmt: skip
    one = accuracies[options.nproc[0]]
    for nproc, values in accuracies.items():
        difference = [value - first for value, first in zip(values, one, strict=True)]
        print(f"mean of {len(values)} seeds, nproc {nproc}: test accuracy {statistics.mean(values):.4f}, "
              f"difference from nproc {options.nproc[0]} {100 * statistics.mean(difference):+.2f} points "
              f"(per seed: {', '.join(f'{100 * d:+.2f}' for d in difference)})")  # fmt: skip


def train_each(params, counts: list[int]) -> list[tuple[float, float]]:
    """Test accuracy and seconds of the training with each process count, on the built-in digits of params' seed."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        spec, section = params.kind(TASK), params.task(TASK)
        generator_arguments = spec.builtin_arguments(section, params.global_.seed)
        generate_image_dataset(root / "data" / TASK, **generator_arguments)
        for nproc in counts:
            each = override(params, {f"tasks.{TASK}.train.distributed.nproc": nproc})
            checkpoint, seconds = train(each, root, nproc)
            results.append((test_accuracy(each, root, checkpoint), seconds))
    return results


if __name__ == "__main__":
    main()
