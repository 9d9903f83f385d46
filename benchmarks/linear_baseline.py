"""A bag-of-words reference for a prepared text-classification dataset: TF-IDF features and a linear SVM.

A Transformer trained from scratch on a few thousand texts earns its cost only if it beats what a linear model of
token counts gets on the same split; where it does not, the limit is the model or its training, not the data. This
script scores that reference on the split a pipeline run prepared (data/<task>/{train,val,test}.csv, the columns
`text` and `label`): the SVM's C is chosen on val, then the model trained on train is scored on test. Two token
sets: words (scikit-learn's default, lowercased) and, with ``--tokenizer``, the subwords of a run's tokenizer.json,
so the reference and the Transformer see the same pieces.

    python benchmarks/linear_baseline.py outputs/benchmarks/ag_news/data/news-topic \
        --tokenizer outputs/benchmarks/ag_news/outputs/<run id>/tokenizer.json
"""

import argparse
import csv
import sys
from pathlib import Path

C_GRID = (0.1, 0.3, 1.0, 3.0)  # the SVM's inverse regularisation, chosen on val


def read_split(folder: Path, split: str) -> tuple[list[str], list[str]]:
    path = folder / f"{split}.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found (a prepared text split: data/<task>/ of a pipeline run)")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if rows and not {"text", "label"} <= set(rows[0]):
        sys.exit(f"error: {path} needs the columns text and label (has {', '.join(rows[0])})")
    return [row["text"] for row in rows], [row["label"] for row in rows]


def accuracy(model, features, labels) -> float:
    return sum(p == y for p, y in zip(model.predict(features), labels)) / len(labels)


def score(analyzer, splits: dict) -> dict:
    """Val accuracy for each C, the chosen C and its test accuracy, TF-IDF (sublinear counts) + LinearSVC."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(sublinear_tf=True, **analyzer)
    train = vectorizer.fit_transform(splits["train"][0])
    val, test = (vectorizer.transform(splits[name][0]) for name in ("val", "test"))
    by_c = {c: LinearSVC(C=c).fit(train, splits["train"][1]) for c in C_GRID}
    val_accuracy = {c: accuracy(model, val, splits["val"][1]) for c, model in by_c.items()}
    best = max(C_GRID, key=lambda c: (val_accuracy[c], -c))  # a tie: the stronger regularisation
    return {"features": train.shape[1], "C": best, "val": val_accuracy[best],
            "test": accuracy(by_c[best], test, splits["test"][1])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a prepared text split: the folder with train.csv, val.csv, test.csv")
    parser.add_argument("--tokenizer", type=Path, help="a run's tokenizer.json: also score its subword pieces")
    args = parser.parse_args(argv)
    splits = {name: read_split(args.data, name) for name in ("train", "val", "test")}
    analyzers = {"words (lowercased)": {}}
    if args.tokenizer:
        from tokenizers import Tokenizer

        if not args.tokenizer.is_file():
            sys.exit(f"error: {args.tokenizer} not found")
        tokenizer = Tokenizer.from_file(str(args.tokenizer))
        analyzers["the run's subwords"] = {"analyzer": lambda text: tokenizer.encode(text).tokens, "lowercase": False}
    sizes = ", ".join(f"{name} {len(splits[name][0])}" for name in splits)
    print(f"{args.data}: {sizes}\n")
    print("| tokens | features | C (on val) | val accuracy | test accuracy |\n| --- | --- | --- | --- | --- |")
    for name, analyzer in analyzers.items():
        result = score(analyzer, splits)
        print(f"| {name} | {result['features']} | {result['C']:g} | {result['val']:.4f} | {result['test']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
