"""One training from the data to the checkpoint, the same in the train stage's own process and in each rank of a
training of several (tasks/training/distributed.py): every rank builds the tokenizer, the data and the model the
same way from the seed, rank 0 alone writes the tokenizer and the checkpoint.

What it reports goes to ``events(name, *args)``: "started" (what it trains, on what, for how many epochs, and the
warning of a plan too short to train, or None), "resumed" (epoch), "planned"
(steps, steps per epoch, the first epoch's seconds, the pace planned: a time budget's plan), "epoch" (epoch,
metrics) and "finished" (the best epoch); the stage logs them. It reads the task's kind from the params it is given
rather than importing the registry: tasks/kinds imports this package, not the other way round.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer

from tasks import backbones
from tasks.defaults import length_values, resolved_section, short_training
from tasks.names import CHECKPOINT, TOKENIZER
from tasks.paths import ProjectPaths
from tasks.reproducibility import resolve_device, set_seeds
from tasks.training.distributed import ONE_PROCESS, Ranks
from tasks.training.loop import fit, precision_name


def train_and_save(
    task: str,
    params,
    root: Path,
    out_dir: Path,
    state_file: Path | None,
    events,
    ranks: Ranks = ONE_PROCESS,
    start: Path | None = None,
) -> None:
    """Train the task's model on data/<task>/ and write out_dir/CHECKPOINT (and its tokenizer). params: the whole
    tasks.params.Params (not imported here: it imports every kind). start: a pretrain stage's checkpoint, whose
    encoder (and the tokenizer beside it) the model starts from (tasks/training/pretraining.py); None: random."""
    spec, seed = params.kind(task), params.global_.seed
    section = backbones.located(params.task(task), root)  # a backbone's folder, wherever this process runs
    set_seeds(seed)
    device = ranks.place(resolve_device(params.global_.device))
    data_dir = ProjectPaths(root).task_data(task)
    tokenizer = (
        spec.learn_tokenizer(data_dir, section) if start is None else Tokenizer.from_file(str(start.parent / TOKENIZER))
    )
    if tokenizer is not None and ranks.main:
        tokenizer.save(str(out_dir / TOKENIZER))
    section, resolved = spec.resolve(section, data_dir, tokenizer)  # `auto` keys from the data (tasks/defaults.py)
    splits = spec.load_splits(data_dir, section, seed, tokenizer)
    length = length_values(section.train, len(splits.train))  # train.epochs, train.patience: from the split's size
    if length:
        section, resolved = resolved_section(section, length), resolved | length
    args = spec.model_args(section, splits, tokenizer)
    model = spec.start_model(args, section)
    if start is not None:
        start_from_pretrained(model, start, args)
    events("started", {"model": type(model).__name__, "num_parameters": sum(p.numel() for p in model.parameters()),
                       "train": len(splits.train), "val": len(splits.val), "device": str(device),
                       "precision": precision_name(section.train.precision, device),
                       "resolved": resolved, "epochs": section.train.epochs,
                       "short_training": short_training(task, section.train, len(splits.train)),
                       "backbone": backbones.lineage_of(section, root, task)})  # fmt: skip
    best = fit(model, splits, section.train, device, seed, lambda epoch, metrics: events("epoch", epoch, metrics),
               spec, state_file, on_resume=lambda epoch: events("resumed", epoch), ranks=ranks,
               on_plan=lambda *plan: events("planned", *plan), label=task,
               parameters=spec.parameter_groups(model, section))  # fmt: skip
    if ranks.main:
        torch.save({"kind": spec.name, "model_args": args, "state_dict": model.cpu().state_dict(),
                    "class_names": splits.class_names, "resolved": resolved, **best}, out_dir / CHECKPOINT)  # fmt: skip
    events("finished", best)


def start_from_pretrained(model, checkpoint_path: Path, args: dict) -> None:
    """Load a pretrain stage's encoder into the classifier training starts from (its head stays new). The
    pretraining built the same architecture from the same section; arguments that differ (other than the class
    count) mean the checkpoint is not this model's, and stop the training naming them."""
    pretrained = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    differ = sorted(key for key in args.keys() | pretrained["model_args"].keys()
                    if key != "num_classes" and args.get(key) != pretrained["model_args"].get(key))  # fmt: skip
    if differ:
        raise ValueError(f"the pretrained encoder {checkpoint_path} was built with other model arguments: {differ}")
    model.load_encoder(pretrained["encoder"])
