"""The reference a pipeline fine-tuning is measured against: Hugging Face's ``Trainer`` in a bare script, on the same
prepared split, backbone and schedule.

A user who has a pretrained model in a folder could fine-tune it with the Trainer and MLflow autologging instead of
this pipeline. The pipeline's stages (tracking, caching, attention maps, compression, serving) are worth it only if
its training is about as fast and as good: the issue asks for at most 1.2x the Trainer's training time and a test
accuracy within 0.5 points. This script trains what the pipeline trains, with what the Trainer does by default for
sequence classification:

- the backbone's ``AutoModelForSequenceClassification`` (a new head on its pooled class token), fp32;
- the same texts cut at the same length, each batch padded to its longest text (``DataCollatorWithPadding``);
- the same epochs, batch size, learning rate, weight decay, warm-up (the pipeline's warm-up epochs as steps) and
  linear decay, seed;
- validation accuracy after each epoch and the best epoch kept (``load_best_model_at_end``), as the pipeline keeps
  its best epoch by validation; the test split scored once, at the end.

    python benchmarks/hf_trainer.py outputs/benchmarks/ag_news_minilm/data/news-topic \
        --backbone ../shared/pretrained/all-MiniLM-L6-v2 --epochs 3 --batch-size 32 --lr 5e-5 --max-len 128

It prints one JSON object: train_seconds (``trainer.train()`` alone, as the pipeline's train_seconds is its
training loop), val and test accuracy. ``benchmarks/real_data.py --against-trainer`` runs it after the pipeline, in
the same invocation, with the task's settings, and records both.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.linear_baseline import read_split


def arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a prepared text split: the folder with train.csv, val.csv, test.csv")
    parser.add_argument("--backbone", required=True, help="a Hugging Face model folder (save_pretrained layout)")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--max-len", type=int, required=True, help="tokens per text, special tokens included")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=int, help="optimizer steps in all (as train.max_steps): the last epoch cut")
    return parser.parse_args(argv)


def encoded(tokenizer, texts, labels, class_names, max_len):
    """A list of {input_ids, attention_mask, labels}: the Trainer's own dataset format, without `datasets`."""
    encodings = tokenizer(texts, truncation=True, max_length=max_len)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": class_names.index(label)}
        for ids, mask, label in zip(encodings["input_ids"], encodings["attention_mask"], labels)
    ]


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    splits = {name: read_split(args.data, name) for name in ("train", "val", "test")}
    class_names = sorted(set(splits["train"][1]))
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    data = {name: encoded(tokenizer, *splits[name], class_names, args.max_len) for name in splits}
    model = AutoModelForSequenceClassification.from_pretrained(
        args.backbone, num_labels=len(class_names), use_kernels=False
    )
    steps_per_epoch = -(-len(data["train"]) // args.batch_size)

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    with tempfile.TemporaryDirectory() as output_dir:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=output_dir,
                num_train_epochs=args.epochs,
                max_steps=args.max_steps or -1,
                per_device_train_batch_size=args.batch_size,
                per_device_eval_batch_size=256,
                learning_rate=args.lr,
                weight_decay=args.weight_decay,
                warmup_steps=round(args.warmup_epochs * steps_per_epoch),
                lr_scheduler_type="linear",
                eval_strategy="epoch",
                save_strategy="epoch",
                save_total_limit=1,
                load_best_model_at_end=True,
                metric_for_best_model="accuracy",
                seed=args.seed,
                report_to=[],
                use_cpu=not __import__("torch").cuda.is_available(),
                disable_tqdm=True,
                logging_strategy="epoch",
            ),
            train_dataset=data["train"],
            eval_dataset=data["val"],
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        val = trainer.evaluate(data["val"])["eval_accuracy"]
        test = trainer.evaluate(data["test"])["eval_accuracy"]
    print(
        json.dumps(
            {
                "train_seconds": round(train_seconds, 1),
                "val_accuracy": round(val, 4),
                "test_accuracy": round(test, 4),
                "train": len(data["train"]),
                "steps_per_epoch": steps_per_epoch,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
