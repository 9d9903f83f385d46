"""Built-in, offline text-classification corpus: language identification of short texts.

Each row is a short "sentence" of ``min_words``..``max_words`` words in one language;
the label is the language code of the Faker locale it came from (``da_DK`` -> ``da``).
The corpus is synthetic, but built so that the task is not trivial:

* Open vocabulary. Each language's Faker lorem word list is shuffled and split: 70 %
  of the words, with Zipf-distributed frequencies, make up training texts; the other
  30 % never occur in training and make up about 30 % of the words of validation and
  test texts. A word-level bag-of-words model has to guess from the remaining words,
  while a model that sees sub-word structure (character n-grams, BPE pieces) can still
  recognise the spelling of an unseen word.
* Close languages. The defaults include Danish/German/Dutch/English,
  Spanish/Italian/French and Polish/Czech, whose word lists share tokens ("in", "a").
* Misleading proper nouns. First names, last names and company names are mixed into
  the texts, half of them from another language of the dataset, so they are only a
  weak cue.

Labels are never encoded in the text itself (no markers, no per-class formatting).
Everything is seeded per class from ``(seed, locale)``, so the output is byte-identical
across runs for the same arguments and installed Faker version, and does not depend on
the order in which ``locales`` are given.
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

from faker import Faker
from faker.config import AVAILABLE_LOCALES

DEFAULT_LOCALES = [
    "cs_CZ",
    "da_DK",
    "de_DE",
    "en_US",
    "es_ES",
    "fr_FR",
    "it_IT",
    "nl_NL",
    "pl_PL",
]
SPLIT_NAMES = ("train", "val", "test")

ZIPF_EXPONENT = 1.0
ZIPF_RANK_OFFSET = 2.7
HELD_OUT_VOCABULARY_FRACTION = 0.3  # share of each word list kept out of training texts
HELD_OUT_WORD_PROBABILITY = 0.3  # chance that a val/test word is a held-out one
PROPER_NOUN_PROBABILITY = 0.15
FOREIGN_PROPER_NOUN_PROBABILITY = 0.5
PROPER_NOUN_POOL_SIZE = 200
MAX_DRAWS_PER_SAMPLE = 50


def generate_text_dataset(
    out_dir: Path,
    *,
    locales: list[str] = DEFAULT_LOCALES,
    samples_per_class: int = 600,
    min_words: int = 3,
    max_words: int = 12,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Write ``train.csv``, ``val.csv`` and ``test.csv`` (columns ``text,label``) to ``out_dir``.

    Returns a summary: ``{"num_rows", "classes", "splits": {"train", "val", "test"}}``.
    """
    labels_by_locale = _validate_arguments(
        locales, samples_per_class, min_words, max_words, val_fraction, test_fraction
    )
    sorted_locales = sorted(labels_by_locale)
    proper_nouns = {locale: _proper_noun_pool(locale, seed) for locale in sorted_locales}

    splits: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLIT_NAMES}
    texts_seen: set[str] = set()
    for locale in sorted_locales:
        generator = _TextGenerator(locale, seed, proper_nouns, min_words, max_words)
        num_test = round(samples_per_class * test_fraction)
        num_val = round(samples_per_class * val_fraction)
        split_sizes = {
            "train": samples_per_class - num_val - num_test,
            "val": num_val,
            "test": num_test,
        }
        for name, size in split_sizes.items():
            texts = generator.unique_texts(size, held_out=name != "train", exclude=texts_seen)
            splits[name] += [(text, labels_by_locale[locale]) for text in texts]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        random.Random(_derive_seed(seed, "split", name)).shuffle(rows)
        _write_csv(out_dir / f"{name}.csv", rows)

    return {
        "num_rows": sum(len(rows) for rows in splits.values()),
        "classes": [labels_by_locale[locale] for locale in sorted_locales],
        "splits": {name: len(rows) for name, rows in splits.items()},
    }


def _validate_arguments(
    locales: list[str],
    samples_per_class: int,
    min_words: int,
    max_words: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, str]:
    """Check the arguments and return the label (language code) of each locale."""
    labels_by_locale: dict[str, str] = {}
    for locale in locales:
        if locale not in AVAILABLE_LOCALES or not _has_own_word_list(locale):
            raise ValueError(f"locales: unknown locale {locale!r} or it has no Faker lorem word list")
        label = locale.split("_")[0]
        if label in labels_by_locale.values():
            raise ValueError(f"locales: more than one locale for language {label!r}")
        labels_by_locale[locale] = label
    if len(labels_by_locale) < 2:
        raise ValueError("locales must name at least two locales")
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}")
    if min_words > max_words:
        raise ValueError(f"min_words ({min_words}) must be <= max_words ({max_words})")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if samples_per_class - round(samples_per_class * val_fraction) - round(samples_per_class * test_fraction) < 1:
        raise ValueError(
            f"samples_per_class={samples_per_class} leaves no training text per class "
            f"with val_fraction={val_fraction} and test_fraction={test_fraction}"
        )
    return labels_by_locale


def _has_own_word_list(locale: str) -> bool:
    """True when Faker has a lorem word list for this locale itself, not a fallback."""
    lorem_provider = _lorem_provider(Faker(locale))
    return type(lorem_provider).__module__ == f"faker.providers.lorem.{locale}"


def _lorem_provider(fake: Faker):
    return next(
        provider for provider in fake.get_providers() if type(provider).__module__.startswith("faker.providers.lorem")
    )


def _derive_seed(seed: int, *parts: str) -> int:
    """A 64-bit seed from the user seed and names (stable, unlike ``hash()`` of a str)."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _proper_noun_pool(locale: str, seed: int) -> list[str]:
    """First names, last names and company names of one locale, in a fixed order.

    (Not city names: Faker's ``it_IT`` city list is built from a set, so its order
    depends on ``PYTHONHASHSEED``.)
    """
    fake = Faker(locale)
    fake.seed_instance(_derive_seed(seed, "proper-nouns", locale))
    makers = (fake.first_name, fake.last_name, fake.company)
    return [makers[index % len(makers)]() for index in range(PROPER_NOUN_POOL_SIZE)]


class _TextGenerator:
    """Draws texts of one language from its own seeded random stream."""

    def __init__(
        self,
        locale: str,
        seed: int,
        proper_nouns: dict[str, list[str]],
        min_words: int,
        max_words: int,
    ) -> None:
        self.locale = locale
        self.rng = random.Random(_derive_seed(seed, "class", locale))
        self.proper_nouns = proper_nouns
        self.other_locales = [other for other in proper_nouns if other != locale]
        self.min_words = min_words
        self.max_words = max_words
        words = list(dict.fromkeys(_lorem_provider(Faker(locale)).word_list))
        self.rng.shuffle(words)
        num_held_out = round(len(words) * HELD_OUT_VOCABULARY_FRACTION)
        self.held_out_words = words[:num_held_out]
        self.common_words = words[num_held_out:]
        self.common_word_weights = [
            1.0 / (rank + ZIPF_RANK_OFFSET) ** ZIPF_EXPONENT for rank in range(len(self.common_words))
        ]

    def unique_texts(self, count: int, *, held_out: bool, exclude: set[str]) -> list[str]:
        """``count`` new texts not in ``exclude``; each is added to ``exclude``.

        With ``held_out`` (validation and test texts) some words come from the
        vocabulary that training texts never use.
        """
        texts: list[str] = []
        draws_left = count * MAX_DRAWS_PER_SAMPLE
        while len(texts) < count:
            if draws_left == 0:
                raise ValueError(
                    f"samples_per_class is too large: could not draw {count} distinct texts "
                    f"for locale {self.locale!r} with {self.min_words}..{self.max_words} words"
                )
            draws_left -= 1
            text = self._text(held_out)
            if text not in exclude:
                exclude.add(text)
                texts.append(text)
        return texts

    def _text(self, held_out: bool) -> str:
        num_words = self.rng.randint(self.min_words, self.max_words)
        tokens = [self._token(held_out) for _ in range(num_words)]
        text = " ".join(tokens)
        return text[0].upper() + text[1:] + "."

    def _token(self, held_out: bool) -> str:
        if self.rng.random() < PROPER_NOUN_PROBABILITY:
            if self.rng.random() < FOREIGN_PROPER_NOUN_PROBABILITY:
                source_locale = self.rng.choice(self.other_locales)
            else:
                source_locale = self.locale
            return self.rng.choice(self.proper_nouns[source_locale])
        if held_out and self.rng.random() < HELD_OUT_WORD_PROBABILITY:
            return self.rng.choice(self.held_out_words)
        return self.rng.choices(self.common_words, weights=self.common_word_weights)[0]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
