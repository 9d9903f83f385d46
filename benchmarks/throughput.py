"""Training throughput in the pipeline against a bare PyTorch loop of the same model and batches.

    python benchmarks/throughput.py --project <a project that ran `make run`>   # every task with data there
    python benchmarks/throughput.py --project . --task digit-classification --batches 20 --repeats 3

In the pipeline, a training step is the train stage's loop (tasks/training/loop.py `fit`): batches come from the
task's DataLoader (decoding, augmentation, padding, feature extraction in the loading process), then the spec's
loss, backward, the all-reduce hook, gradient clipping, AdamW and the schedule, with the progress bar. Its figure is
the loop's own `train_samples_per_second` (what the stage logs to MLflow each epoch). The bare loop takes the same
number of batches, loaded and collated before the clock starts, and runs only the loss (the same spec
`training_loss`), backward and AdamW. The ratio pipeline / bare says what the pipeline's data path and bookkeeping
cost; 1.0 is free. The two are measured alternately, `--repeats` times each, from the same starting weights, and the
median of each is reported, so a shared machine's load falls on both alike.

Prints a markdown table (the one in docs/benchmarks.md, "Training throughput").
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prepared(project: Path, task: str):
    """The task's spec (its kind), train params, splits and a freshly built model, as the train stage makes them."""
    from tasks.params import load_params
    from tasks.reproducibility import set_seeds

    params = load_params(project / "params.yaml")
    spec, section, seed = params.kind(task), params.task(task), params.global_.seed
    set_seeds(seed)
    data_dir = project / "data" / task
    tokenizer = spec.learn_tokenizer(data_dir, section)
    section, _ = spec.resolve(section, data_dir, tokenizer)  # `auto` keys, as the train stage resolves them
    splits = spec.load_splits(data_dir, section, seed, tokenizer)
    model = spec.build_model(spec.model_args(section, splits, tokenizer))
    return spec, section.train, splits, model, seed


def pipeline_rate(spec, train, splits, model, seed: int, batches: int) -> float:
    """Samples per second of one epoch of `batches` batches through the pipeline's loop."""
    import torch

    from tasks.training.loop import fit

    train = train.model_copy(
        update={"epochs": 1, "patience": None, "max_batches_per_epoch": batches, "budget_minutes": None}
    )
    seen = {}
    fit(model, splits, train, torch.device("cpu"), seed, lambda epoch, metrics: seen.update(metrics), spec)
    return seen["train_samples_per_second"]


def bare_rate(spec, train, splits, model, seed: int, batches: int) -> float:
    """Samples per second of the same number of batches, already in memory: loss, backward, AdamW."""
    import torch

    from tasks.training.loop import make_loader

    loader = make_loader(splits.train, splits, train.batch_size, shuffle=True, seed=seed)
    data = [batch for _, batch in zip(range(batches), loader)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    model.train()
    started, examples = time.perf_counter(), 0
    for inputs, targets in data:
        loss, _, _ = spec.training_loss(model, inputs, targets, train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        examples += len(targets)
    return examples / (time.perf_counter() - started)


def measure(project: Path, task: str, batches: int, repeats: int) -> dict:
    spec, train, splits, model, seed = prepared(project, task)
    bare_rate(spec, train, splits, copy.deepcopy(model), seed, 2)  # warm-up: allocations, kernels' first calls
    pipeline, bare = [], []
    for _ in range(repeats):
        pipeline.append(pipeline_rate(spec, train, splits, copy.deepcopy(model), seed, batches))
        bare.append(bare_rate(spec, train, splits, copy.deepcopy(model), seed, batches))
    pipeline_median, bare_median = statistics.median(pipeline), statistics.median(bare)
    return {"task": task, "batch_size": train.batch_size, "pipeline": pipeline_median, "bare": bare_median,
            "ratio": pipeline_median / bare_median}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=REPO, help="a project whose data/ is prepared")
    parser.add_argument("--task", action="append", help="a task of the project's params.yaml (repeatable); default: "
                        "each with data in the project")  # fmt: skip
    parser.add_argument("--batches", type=int, default=20, help="training batches per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from tasks.params import load_params

    project = args.project.resolve()
    tasks = args.task or [t for t in load_params(project / "params.yaml").tasks if (project / "data" / t).is_dir()]
    print(f"project {project}; {args.batches} batches x {args.repeats} repeats; {torch.get_num_threads()} threads\n")
    print("| task | batch | pipeline samples/s | bare loop samples/s | pipeline / bare |")
    print("| --- | --- | --- | --- | --- |")
    for task in tasks:
        row = measure(project, task, args.batches, args.repeats)
        print(f"| {task} | {row['batch_size']} | {row['pipeline']:.0f} | {row['bare']:.0f} | {row['ratio']:.2f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
