"""Quick looks at the text classifier's variants on a prepared split: the project's tokenizer and TextTransformer in a
bare loop (AdamW, one-cycle schedule, a few epochs), one variant after another.

Sizes, vocabulary, batch, learning rate, weight decay and label smoothing: benchmarks/configs/ag_news.yaml's.
A 10-minute pipeline run answers one question; a 5-epoch bare loop answers one in under 3 minutes on 2 cores, so it
is how a change is found before the pipeline measures it (docs/real_data.md, "The text model's token embedding").
Every variant starts from the same seed and sees the same batches; only what it names changes. A variant is
NAME or NAME=JSON, the JSON's keys one of the loop's (epochs, lr, weight_decay, embed_init_std, embed_lr_scale) or
TextTransformer's own (token_dropout, pool, depth, dropout, ...):

    python benchmarks/text_variants.py outputs/benchmarks/ag_news/data/news-topic \\
        'old-init={"embed_init_std": 1.0}' default 'token-dropout-0.25={"token_dropout": 0.25}'

The split is data/<task>/{train,val,test}.csv of a pipeline run's text task (columns text and label), as for
linear_baseline.py.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.linear_baseline import read_split  # noqa: E402

SEED = 0


def config_settings(path: Path = Path(__file__).parent / "configs" / "ag_news.yaml") -> tuple[dict, dict]:
    """The text benchmark config's architecture (its model's sizes, not its regularisers: a variant names those) and
    its training settings, so the looks train the model the pipeline's runs train."""
    import yaml

    (text,) = yaml.safe_load(path.read_text())["tasks"].values()
    architecture = {key: text["model"][key] for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "dropout")}
    return architecture, text["model"] | text["train"]


MODEL, CONFIG = config_settings()
LOOP_KEYS = {"epochs": 5, "lr": CONFIG["lr"], "weight_decay": CONFIG["weight_decay"], "embed_init_std": None,
             "embed_lr_scale": 1.0}  # fmt: skip
VOCAB, MAX_LEN, BATCH, SMOOTHING = (CONFIG[k] for k in ("vocab_size", "max_len", "batch_size", "label_smoothing"))


def parse_variant(text: str) -> tuple[str, dict, dict]:
    """NAME[=JSON] -> (name, the loop's settings, the model's arguments)."""
    name, _, settings = text.partition("=")
    try:
        settings = json.loads(settings or "{}")
    except json.JSONDecodeError as error:
        sys.exit(f"error: variant {name!r}: its settings are not JSON ({error})")
    if not isinstance(settings, dict):
        sys.exit(f"error: variant {name!r}: the settings must be a JSON object (got {settings!r})")
    loop = {key: settings.pop(key, default) for key, default in LOOP_KEYS.items()}
    return name, loop, MODEL | settings


def batches(ids, labels, order):
    from tasks.data.datasets import pad_token_batch

    for start in range(0, len(order), BATCH):
        yield pad_token_batch([(ids[i], labels[i]) for i in order[start : start + BATCH]])


def accuracy(model, ids, labels) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        right = sum((model(x).argmax(-1) == y).sum().item() for x, y in batches(ids, labels, range(len(ids))))
    return right / len(ids)


def run_variant(name, loop, model_args, ids, labels, vocab_size) -> dict:
    """Train one variant from the seed on ids["train"] and score it: ids and labels by split."""
    import torch
    from torch.nn import functional as F

    from attn_models.text_classifier import TextTransformer

    torch.manual_seed(SEED)
    model = TextTransformer(vocab_size, len(set(labels["train"])), max_len=MAX_LEN, **model_args)
    embedding = model.token_embed.weight
    if loop["embed_init_std"] is not None:
        with torch.no_grad():
            embedding.normal_(0.0, loop["embed_init_std"])
            embedding[model.pad_id].zero_()
    rest = [p for p in model.parameters() if p is not embedding]
    lrs = [loop["lr"] * loop["embed_lr_scale"], loop["lr"]]
    optimizer = torch.optim.AdamW(
        [{"params": [embedding], "lr": lrs[0]}, {"params": rest}], lr=loop["lr"], weight_decay=loop["weight_decay"]
    )
    train_ids, train_labels = ids["train"], labels["train"]
    steps = loop["epochs"] * math.ceil(len(train_ids) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lrs, total_steps=steps, pct_start=0.1)
    started = time.perf_counter()
    for _ in range(loop["epochs"]):
        model.train()
        for x, y in batches(train_ids, train_labels, torch.randperm(len(train_ids)).tolist()):
            loss = F.cross_entropy(model(x), y, label_smoothing=SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - started
    return {
        "variant": name,
        "val": accuracy(model, ids["val"], labels["val"]),
        "test": accuracy(model, ids["test"], labels["test"]),
        "train": accuracy(model, train_ids[:2000], train_labels[:2000]),  # the first 2000: enough to see memorising
        "seconds": round(seconds),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="data/<task> of a text task's run: train.csv, val.csv, test.csv")
    parser.add_argument("variants", nargs="+", help="NAME or NAME=JSON (see the module's docstring)")
    args = parser.parse_args(argv)
    variants = [parse_variant(text) for text in args.variants]  # every variant checked before the first trains

    import torch

    from tasks.data.datasets import encode_texts, train_tokenizer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    splits = {split: read_split(args.split, split) for split in ("train", "val", "test")}
    tokenizer = train_tokenizer(splits["train"][0], VOCAB)
    classes = sorted(set(splits["train"][1]))
    ids = {split: encode_texts(tokenizer, texts, MAX_LEN) for split, (texts, _) in splits.items()}
    labels = {split: [classes.index(y) for y in ys] for split, (_, ys) in splits.items()}
    print("| variant | settings | val | test | train (first 2000) | seconds |\n| --- | --- | --- | --- | --- | --- |")
    for (name, loop, model_args), text in zip(variants, args.variants):
        result = run_variant(name, loop, model_args, ids, labels, tokenizer.get_vocab_size())
        settings = text.partition("=")[2] or "the defaults"
        print(f"| {name} | `{settings}` | {result['val']:.4f} | {result['test']:.4f} | {result['train']:.3f} | "
              f"{result['seconds']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
