"""Pretrained Hugging Face backbones a classifier can fine-tune (``model.backbone`` of a task): where the files are,
their fingerprint, the tokenizer the text kind uses in place of its learned BPE, the image processor and feature
extractor the image and speech kinds read inputs with, and the checks that stop a run early
with the params key named.

A ``source`` is a folder in ``save_pretrained`` layout (relative paths are read from the project root) or a hub id
(with an optional ``revision``), fetched into the Hugging Face cache when the machine can reach the hub. Either way
the run records the sha256 of the files it was built from (weights, config, tokenizer, image processor or feature
extractor): ``attnflow reproduce`` refuses to re-run on other files. transformers is imported inside the functions:
every command imports this module through the kinds, and most never load a backbone.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from tasks.errors import UserError

# The files a backbone is made of: weights, config, tokenizer, preprocessor (preprocessor_config.json: an image
# backbone's image processor, an audio backbone's feature extractor). Other files in the folder (a README, ONNX
# exports, training logs) do not change the model and are left out of its fingerprint.
FINGERPRINTED = ("*.safetensors", "*.bin", "config.json", "tokenizer*.json", "vocab.txt", "vocab.json", "merges.txt",
                 "special_tokens_map.json", "*.model", "preprocessor_config.json")  # fmt: skip
SHA256_TAG = "backbone_sha256"  # MLflow tag: the digest over every fingerprinted file
FILES_TAG = "backbone_files"  # MLflow tag: JSON {file: sha256}
PAD_ID = 0  # the text kind pads batches with id 0 (its own BPE's [PAD]; BERT-style vocabularies' too)
UNKNOWN = "[UNK]"  # what the text kind's removed words and unknown-rate read


def key(task: str | None) -> str:
    return f"tasks.{task}.model.backbone.source" if task else "model.backbone.source"


def is_local(source: str, root: Path) -> bool:
    """A folder path (relative or absolute, or one that looks like a path) rather than a hub id (owner/name)."""
    path = Path(source).expanduser()
    return path.is_absolute() or source.startswith(".") or (root / path).exists()


def folder(backbone, root: Path, task: str) -> Path:
    """The backbone's files on this machine: its folder, or the hub snapshot of its revision (downloaded into the
    Hugging Face cache when missing). A folder or id that is not there: UserError naming the params key."""
    source = backbone.source
    if is_local(source, root):
        path = Path(source).expanduser()
        path = path if path.is_absolute() else root / path
        if not (path / "config.json").is_file():
            raise UserError(f"{key(task)}: {source!r} is not a pretrained model folder (no {path / 'config.json'})")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=backbone.revision, allow_patterns=list(FINGERPRINTED)))
    except Exception as error:  # offline, unknown id, no such revision: all the user's to fix
        raise UserError(f"{key(task)}: cannot fetch {source!r} from the hub: {first_line(error)}") from None


def first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of each file the backbone is made of, by its name in the folder. The train stage's cache key, its
    lineage tags and reproduce's check each ask for it: a file is read again only when its size or mtime changed."""
    files = sorted({file for pattern in FINGERPRINTED for file in path.glob(pattern) if file.is_file()})
    return {file.name: file_sha256(file, *_stamp(file)) for file in files}


def _stamp(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def file_sha256(file: Path, size: int, mtime_ns: int) -> str:
    """A file's sha256, cached by its path, size and mtime."""
    return hashlib.sha256(file.read_bytes()).hexdigest()


def digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def lineage(backbone, root: Path, task: str) -> dict[str, str]:
    """The MLflow tags that say which backbone a run fine-tuned: source, revision, the digest and each file's."""
    files = fingerprint(folder(backbone, root, task))
    return {"backbone_source": backbone.source, "backbone_revision": backbone.revision or "",
            SHA256_TAG: digest(files), FILES_TAG: json.dumps(files, sort_keys=True)}  # fmt: skip


def lineage_of(section, root: Path, task: str) -> dict[str, str]:
    """The section's backbone's lineage tags, or none without a backbone."""
    backbone = getattr(section.model, "backbone", None)
    return lineage(backbone, root, task) if backbone is not None else {}


def check_same_files(recorded: dict[str, str], backbone, root: Path, task: str) -> None:
    """For reproduce: the backbone's files here are the ones the run recorded (its tags), else UserError naming
    the files that differ or are missing."""
    if SHA256_TAG not in recorded:
        return
    if backbone is None:
        raise UserError(f"{key(task)}: the run fine-tuned {recorded.get('backbone_source')!r}; its params name none")
    here = fingerprint(folder(backbone, root, task))
    if digest(here) == recorded[SHA256_TAG]:
        return
    before = json.loads(recorded.get(FILES_TAG, "{}"))
    differ = sorted(name for name in before.keys() | here.keys() if before.get(name) != here.get(name))
    raise UserError(f"{key(task)}: the backbone's files differ from the run's ({', '.join(differ)}): reproduce "
                    f"needs the files the run fine-tuned (sha256 {recorded[SHA256_TAG][:16]}...)")  # fmt: skip


def check_sources(params, root: Path, tasks: list[str]) -> None:
    """Before a run starts: every selected task's backbone is there, its config loads, and what its kind reads
    inputs with loads and fits it (the kind's ``check_backbone``: a tokenizer, an image processor, a feature
    extractor), else UserError naming the task's key, so that no MLflow run opens for a model that cannot be built."""
    from transformers import AutoConfig

    for task in tasks:
        section = params.task(task)
        backbone = getattr(section.model, "backbone", None)
        if backbone is None:
            continue
        path = folder(backbone, root, task)
        try:
            AutoConfig.from_pretrained(path)
        except Exception as error:
            raise UserError(f"{key(task)}: cannot load {backbone.source!r}: {first_line(error)}") from None
        params.kind(task).check_backbone(section, root, task)


def located(section, root: Path):
    """The section with a local backbone folder made absolute, so that the kind loads it wherever it runs."""
    from tasks.defaults import resolved_section

    backbone = getattr(section.model, "backbone", None)
    if backbone is None or not is_local(backbone.source, root):
        return section
    return resolved_section(section, {"model.backbone.source": str(folder(backbone, root, None))})


def load_model_config(backbone, root: Path, task: str | None = None):
    """The backbone's config (AutoConfig)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder(backbone, root, task))


def load_model(backbone, root: Path, task: str | None = None):
    """The pretrained model alone (image and audio backbones have no tokenizer), loaded with eager attention
    (attention weights with gradients); a folder or id that does not load: UserError naming the params key."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(folder(backbone, root, task), attn_implementation="eager", use_kernels=False)
    except Exception as error:  # a broken or partial folder: which file, in transformers' words
        raise UserError(f"{key(task)}: cannot load {backbone.source!r}: {first_line(error)}") from None


def image_processor_config(backbone, root: Path, task: str | None = None) -> dict:
    """The backbone's image processor's settings (size, mean, std, rescaling: preprocessor_config.json as
    ``AutoImageProcessor`` reads it), as plain JSON values: what the image kind resizes and normalises with, and
    records in the checkpoint so that serving decodes requests alike. None there: UserError naming the params key."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder(backbone, root, task))
    except Exception as error:
        raise UserError(f"{key(task)}: cannot load the image processor of {backbone.source!r}: "
                        f"{first_line(error)}") from None  # fmt: skip
    return json.loads(processor.to_json_string())


def feature_extractor(backbone, root: Path, task: str | None = None, sample_rate: int | None = None) -> dict:
    """An audio backbone's feature extractor, as the settings the model decodes clips with (recorded in the
    checkpoint, so serving decodes requests the same way); one that does not load, is not AST's kind, or samples at
    another rate than the task's clips (data.sample_rate): UserError naming the key."""
    from transformers import AutoFeatureExtractor

    from attn_models.pretrained import EXTRACTOR_KEYS, extractor_settings

    try:
        extractor = AutoFeatureExtractor.from_pretrained(folder(backbone, root, task))
    except Exception as error:
        raise UserError(f"{key(task)}: cannot load the feature extractor of {backbone.source!r}: "
                        f"{first_line(error)}") from None  # fmt: skip
    missing = [name for name in EXTRACTOR_KEYS if not hasattr(extractor, name)]
    if missing:
        raise UserError(f"{key(task)}: {type(extractor).__name__} is not an AST feature extractor (no "
                        f"{', '.join(missing)}); the speech kind fine-tunes AST backbones")  # fmt: skip
    if sample_rate is not None and extractor.sampling_rate != sample_rate:
        where = f"tasks.{task}.data.sample_rate" if task else "data.sample_rate"
        raise UserError(f"{where}: {sample_rate} Hz, but the backbone {backbone.source!r} takes "
                        f"{extractor.sampling_rate} Hz audio (set it to {extractor.sampling_rate})")  # fmt: skip
    return extractor_settings(extractor)


def load_tokenizer(backbone, root: Path, task: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder(backbone, root, task))


def content_tokenizer(tokenizer, task: str | None = None):
    """The backbone's tokenizer as the kind uses it (a tokenizers.Tokenizer, saved with the run as tokenizer.json):
    content tokens only, since the model adds its class token itself; no padding or truncation (the kind pads each
    batch and cuts at max_len). It must pad with PAD_ID and know UNKNOWN, as the text kind does."""
    from tokenizers import processors

    if not tokenizer.is_fast:
        raise UserError(f"{key(task)}: the backbone has no fast tokenizer (tokenizer.json), which the text kind needs")
    backend = tokenizer.backend_tokenizer
    if tokenizer.pad_token_id != PAD_ID or backend.token_to_id(UNKNOWN) is None:
        raise UserError(f"{key(task)}: the text kind takes BERT-style vocabularies ([PAD] = {PAD_ID}, {UNKNOWN}); "
                        f"this one pads with {tokenizer.pad_token!r} = {tokenizer.pad_token_id}")  # fmt: skip
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    backend.no_padding()
    backend.no_truncation()
    return backend


def class_token_id(tokenizer) -> int:
    """The token the backbone was pretrained to summarise a sequence in: [CLS] (BERT), else <s>."""
    token = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    if token is None:
        raise ValueError("the backbone's tokenizer has neither a class nor a start-of-sequence token")
    return token
