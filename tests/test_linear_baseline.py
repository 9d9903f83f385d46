"""The bag-of-words reference (benchmarks/linear_baseline.py) scores a prepared text split and names what is missing."""

import csv

import pytest

from benchmarks import linear_baseline
from tasks.data.datasets import train_tokenizer

TOPICS = {"sport": ["match", "goal", "league", "coach"], "money": ["bank", "shares", "profit", "market"]}


def write_split(folder, split, rows):
    with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def test_it_scores_words_and_a_runs_subwords_on_the_prepared_split(tmp_path, capsys):
    """Each label has its own words, so both token sets separate val and test perfectly; the table names both."""
    for split, count in (("train", 12), ("val", 4), ("test", 4)):
        rows = [(f"the {words[i % 4]} and the {words[(i + 1) % 4]} today", label)
                for label, words in TOPICS.items() for i in range(count)]  # fmt: skip
        write_split(tmp_path, split, rows)
    texts = [row[0] for row in csv.reader((tmp_path / "train.csv").open())][1:]
    train_tokenizer(texts, 64).save(str(tmp_path / "tokenizer.json"))
    assert linear_baseline.main([str(tmp_path), "--tokenizer", str(tmp_path / "tokenizer.json")]) == 0
    table = capsys.readouterr().out
    assert "train 24, val 8, test 8" in table
    assert table.count("| 1.0000 | 1.0000 |") == 2 and "| the run's subwords |" in table


def test_a_missing_split_or_column_is_named(tmp_path):
    with pytest.raises(SystemExit, match="train.csv not found"):
        linear_baseline.main([str(tmp_path)])
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.csv").write_text("sentence,label\nhello,a\n")
    with pytest.raises(SystemExit, match="train.csv needs the columns text and label"):
        linear_baseline.main([str(tmp_path)])
