"""Import the user's own data into the layouts the built-in generators write (and datasets.py reads):

- image:  out/{train,val,test}/<class>/<name>.png       from class folders (layout "folders") or a CSV manifest ("csv")
- speech: out/<word>/<name>.wav + validation_list.txt, testing_list.txt
                                                        from the Speech Commands layout or a CSV manifest
- text:   out/{train,val,test}.csv with header text,label   from a CSV or TSV file (or a folder of split files)
- translation: out/{train,val,test}.<source_lang> and .<target_lang>, one sentence per line, line-aligned
                                                        from parallel files per split, plain or gzipped

Every input is decoded to check it (PIL for images, soundfile for audio) and re-written in one format: PNG images;
16-bit PCM mono WAV at the target sample rate (resampled with scipy's polyphase filter, stereo downmixed); UTF-8
CSV rows; UTF-8 lines. A problem stops the import with a ``DataImportError`` naming the file (and row). Output is
deterministic: inputs are read in sorted order, splits that the source lacks are drawn with the given seed, and no
file holds a timestamp, so the same source always gives byte-identical files (and the same DVC md5).
"""

import csv
import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image, UnidentifiedImageError

from tasks.errors import EXIT_BAD_DATA, AttnflowError
from tasks.progress import counted

SPLITS = ("train", "val", "test")
TEXT_ENCODING = "utf-8-sig"  # UTF-8, and a byte order mark (as spreadsheet programs write) is not part of a column name
MAX_TEXT_BYTES = 2 * 2**30  # of one text file, decompressed
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
NOT_WORDS = {"_background_noise_"}  # Speech Commands' noise recordings, not a class
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "dev": "val", "test": "test"}


class DataImportError(AttnflowError, ValueError):
    """The user's data cannot be imported; the message names the file (and row) at fault."""

    exit_code = EXIT_BAD_DATA


# ---- what a source is made of ------------------------------------------------------------
def source_fingerprint(path: Path, manifest: bool = False) -> str:
    """sha256 over the relative path, size and modification time (ns) of every file the import reads.

    Cheap on large datasets (no file is read) and it changes whenever a file is added, removed, resized or
    rewritten; a mere touch re-imports, which gives the same files again. A manifest (image/speech layout "csv")
    names files beside it, so its whole folder is fingerprinted. A missing path hashes as "missing":
    the import itself then reports it.
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    base = path.parent if manifest and path.is_file() else path
    files = [path] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    sha = hashlib.sha256()
    for file in files:
        stat = file.stat()
        name = file.name if base.is_file() else file.relative_to(base).as_posix()
        sha.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()


def require(path: Path, what: str, folder: bool | None = None) -> Path:
    if not path.exists():
        raise DataImportError(f"{path}: {what} not found")
    if folder is True and not path.is_dir():
        raise DataImportError(f"{path}: {what} must be a folder")
    if folder is False and not path.is_file():
        raise DataImportError(f"{path}: {what} must be a file")
    return path


def split_name(value: str, where: str) -> str:
    try:
        return SPLIT_NAMES[value.strip().lower()]
    except KeyError:
        raise DataImportError(f"{where}: unknown split {value!r} (use train, val or test)") from None


# ---- splits the source lacks ----------------------------------------------------------------
def carve(labels: list[str], fractions: dict[str, float], seed: int) -> list[str]:
    """Assign train or one of the fractions' splits to each example, per class (stratified), seeded."""
    rng = np.random.default_rng(seed)
    assigned = ["train"] * len(labels)
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        order = rng.permutation(len(members))
        start = 0
        for split, fraction in fractions.items():
            count = min(round(len(members) * fraction), len(members) - start - 1)  # keep one for train
            for k in order[start : start + max(count, 0)]:
                assigned[members[k]] = split
            start += max(count, 0)
    return assigned


def carve_groups(groups: list[str], fractions: dict[str, float], seed: int) -> list[str]:
    """Assign whole groups (speakers) to splits, seeded, so no group is in two splits."""
    rng = np.random.default_rng(seed)
    unique = sorted(set(groups))
    order = [unique[i] for i in rng.permutation(len(unique))]
    split_of, start = {}, 0
    for split, fraction in fractions.items():
        count = min(max(round(len(unique) * fraction), 1), len(unique) - start - 1)
        for group in order[start : start + max(count, 0)]:
            split_of[group] = split
        start += max(count, 0)
    return [split_of.get(group, "train") for group in groups]


def check_splits(items: list[tuple[str, str, str]], describe) -> None:
    """items: (split, label, where). Every split is non-empty and every val/test label occurs in train."""
    train_labels = {label for split, label, _ in items if split == "train"}
    for split in SPLITS:
        if not any(s == split for s, _, _ in items):
            raise DataImportError(f"{describe}: no examples in the {split} split (too little data for the fractions?)")
    for split, label, where in items:
        if label not in train_labels:
            raise DataImportError(f"{where}: unknown label {label!r} in the {split} split (no training example has it)")
    if len(train_labels) < 2:
        raise DataImportError(f"{describe}: at least 2 labels are needed, found {sorted(train_labels)}")


def safe_name(label: str, where: str) -> str:
    label = label.strip()
    if not label:
        raise DataImportError(f"{where}: empty label")
    if label in {".", ".."} or "/" in label or "\\" in label or label.startswith("."):
        raise DataImportError(f"{where}: label {label!r} cannot name a folder")
    return label


def read_manifest(manifest: Path, columns: dict[str, str | None]) -> list[dict]:
    """Rows of a manifest with the wanted columns (None: not wanted): CSV, or tab-separated when its name ends in
    .tsv; errors name the file and row."""
    require(manifest, "manifest", folder=False)
    layout = "tsv" if manifest.suffix.lower() == ".tsv" else "csv"
    with manifest.open(newline="", encoding=TEXT_ENCODING) as file:
        reader = csv.DictReader(
            file,
            delimiter="\t" if layout == "tsv" else ",",
            quoting=csv.QUOTE_NONE if layout == "tsv" else csv.QUOTE_MINIMAL,
        )
        try:
            header = reader.fieldnames or []
            missing = [name for name in columns.values() if name is not None and name not in header]
            if missing:
                raise DataImportError(
                    f"{manifest}: missing column(s) {missing} (the header has {header})" + layout_hint(header, layout)
                )
            rows = []
            for number, row in enumerate(reader, start=2):
                refuse_nul(row.values(), f"{manifest}, row {number}")
                values = {key: (row[name] or "").strip() if name else None for key, name in columns.items()}
                for key, value in values.items():
                    if value is not None and not value:
                        raise DataImportError(f"{manifest}, row {number}: empty {columns[key]!r}")
                rows.append(values | {"where": f"{manifest}, row {number}"})
        except csv.Error as error:
            raise DataImportError(
                f"{manifest}, row {reader.line_num}: cannot read as {layout.upper()} ({error})"
            ) from None
        except UnicodeDecodeError as error:
            raise DataImportError(f"{manifest}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return rows


def manifest_file(manifest: Path, relative: str, where: str) -> Path:
    path = (manifest.parent / relative).resolve()
    if not path.is_relative_to(manifest.parent.resolve()):
        raise DataImportError(f"{where}: {relative!r} is outside the manifest's folder")
    if not path.is_file():
        raise DataImportError(f"{where}: file {relative!r} not found")
    return path


# ---- image ------------------------------------------------------------------------------------
def decode_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: truncated or corrupt files fail here
            return image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    except Image.DecompressionBombError as error:  # more pixels than PIL decodes safely: a decompression bomb
        raise DataImportError(f"{path}: image too large to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataImportError(f"{path}: not a readable image ({error})") from None


def manifest_sources(manifest: Path, file_column: str, label_column: str, split_column: str | None):
    """(split or None, label, path, where) for every row of a CSV manifest of files."""
    rows = read_manifest(manifest, {"file": file_column, "label": label_column, "split": split_column})
    return [
        (
            split_name(row["split"], row["where"]) if split_column else None,
            row["label"],
            manifest_file(manifest, row["file"], row["where"]),
            row["where"],
        )
        for row in rows
    ]


def image_sources(source: Path, layout: str, image_column: str, label_column: str, split_column: str | None):
    """(split or None, label, path, where) for every image of the source."""
    if layout == "csv":
        return manifest_sources(source, image_column, label_column, split_column)
    require(source, "image folder", folder=True)
    split_dirs = {name: source / folder for folder, name in SPLIT_NAMES.items() if (source / folder).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise DataImportError(f"{source}: has {sorted(split_dirs)} split folders but no train folder")
    roots = split_dirs or {None: source}
    found = []
    for split, folder in sorted(roots.items(), key=lambda item: SPLITS.index(item[0]) if item[0] else 0):
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((split, class_dir.name, path, str(path)))
    if not found:
        raise DataImportError(f"{source}: no images found (expected <class>/<image> or train/<class>/<image>)")
    return found


def import_images(
    source: Path,
    out_dir: Path,
    *,
    layout: str = "folders",
    image_column: str = "image",
    label_column: str = "label",
    split_column: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    **_,
) -> dict:
    found = image_sources(Path(source), layout, image_column, label_column, split_column)
    found = fill_splits(found, val_fraction, test_fraction, seed)
    check_splits([(split, label, where) for split, label, _, where in found], source)
    written: dict[Path, str] = {}
    for split, label, path, where in counted(found, "importing images", "images"):
        target = out_dir / split / safe_name(label, where) / (path.stem + ".png")
        if target in written:
            raise DataImportError(
                f"{where}: gives the same output file as {written[target]} ({target.relative_to(out_dir)})"
            )
        written[target] = where
        image = decode_image(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="PNG", optimize=False)
    return summary(found)


def fill_splits(found: list[tuple], val_fraction: float, test_fraction: float, seed: int, groups=None) -> list[tuple]:
    """Give every item a split: those the source lacks are carved out of train (stratified, or by group), seeded."""
    present = {item[0] for item in found}
    fractions = {
        name: fraction for name, fraction in (("test", test_fraction), ("val", val_fraction)) if name not in present
    }
    if not fractions:  # nothing to carve: the rows of a source without splits are training rows
        return [(item[0] or "train", *item[1:]) for item in found]
    pool = [i for i, item in enumerate(found) if item[0] in (None, "train")]
    labels = [found[i][1] for i in pool]
    if groups is None:
        carved = carve(labels, fractions, seed)
    else:
        carved = carve_groups([groups[i] for i in pool], fractions, seed)
    result = [(item[0] or "train", *item[1:]) for item in found]
    for i, split in zip(pool, carved):
        result[i] = (split, *found[i][1:])
    return result


def summary(found: list[tuple]) -> dict:
    return {
        "num_examples": len(found),
        "classes": sorted({item[1] for item in found}),
        "splits": {split: sum(item[0] == split for item in found) for split in SPLITS},
    }


# ---- speech -----------------------------------------------------------------------------------
def check_wav_chunks(path: Path) -> None:
    """A WAV whose data chunk claims more bytes than the file holds is truncated (libsndfile would read it short)."""
    data = path.read_bytes()
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return  # not RIFF/WAVE: soundfile decides
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk == b"data":
            if position + 8 + size > len(data):
                raise DataImportError(
                    f"{path}: truncated WAV (data chunk of {size} bytes, {len(data) - position - 8} in the file)"
                )
            return
        position += 8 + size + (size & 1)
    raise DataImportError(f"{path}: broken WAV (no data chunk)")


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float samples at sample_rate."""
    if path.suffix.lower() == ".wav":
        check_wav_chunks(path)
    try:
        samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise DataImportError(f"{path}: not a readable audio file ({error})") from None
    if not len(samples):
        raise DataImportError(f"{path}: audio has no samples")
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        from scipy.signal import resample_poly  # here: scipy.signal takes seconds to import, few imports resample

        divisor = math.gcd(rate, sample_rate)
        mono = resample_poly(mono, sample_rate // divisor, rate // divisor)
    return np.clip(mono, -1.0, 1.0)


def speaker_of(name: str) -> str:
    """Speech Commands file names are <speaker>_nohash_<n>.wav; other names are their own speaker."""
    stem = Path(name).stem
    return stem.split("_nohash_")[0] if "_nohash_" in stem else stem


def speech_sources(source: Path, layout: str, audio_column: str, label_column: str, split_column: str | None):
    """(split or None, label, path, where) for every clip."""
    if layout == "csv":
        return manifest_sources(source, audio_column, label_column, split_column)
    require(source, "Speech Commands folder", folder=True)
    listed = {}
    for list_name, split in (("validation_list.txt", "val"), ("testing_list.txt", "test")):
        list_path = source / list_name
        if list_path.is_file():
            try:
                lines = list_path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as error:
                raise DataImportError(f"{list_path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    if not (source / line.strip()).is_file():
                        raise DataImportError(f"{list_path}, row {number}: listed file {line.strip()!r} not found")
                    listed[line.strip()] = split
    found = []
    for word_dir in sorted(
        p for p in source.iterdir() if p.is_dir() and p.name not in NOT_WORDS and not p.name.startswith(".")
    ):
        for path in sorted(p for p in word_dir.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
            relative = f"{word_dir.name}/{path.name}"
            found.append((listed.get(relative, "train" if listed else None), word_dir.name, path, str(path)))
    if not found:
        raise DataImportError(f"{source}: no clips found (expected <word>/<clip>.wav)")
    if listed:  # lists given: what they name is val/test, the rest train; a missing list's split is carved
        present = set(listed.values())
        found = [(split if split != "train" or present == {"val", "test"} else None, *rest) for split, *rest in found]
    return found


def import_speech(
    source: Path,
    out_dir: Path,
    *,
    layout: str = "speech_commands",
    audio_column: str = "audio",
    label_column: str = "label",
    split_column: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    sample_rate: int = 16000,
    **_,
) -> dict:
    found = speech_sources(Path(source), layout, audio_column, label_column, split_column)
    found = fill_splits(found, val_fraction, test_fraction, seed, groups=[speaker_of(item[2].name) for item in found])
    check_splits([(split, label, where) for split, label, _, where in found], source)
    written: dict[str, str] = {}
    lists = {"val": [], "test": []}
    for split, label, path, where in counted(found, "importing clips", "clips"):
        relative = f"{safe_name(label, where)}/{path.stem}.wav"
        if relative in written:
            raise DataImportError(f"{where}: gives the same output file as {written[relative]} ({relative})")
        written[relative] = where
        pcm = np.round(decode_audio(path, sample_rate) * 32767).astype(np.int16)
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, pcm, sample_rate, subtype="PCM_16", format="WAV")
        if split in lists:
            lists[split].append(relative)
    for split, list_name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        (out_dir / list_name).write_text("".join(f"{name}\n" for name in sorted(lists[split])))
    return summary(found)


# ---- text -------------------------------------------------------------------------------------
def refuse_nul(cells, where: str) -> None:
    """A NUL character is no part of text (a binary file read as text, or a path that cannot be opened)."""
    if any("\0" in (cell or "") for cell in cells):
        raise DataImportError(f"{where}: contains a NUL byte (binary data, not text)")


def layout_hint(cells: list[str], layout: str) -> str:
    """When a header or row read as one column looks like the other delimited layout, say so: a TSV read as CSV
    (the default layout) is one column holding tabs."""
    if len(cells) != 1:
        return ""
    if layout == "csv" and "\t" in cells[0]:
        return "; it looks tab-separated: set layout: tsv"
    if layout == "tsv" and "," in cells[0]:
        return "; it looks comma-separated: set layout: csv"
    return ""


def text_rows(
    path: Path, layout: str, has_header: bool, text_columns: list, label_column
) -> list[tuple[str, str, str]]:
    """(text, label, where) per row; text columns joined with a space."""
    delimiter = "\t" if layout == "tsv" else ","
    with path.open(newline="", encoding=TEXT_ENCODING) as file:
        reader = csv.reader(file, delimiter=delimiter, quoting=csv.QUOTE_NONE if layout == "tsv" else csv.QUOTE_MINIMAL)
        try:
            if has_header:
                header = next(reader, [])
                missing = [name for name in [*text_columns, label_column] if name not in header]
                if missing:
                    raise DataImportError(
                        f"{path}: missing column(s) {missing} (the header has {header})" + layout_hint(header, layout)
                    )
                positions = [header.index(name) for name in text_columns]
                label_position = header.index(label_column)
            else:
                positions, label_position = list(text_columns), label_column
            first = 2 if has_header else 1
            rows = []
            for number, row in enumerate(reader, start=first):
                where = f"{path}, row {number}"
                refuse_nul(row, where)
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if max(*positions, label_position) >= len(row):
                    raise DataImportError(
                        f"{where}: missing column (needs {max(*positions, label_position) + 1} "
                        f"columns, has {len(row)})" + layout_hint(row, layout)
                    )
                text = " ".join(row[i].strip() for i in positions if row[i].strip())
                if not text:
                    raise DataImportError(f"{where}: empty text")
                label = row[label_position].strip()
                if not label:
                    raise DataImportError(f"{where}: empty label")
                rows.append((text, label, where))
        except csv.Error as error:
            raise DataImportError(f"{path}, row {reader.line_num}: cannot read as {layout.upper()} ({error})") from None
        except UnicodeDecodeError as error:
            raise DataImportError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not rows:
        raise DataImportError(f"{path}: no rows")
    return rows


def import_text(
    source: Path,
    out_dir: Path,
    *,
    layout: str = "csv",
    has_header: bool = True,
    text_columns: list = ("text",),
    label_column="label",
    val: dict | None = None,
    test: dict | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    **_,
) -> dict:
    """val / test: a separate file for that split, {path, layout, has_header, text_columns, label_column}."""
    source = require(Path(source), "text data")
    read_as = dict(layout=layout, has_header=has_header, text_columns=list(text_columns), label_column=label_column)
    if source.is_dir():
        files = {
            split: (source / f"{name}.{layout}", read_as)
            for name, split in SPLIT_NAMES.items()
            if (source / f"{name}.{layout}").is_file()
        }
        if "train" not in files:
            raise DataImportError(
                f"{source}: no train.{layout} (a folder needs train.{layout}, and may have val.{layout}, test.{layout})"
            )
    else:
        files = {None: (source, read_as)}
    for split, spec in (("val", val), ("test", test)):
        if spec is not None:
            spec = dict(spec)
            files[split] = (require(Path(spec.pop("path")), f"{split} text file"), spec)
    found = [
        (split, label, text, where)
        for split, (path, spec) in sorted(files.items(), key=lambda i: str(i[0]))
        for text, label, where in text_rows(
            path, spec["layout"], spec["has_header"], list(spec["text_columns"]), spec["label_column"]
        )
    ]
    found = fill_splits(found, val_fraction, test_fraction, seed)
    check_splits([(split, label, where) for split, label, _, where in found], source)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with (out_dir / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows((text, label) for s, label, text, _ in found if s == split)
    return summary(found)


# ---- translation ------------------------------------------------------------------------------
def parallel_file(folder: Path, stem: str, lang: str) -> Path:
    """<folder>/<stem>.<lang>, or its gzipped <stem>.<lang>.gz."""
    plain, zipped = folder / f"{stem}.{lang}", folder / f"{stem}.{lang}.gz"
    if plain.is_file() and zipped.is_file():
        raise DataImportError(f"{plain}: both it and {zipped.name} exist; keep one")
    if not (plain.is_file() or zipped.is_file()):
        raise DataImportError(f"{plain}: parallel file not found (nor {zipped.name})")
    return plain if plain.is_file() else zipped


def read_capped(path: Path) -> bytes:
    """A file's bytes, decompressed when it ends in .gz, at most MAX_TEXT_BYTES of them: a small file that expands
    without end (a gzip bomb) stops the import instead of the machine."""
    with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as file:
        data = file.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise DataImportError(f"{path}: more than {MAX_TEXT_BYTES // 2**30} GiB of text (decompressed); split it")
    return data


def read_sentences(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (gzipped when it ends in .gz), stripped; an empty line is an error."""
    try:
        data = read_capped(path)
        text = data.decode("utf-8")
    except (OSError, EOFError, zlib.error) as error:
        raise DataImportError(f"{path}: not a readable gzip file ({error})") from None
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataImportError(f"{path}, line {line}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    sentences = []
    for number, line in enumerate(lines, start=1):
        sentence = line.strip()
        if not sentence:
            raise DataImportError(f"{path}, line {number}: empty line (every line is one sentence)")
        refuse_nul([sentence], f"{path}, line {number}")
        sentences.append(" ".join(sentence.split()))  # tabs, no-break and repeated spaces become one space
    if not sentences:
        raise DataImportError(f"{path}: no sentences")
    return sentences


def import_translation(
    source: Path,
    out_dir: Path,
    *,
    source_lang: str,
    target_lang: str,
    splits: dict,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    **_,
) -> dict:
    """Check each split's two files (both there, as many lines, no empty line, UTF-8) and write them out plainly;
    val and test are carved from train (seeded) when splits does not name them."""
    source = require(Path(source), "parallel corpus folder", folder=True)
    found = []  # (split, label, source sentence, target sentence, where): the shape fill_splits takes
    for split, stem in splits.items():
        paths = [parallel_file(source, stem, lang) for lang in (source_lang, target_lang)]
        sides = [read_sentences(path) for path in paths]
        if len(sides[0]) != len(sides[1]):
            raise DataImportError(
                f"{paths[0]} has {len(sides[0])} lines but {paths[1]} has {len(sides[1])}: "
                "parallel files must be line-aligned"
            )
        found += [(split, "", src, tgt, f"{paths[0]}, line {n}") for n, (src, tgt) in enumerate(zip(*sides), 1)]
    found = fill_splits(found, val_fraction, test_fraction, seed)
    for split in SPLITS:
        if not any(item[0] == split for item in found):
            raise DataImportError(f"{source}: no sentence pairs in the {split} split (too few for the fractions?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for position, lang in ((2, source_lang), (3, target_lang)):
            (out_dir / f"{split}.{lang}").write_text(
                "".join(item[position] + "\n" for item in found if item[0] == split), encoding="utf-8"
            )
    return {"num_pairs": len(found), "splits": {split: sum(item[0] == split for item in found) for split in SPLITS}}
