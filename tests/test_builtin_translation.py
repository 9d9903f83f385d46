"""The built-in German -> English corpus: the importer's layout, real CLDR renderings, disjoint splits, determinism."""

import pytest

from tasks.data.builtin_translation import PHRASE_SEPARATOR, PHRASES, generate_translation_dataset, read_phrases
from tasks.data.datasets import read_parallel

SPLITS = ("train", "val", "test")


def test_layout_alignment_and_disjoint_splits(tmp_path):
    summary = generate_translation_dataset(
        tmp_path, num_pairs=400, max_phrases=3, val_fraction=0.1, test_fraction=0.2, seed=1
    )
    assert summary == {"num_pairs": 400, "splits": {"train": 280, "val": 40, "test": 80}}
    files = sorted(f"{s}.{lang}" for s in SPLITS for lang in ("de", "en"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, PHRASES])
    pairs = {split: read_parallel(tmp_path, split, ("de", "en")) for split in SPLITS}
    for split, (german, english) in pairs.items():
        assert len(german) == len(english) == summary["splits"][split]
        for source, target in zip(german, english):  # phrase by phrase, one rendering per language
            assert source.count("; ") == target.count("; ") and "\u00a0" not in source + target
    assert not set(pairs["train"][0]) & (set(pairs["val"][0]) | set(pairs["test"][0]))


def test_the_phrase_alignment_of_each_test_line_is_recorded_apart_from_the_split(tmp_path):
    """test_phrases.jsonl: per test line, the character spans of phrase i in the source and in the target, which cut
    both lines into the phrases the separator joins; the translation spec's split glob (test.*) leaves it out."""
    generate_translation_dataset(tmp_path, num_pairs=300, max_phrases=3, test_fraction=0.2, seed=2)
    german, english = read_parallel(tmp_path, "test", ("de", "en"))
    phrases = read_phrases(tmp_path)
    assert len(phrases) == len(german) == 60
    counts = set()
    for source, target, spans in zip(german, english, phrases):
        assert len(spans["source"]) == len(spans["target"]) == source.count(PHRASE_SEPARATOR) + 1
        assert PHRASE_SEPARATOR.join(source[a:b] for a, b in spans["source"]) == source
        assert PHRASE_SEPARATOR.join(target[a:b] for a, b in spans["target"]) == target
        counts.add(len(spans["source"]))
    assert counts == {1, 2, 3}
    assert PHRASES not in [path.name for path in tmp_path.glob("test.*")]
    assert read_phrases(tmp_path / "elsewhere") is None  # an imported corpus has none


def test_phrases_are_cldr_renderings(tmp_path):
    generate_translation_dataset(tmp_path, num_pairs=600, max_phrases=1, seed=0)
    german, english = read_parallel(tmp_path, "train", ("de", "en"))
    pairs = dict(zip(german, english))
    assert any(de.endswith(" €") and en.startswith("€") for de, en in pairs.items())  # 12,50 € / €12.50
    assert any("Kilometer" in de and "kilometer" in en for de, en in pairs.items())
    dates = [(de, en) for de, en in pairs.items() if de[-4:].isdigit() and "März" in de]
    assert dates and all("March" in en or "Mar" in en for _, en in dates)
    assert pairs.get("Deutschland", "Germany") == "Germany" and pairs.get("Französisch", "French") == "French"


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path):
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_translation_dataset(runs[name], num_pairs=100, seed=seed)
    files = [f"{s}.{lang}" for s in SPLITS for lang in ("de", "en")] + [PHRASES]
    assert all((runs["a"] / f).read_bytes() == (runs["b"] / f).read_bytes() for f in files)
    assert (runs["a"] / "train.de").read_bytes() != (runs["c"] / "train.de").read_bytes()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_pairs": 2}, "num_pairs must be >= 3"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum to less than 1"),
    ],
)
def test_bad_arguments(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_translation_dataset(tmp_path, **arguments)
