"""Built-in, offline German -> English parallel corpus made from CLDR locale data (Babel).

Each sentence joins 1..``max_phrases`` phrases with "; ", and each phrase is a real CLDR rendering of one value
in both languages: a date (``format_date``: full, long or medium, so German and English order day, month and year
differently: "Freitag, 5. März 2021" / "Friday, March 5, 2021"), an amount of money (German "1.234,50 €" /
English "€1,234.50"), a quantity with its unit, inflected ("2 Kilowattstunden" / "2 kilowatt-hours"), a country
or region, or a language name ("Vereinigte Arabische Emirate" / "United Arab Emirates"), a list of two or three
of them ("Polen, Japan und Chile" / "Poland, Japan, and Chile"), a time of day ("14:05" / "2:05 PM") or a time
relative to now ("vor 5 Stunden" / "5 hours ago"). The model has to translate names, reorder dates and relative
times, inflect units, convert the 24-hour clock and rewrite number formats; its cross-attention should align each
German phrase with its English rendering.

Deterministic: the values are drawn from ``random.Random(seed)`` and the layout is the one the translation
importer writes (``{train,val,test}.{de,en}``, one sentence per line, line-aligned, UTF-8). The splits are
disjoint (no German sentence is in two splits). Non-breaking spaces from CLDR become plain spaces.

Phrase i of a German sentence renders the same value as phrase i of its English one, so the right alignment is
known by construction at the phrase level; the generator records it for the test split in ``test_phrases.jsonl``
(one JSON line per test line: the character spans [start, end) of each phrase in the source and in the target),
which the explain stage scores cross-attention maps against. The name keeps it out of the test split's files
(``test.*``), so the split's identity (its digest) is the sentences alone.
"""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path

SOURCE_LANG, TARGET_LANG = "de", "en"
SPLIT_NAMES = ("train", "val", "test")
PHRASE_SEPARATOR = "; "
PHRASES = "test_phrases.jsonl"  # the phrase alignment of each test line (see the module docstring)
DATE_FORMATS = ("full", "long", "medium")
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY", "SEK", "CAD", "AUD")
UNITS = (
    "length-kilometer",
    "length-meter",
    "mass-kilogram",
    "duration-hour",
    "duration-day",
    "duration-week",
    "duration-month",
    "duration-year",
    "duration-minute",
    "volume-liter",
    "temperature-celsius",
    "speed-kilometer-per-hour",
    "area-square-meter",
    "digital-gigabyte",
    "energy-kilowatt-hour",
)
FIRST_DAY, NUM_DAYS = datetime.date(1950, 1, 1), 100 * 365
TIME_FORMATS = ("short", "medium")
RELATIVE_UNITS = {"minutes": 59, "hours": 23, "days": 6, "weeks": 3}  # the largest count each is spoken with


def generate_translation_dataset(
    out_dir: Path,
    *,
    num_pairs: int = 6000,
    max_phrases: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """Write {train,val,test}.de and .en and the test split's phrase alignment (PHRASES) to out_dir; returns
    {"num_pairs", "splits": {split: pairs}}."""
    if num_pairs < 3 or max_phrases < 1:
        raise ValueError(f"num_pairs must be >= 3 and max_phrases >= 1, got {num_pairs} and {max_phrases}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and sum to less than 1"
        )
    phrases = PhraseMaker(random.Random(seed))
    pairs: dict[str, list[tuple[str, str]]] = {}  # German sentence -> its phrases; a German sentence occurs once
    attempts = 0
    while len(pairs) < num_pairs:
        attempts += 1
        if attempts > 20 * num_pairs:
            raise ValueError(f"num_pairs={num_pairs}: could not draw that many distinct sentences")
        parts = [phrases.draw() for _ in range(phrases.rng.randint(1, max_phrases))]
        pairs.setdefault(PHRASE_SEPARATOR.join(de for de, _ in parts), parts)
    # in drawing order, which the seed fixes: (German, English, the phrases)
    rows = [(source, PHRASE_SEPARATOR.join(en for _, en in parts), parts) for source, parts in pairs.items()]
    num_test, num_val = max(1, round(num_pairs * test_fraction)), max(1, round(num_pairs * val_fraction))
    splits = {"test": rows[:num_test], "val": rows[num_test : num_test + num_val], "train": rows[num_test + num_val :]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        for position, lang in enumerate((SOURCE_LANG, TARGET_LANG)):
            (out_dir / f"{split}.{lang}").write_text(
                "".join(row[position] + "\n" for row in split_rows), encoding="utf-8"
            )
    lines = [json.dumps(phrase_spans(parts)) + "\n" for _, _, parts in splits["test"]]
    (out_dir / PHRASES).write_text("".join(lines), encoding="utf-8")
    return {"num_pairs": len(rows), "splits": {split: len(splits[split]) for split in SPLIT_NAMES}}


def spans(texts: list[str]) -> list[list[int]]:
    """The character spans [start, end) of texts joined with PHRASE_SEPARATOR."""
    result, start = [], 0
    for text in texts:
        result.append([start, start + len(text)])
        start += len(text) + len(PHRASE_SEPARATOR)
    return result


def phrase_spans(parts: list[tuple[str, str]]) -> dict[str, list[list[int]]]:
    """{"source": spans of the German phrases, "target": spans of the English ones}: phrase i renders phrase i."""
    return {"source": spans([de for de, _ in parts]), "target": spans([en for _, en in parts])}


def read_phrases(data_dir: Path) -> list[dict] | None:
    """The phrase spans of each test line (``phrase_spans``), or None for data without them (imported corpora)."""
    path = Path(data_dir) / PHRASES
    if not path.exists():
        return None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def plain_spaces(text: str) -> str:
    """CLDR separates numbers and units with no-break spaces; the corpus uses plain ones."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


class PhraseMaker:
    """Draws (German, English) renderings of random values from one seeded stream."""

    def __init__(self, rng: random.Random):
        from babel import Locale  # here: only building the data needs CLDR

        self.rng = rng
        self.de, self.en = Locale(SOURCE_LANG), Locale(TARGET_LANG)
        self.territories = sorted(
            code for code in self.en.territories if len(code) == 2 and code.isalpha() and code in self.de.territories
        )
        self.languages = sorted(code for code in self.en.languages if len(code) == 2 and code in self.de.languages)
        self.makers = (
            self.date,
            self.amount,
            self.quantity,
            self.territory,
            self.language,
            self.name_list,
            self.time_of_day,
            self.relative_time,
        )

    def draw(self) -> tuple[str, str]:
        de, en = self.rng.choice(self.makers)()
        return plain_spaces(de), plain_spaces(en)

    def date(self):
        from babel.dates import format_date

        day = FIRST_DAY + datetime.timedelta(days=self.rng.randrange(NUM_DAYS))
        style = self.rng.choice(DATE_FORMATS)
        return format_date(day, style, locale=self.de), format_date(day, style, locale=self.en)

    def amount(self):
        from babel.numbers import format_currency

        currency = self.rng.choice(CURRENCIES)
        value = self.rng.choice(
            [self.rng.randint(1, 100), self.rng.randint(1, 99_999), self.rng.randint(1, 9999) / 100]
        )
        return format_currency(value, currency, locale=self.de), format_currency(value, currency, locale=self.en)

    def quantity(self):
        from babel.units import format_unit

        unit = self.rng.choice(UNITS)
        value = self.rng.choice([1, self.rng.randint(2, 20), self.rng.randint(21, 999), self.rng.randint(1, 99) / 10])
        return (
            format_unit(value, unit, locale=self.de, length="long"),
            format_unit(value, unit, locale=self.en, length="long"),
        )

    def territory(self):
        code = self.rng.choice(self.territories)
        return self.de.territories[code], self.en.territories[code]

    def language(self):
        code = self.rng.choice(self.languages)
        return self.de.languages[code], self.en.languages[code]

    def name_list(self):
        from babel.lists import format_list

        names = self.rng.choice((self.territory, self.language))
        de, en = zip(*(names() for _ in range(self.rng.randint(2, 3))))
        return format_list(list(de), locale=self.de), format_list(list(en), locale=self.en)

    def time_of_day(self):
        from babel.dates import format_time

        moment = datetime.time(self.rng.randrange(24), self.rng.randrange(60), self.rng.randrange(60))
        style = self.rng.choice(TIME_FORMATS)
        return format_time(moment, style, locale=self.de), format_time(moment, style, locale=self.en)

    def relative_time(self):
        from babel.dates import format_timedelta

        unit = self.rng.choice(sorted(RELATIVE_UNITS))
        delta = datetime.timedelta(**{unit: self.rng.choice((-1, 1)) * self.rng.randint(1, RELATIVE_UNITS[unit])})
        return tuple(
            format_timedelta(delta, add_direction=True, threshold=1.0, locale=locale) for locale in (self.de, self.en)
        )
