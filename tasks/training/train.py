"""Train stage: fit a modality's model on data/<modality>/ and save a checkpoint that can rebuild it.

torch and the data loaders are imported inside the task body: a cached run never enters it, and leaving them out
of module scope saves seconds of start-up on every run (docs/benchmarks.md).
"""
import time
from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import code_fingerprint, digest
from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect, log_metrics

CHECKPOINT = "checkpoint.pt"
TOKENIZER = "tokenizer.json"
TRAINING_ENVIRONMENT = ("device", "torch_version")  # returned by train_model; lineage tags of the modality run


TRAINING_CODE = ("attn_models", "tasks/training", "tasks/data/datasets.py", "tasks/data/splits.py",
                 "tasks/reproducibility.py")


def learn_tokenizer(modality: str, data_dir: Path, section):
    """The subword vocabulary (a tokenizers.Tokenizer), learned from the training split only: text's, or one joint
    vocabulary for both languages of a translation corpus (reversible, to detokenize the output). None: the
    modality has no tokens."""
    from tasks.data.datasets import read_parallel, read_text_csv, train_tokenizer, translation_languages

    if modality == "text":
        return train_tokenizer(read_text_csv(data_dir / "train.csv")[0], section.model.vocab_size)
    if modality == "translation":
        sources, targets = read_parallel(data_dir, "train", translation_languages(section))
        return train_tokenizer(sources + targets, section.model.vocab_size, reversible=True)
    return None


def train_cache_key(_context, inputs: dict) -> str:
    """Training depends on its data, its params section, the seed, the device setting and the training code."""
    params, modality = inputs["params"], inputs["modality"]
    section = params.section(modality)
    return "train-" + digest(modality, str(inputs["root"]), inputs["data_recipe"], section.data, section.model,
                             section.train, params.global_.seed, params.global_.device, code_fingerprint(*TRAINING_CODE))


@task(name="train", cache_key_fn=train_cache_key, persist_result=True)
def train_model(modality: str, params: Params, root: Path, run_id: str, data_recipe: dict) -> dict:
    """Returns the checkpoint's path, the id of the MLflow run that trained it and where it trained
    (TRAINING_ENVIRONMENT)."""
    import torch

    from tasks.data.splits import load_splits
    from tasks.reproducibility import resolve_device, set_seeds
    from tasks.training.loop import fit
    from tasks.training.models import build_model, model_args

    logger = get_run_logger()
    section, seed = params.section(modality), params.global_.seed
    set_seeds(seed)
    device = resolve_device(params.global_.device)
    data_dir = root / "data" / modality
    out_dir = root / "outputs" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = learn_tokenizer(modality, data_dir, section)
    if tokenizer is not None:
        tokenizer.save(str(out_dir / TOKENIZER))
    splits = load_splits(modality, data_dir, section, seed, tokenizer)
    args = model_args(modality, section, len(splits.class_names), tokenizer and tokenizer.get_vocab_size())
    model = build_model(modality, args)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s with %.2fM parameters, %d train / %d val samples on %s", modality, type(model).__name__,
                n_params / 1e6, len(splits.train), len(splits.val), device)

    client, _ = connect(root, params, modality)
    epochs = section.train.epochs

    def report(epoch: int, metrics: dict) -> None:
        log_metrics(client, run_id, metrics, step=epoch)
        logger.info("%s epoch %d/%d  train loss %.3f acc %.3f | val loss %.3f acc %.3f | %.0f samples/s", modality,
                    epoch, epochs, metrics["train_loss"], metrics["train_accuracy"], metrics["val_loss"],
                    metrics["val_accuracy"], metrics["train_samples_per_second"])

    started = time.perf_counter()
    best = fit(model, splits, section.train, device, seed, report)
    log_metrics(client, run_id, {"best_val_accuracy": best["best_val_accuracy"], "best_epoch": best["best_epoch"],
                                 "num_parameters": n_params, "train_seconds": time.perf_counter() - started})
    checkpoint = out_dir / CHECKPOINT
    torch.save({"modality": modality, "model_args": args, "state_dict": model.cpu().state_dict(),
                "class_names": splits.class_names, **best}, checkpoint)
    # plain str: a cached result holding torch's TorchVersion would import torch when it is read back (seconds)
    return {"checkpoint": str(checkpoint), "run_id": run_id, "device": str(device),
            "torch_version": str(torch.__version__)}
