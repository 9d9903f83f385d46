"""Translation (built-in: German -> English phrases rendered from CLDR data): an encoder-decoder Transformer over one
joint BPE vocabulary, with beam search.

Prepared layout: data/translation/{train,val,test}.<source_lang> and .<target_lang>, one sentence a line,
line-aligned, UTF-8. Metrics: sacrebleu's BLEU and chrF of the detokenized beam-search output against the raw
references, and BLEU of greedy decoding. Attention map: the cross-attention alignment of output subwords over source
subwords. Served input: ``{"text": "a source sentence"}``; answer: the translation and its alignment.
"""

from typing import Literal

from pydantic import Field, model_validator

from tasks.defaults import AUTO, auto_or_number, is_auto, size_values, token_length
from tasks.kinds.sequence import SequenceKind
from tasks.schema import AttentionParams, DataSection, DecodeParams, Depth, Section, SplitFraction, TaskParams

BUILTIN_LANGUAGES = ("de", "en")  # the built-in corpus (tasks/data/builtin_translation.py): German -> English


class TranslationBuiltinData(Section):
    """German-English phrases built from CLDR data (tasks/data/builtin_translation.py)."""

    num_pairs: int = Field(ge=30)
    max_phrases: int = Field(3, ge=1, le=6)  # phrases (a date, an amount, a country, ...) per sentence
    val_fraction: float = SplitFraction
    test_fraction: float = SplitFraction


class TranslationImport(Section):
    """Line-aligned parallel files per split: <path>/<stem>.<lang>, plain or gzipped (<stem>.<lang>.gz)."""

    path: str = Field(min_length=1)  # relative paths are read from the project root
    source_lang: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    target_lang: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    splits: dict[Literal["train", "val", "test"], str] = {"train": "train", "val": "val", "test": "test"}  # -> stem
    val_fraction: float = Field(0.05, gt=0, lt=0.5)  # carved from train (seeded) when splits has no val
    test_fraction: float = Field(0.05, gt=0, lt=0.5)

    @model_validator(mode="after")
    def has_train_and_two_languages(self):
        if "train" not in self.splits:
            raise ValueError("splits must name the train file stem")
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang and target_lang are both {self.source_lang!r}")
        return self


class TranslationData(DataSection):
    builtin: TranslationBuiltinData | None = None
    import_from: TranslationImport | None = None  # when set, it is used instead of builtin


class TranslationModel(AttentionParams):
    encoder_depth: Depth = AUTO  # auto: both the size tier's depth (tasks/defaults.py)
    decoder_depth: Depth = AUTO
    vocab_size: int = Field(ge=32, le=100_000)  # one joint BPE vocabulary for both languages, tied embeddings
    # subword tokens per sentence (longer ones are cut); auto: from the training pairs' lengths (tasks/defaults.py)
    max_len: auto_or_number(int, 4, 4096) = AUTO


class TranslationParams(TaskParams):
    kind: Literal["translation"]
    data: TranslationData
    model: TranslationModel
    eval: DecodeParams = DecodeParams()


def languages(section) -> tuple[str, str]:
    """(source, target) language codes: the imported corpus's, or the built-in corpus's."""
    imported = section.data.import_from
    return (imported.source_lang, imported.target_lang) if imported is not None else BUILTIN_LANGUAGES


class Translation(SequenceKind):
    name, order, params = "translation", 40, TranslationParams
    metrics = ("test_bleu", "test_chrf", "test_bleu_greedy")  # sacrebleu on detokenized output
    input_column = "text"
    model_class = "attn_models.translation_transformer:TranslationTransformer"
    generator = "tasks.data.builtin_translation:generate_translation_dataset"
    importer = "tasks.data.importers:import_translation"
    outputs_folder, output_field = "translations", "translation"
    serving_input = "a source sentence; longer than model.max_len subwords is cut"
    limits = (
        "Decoding stops at eval.max_decode_len tokens; words outside the joint vocabulary become [UNK]. The "
        "alignment shows where the decoder looked, not why it chose a word."
    )

    def split_files(self, data_dir, split):
        return sorted(data_dir.glob(f"{split}.*"))

    def learn_tokenizer(self, data_dir, section):
        """One joint vocabulary for both languages, reversible: the output detokenizes exactly."""
        from tasks.data.datasets import read_parallel, train_tokenizer

        sources, targets = read_parallel(data_dir, "train", languages(section))
        return train_tokenizer(sources + targets, section.model.vocab_size, reversible=True)

    def auto_values(self, section, data_dir, tokenizer):
        """Model size from the training pairs' count, the decoder as deep as the encoder (both sides are language);
        max_len from the longer side: a source as it is, a target with its [BOS] and [EOS]."""
        from tasks.data.datasets import read_parallel

        sources, targets = read_parallel(data_dir, "train", languages(section))
        m = section.model
        encoder = lambda depth: depth if is_auto(m.encoder_depth) else m.encoder_depth  # noqa: E731
        values = size_values(m, len(sources), {"encoder_depth": encoder, "decoder_depth": encoder})
        if is_auto(section.model.max_len):
            counts = [[len(encoding.ids) for encoding in tokenizer.encode_batch(side)] for side in (sources, targets)]
            values["model.max_len"] = max(token_length(counts[0]), token_length(counts[1], extra=2))
        return values

    def load_splits(self, data_dir, section, seed, tokenizer):
        from tasks.data.datasets import (
            LabelledItems,
            Splits,
            encode_targets,
            encode_texts,
            pad_pair_batch,
            read_parallel,
        )

        max_len = section.model.max_len

        def split(name):
            sources, targets = read_parallel(data_dir, name, languages(section))
            return LabelledItems(
                encode_texts(tokenizer, sources, max_len),
                encode_targets(tokenizer, targets, max_len),
                lambda item: item,
            )

        return Splits(split("train"), split("val"), split("test"), [], pad_pair_batch)

    def model_args(self, section, splits, tokenizer):
        m = section.model  # special token ids: the model's defaults, which train_tokenizer's order gives
        return m.attention_args() | dict(
            vocab_size=tokenizer.get_vocab_size(),
            encoder_depth=m.encoder_depth,
            decoder_depth=m.decoder_depth,
            max_len=m.max_len,
        )

    def collate_sources(self, sources):
        from torch.nn.utils.rnn import pad_sequence

        return pad_sequence(sources, batch_first=True, padding_value=0)  # [PAD] is id 0

    def split_texts(self, data_dir, section, split):
        from tasks.data.datasets import read_parallel

        return read_parallel(data_dir, split, languages(section))

    def score(self, hypotheses, references):
        """BLEU and chrF (sacrebleu's defaults: 13a tokenization, case-sensitive)."""
        bleu, chrf = self.scorers(hypotheses, references)
        return {"test_bleu": bleu.score, "test_chrf": chrf.score}

    def metric_tags(self, hypotheses, references):
        """sacrebleu's signatures (references, case, tokenization, smoothing, version): BLEU figures compare only when
        these match (Post, 2018)."""
        bleu, chrf = self.scorers(hypotheses, references, signatures=True)
        return {"test_bleu.signature": bleu, "test_chrf.signature": chrf}

    @staticmethod
    def scorers(hypotheses, references, signatures: bool = False):
        """sacrebleu's corpus BLEU and chrF scores (or, with signatures, the signatures of how they were made)."""
        from sacrebleu.metrics import BLEU, CHRF

        results = []
        for metric in (BLEU(), CHRF()):
            score = metric.corpus_score(hypotheses, [references])
            results.append(str(metric.get_signature()) if signatures else score)
        return results

    def serving_example(self, data_dir, section):
        return self.test_texts(data_dir, section)[0][0]

    def source_record(self, source, tokenizer):
        return {"source_tokens": [tokenizer.id_to_token(int(i)) for i in source]}

    def alignment_figure(self, record, source, model):
        """Output subwords x source subwords; each row (where one output subword looked) sums to 1."""
        import matplotlib.pyplot as plt
        import numpy as np

        source_tokens, output_tokens = record["source_tokens"], record["output_tokens"]
        figure, axes = plt.subplots(
            figsize=(max(4.0, 0.45 * len(source_tokens) + 2), max(3.0, 0.4 * len(output_tokens) + 2))
        )
        axes.imshow(np.array(record["alignment"]), cmap="Blues", aspect="auto", vmin=0)
        plain = {"parse_math": False}  # amounts such as "10,00 AU$" are text, not mathtext
        axes.set_xticks(range(len(source_tokens)))
        axes.set_xticklabels(source_tokens, rotation=60, ha="right", fontsize=8, **plain)
        axes.set_yticks(range(len(output_tokens)))
        axes.set_yticklabels(output_tokens, fontsize=8, **plain)
        axes.set(xlabel="source subwords", ylabel="output subwords")
        axes.set_title(
            f"source: {record['source']}\noutput: {record['translation']}\nreference: {record['reference']}",
            fontsize=8,
            loc="left",
            **plain,
        )
        figure.tight_layout()
        return figure

    def removal_baseline(self, source, e):
        """As many unknown words: a removed subword keeps its position and loses its word."""
        import torch

        from tasks.data.datasets import UNK

        return torch.full_like(source, e.tokenizer.token_to_id(UNK))

    def alignment_evidence(self, index, source, target, e):
        """On the built-in corpus (its test_phrases.jsonl), for sentences of two phrases or more: 1 where source
        subword s lies in the phrase that reference subword t renders (phrase i of the source renders phrase i of the
        target), by the tokenizer's character offsets. Subwords of no phrase (the "; " between them) and [EOS] get
        all-zero rows."""
        import torch

        from tasks.data.builtin_translation import read_phrases

        phrases = read_phrases(e.data_dir) if e.builtin_data else None
        if phrases is None or len(phrases[index]["source"]) < 2:
            return None
        sources, references = self.test_texts(e.data_dir, e.section)
        source_phrases = token_phrases(sources[index], phrases[index]["source"], e.tokenizer)[: len(source)]
        target_phrases = token_phrases(references[index], phrases[index]["target"], e.tokenizer)[: len(target) - 2]
        evidence = torch.zeros(len(target) - 1, len(source))
        for row, phrase in enumerate(target_phrases):
            if phrase is not None:
                evidence[row] = torch.tensor([float(p == phrase) for p in source_phrases])
        return evidence

    def viewer_source(self, source, units, e):
        return self.source_record(source, e.tokenizer)

    def request_source(self, value, checkpoint, tokenizer, limits):
        from tasks.data.datasets import encode_texts
        from tasks.data.requests import text

        return encode_texts(tokenizer, [text(value, limits, "the sentence")], checkpoint["model_args"]["max_len"])[0]


def token_phrases(text: str, spans: list[list[int]], tokenizer) -> list[int | None]:
    """The phrase (its index in spans, character ranges [start, end) of text) of each subword of text: the one that
    holds the subword's first character that is not a space (a Metaspace piece's offsets may take the space before
    it), or, for a space alone, the space; None for a subword in no phrase (the "; " between phrases)."""
    phrases = []
    for start, end in tokenizer.encode(text).offsets:
        first = next((c for c in range(start, end) if not text[c].isspace()), start)
        phrases.append(next((i for i, (a, b) in enumerate(spans) if a <= first < b), None))
    return phrases


SPEC = Translation()
