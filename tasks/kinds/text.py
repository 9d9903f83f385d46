"""Text classification (built-in: language identification of short texts): a Transformer encoder over BPE subwords.

Prepared layout: data/text/{train,val,test}.csv with the columns text,label. Attention map: rollout over the subword
tokens, drawn as a heatmap. Served input: ``{"text": "a raw string"}``, tokenized with the run's tokenizer.json.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.defaults import AUTO, auto_or_number, finetune_defaults, is_auto, size_values, token_length
from tasks.kinds.classification import Classifier
from tasks.schema import (
    BackboneParams,
    DataSection,
    ModelParams,
    PretrainParams,
    Section,
    SplitFraction,
    TaskParams,
    check_range,
    without_absent,
)

SPLITS = ("train", "val", "test")


class TextBuiltinData(Section):
    """Faker text in several close languages (tasks/data/builtin_text.py)."""

    locales: list[str] = Field(min_length=2)
    samples_per_class: int = Field(ge=10)
    min_words: int = Field(ge=1)
    max_words: int = Field(ge=1)
    val_fraction: float = SplitFraction
    test_fraction: float = SplitFraction

    @model_validator(mode="after")
    def word_range(self):
        check_range("min_words/max_words", self.min_words, self.max_words)
        return self


class TextFile(Section):
    """A CSV or TSV file (or a folder of {train,val,test}.csv|tsv) with one example per row."""

    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["csv", "tsv"] = "csv"
    has_header: bool = True  # without a header, columns are 0-based integer positions
    text_columns: list[str | int] = Field(["text"], min_length=1)  # joined with a space
    label_column: str | int = "label"

    @model_validator(mode="after")
    def columns_match_header(self):
        columns = [*self.text_columns, self.label_column]
        wanted, kind = (str, "names") if self.has_header else (int, "integer positions (has_header is false)")
        wrong = [column for column in columns if not isinstance(column, wanted)]
        if wrong:
            raise ValueError(f"text_columns/label_column must be column {kind}, got {wrong}")
        if not self.has_header and any(column < 0 for column in columns):
            raise ValueError("column positions must be 0 or more")
        return self


INHERITED_BY_SPLIT_FILES = ("layout", "has_header", "text_columns", "label_column")


class TextImport(TextFile):
    """`path` holds the training rows (or every split); `val` / `test` name separate files for those splits. A split
    file reads like the main one (layout, header, columns) unless it sets its own: a three-file TSV dataset needs only
    the paths, while AG News (a headerless TSV to train on, a CSV with a header to test on) sets the test file's own."""

    val: TextFile | None = None
    test: TextFile | None = None
    val_fraction: float = Field(0.15, gt=0, lt=0.5)  # carved from train when the split is missing
    test_fraction: float = Field(0.15, gt=0, lt=0.5)

    @model_validator(mode="before")
    @classmethod
    def split_files_inherit(cls, data):
        """Fill what a split file leaves out from the main spec (its value as given, else its default)."""
        if not isinstance(data, dict):
            return data
        inherited = {key: data.get(key, cls.model_fields[key].get_default()) for key in INHERITED_BY_SPLIT_FILES}
        return data | {split: inherited | data[split] for split in ("val", "test") if isinstance(data.get(split), dict)}


class TextData(DataSection):
    builtin: TextBuiltinData | None = None
    import_from: TextImport | None = None  # when set, it is used instead of builtin


class TextModel(ModelParams):
    vocab_size: int | None = Field(None, ge=32, le=100_000)  # of the learned BPE: needed without a backbone
    max_len: auto_or_number(int, 4, 4096) = AUTO  # auto: from the training texts' subword counts (tasks/defaults.py)
    token_dropout: float = Field(0.0, ge=0, le=0.5)  # training: each subword hidden with this probability (0: off)
    backbone: BackboneParams | None = None  # fine-tune a pretrained encoder (and use its tokenizer) instead

    @model_validator(mode="after")
    def backbone_sets_the_size(self):
        """A backbone brings its own vocabulary, width, depth and heads (the size keys resolve from its config, and a
        number that differs from it stops training: Text.size_values); its head reads the class token."""
        if self.backbone is None:
            if self.vocab_size is None:
                raise ValueError("vocab_size: needed to learn the BPE vocabulary (or set backbone)")
            return self
        clashing = ["vocab_size"] * (self.vocab_size is not None) + ["pool"] * (self.pool != "cls")
        clashing += ["token_dropout"] * (self.token_dropout > 0)
        if clashing:
            raise ValueError(f"{', '.join(clashing)}: set by the backbone (leave them out with model.backbone)")
        return self


class TextPretrain(PretrainParams):
    """Masked-token prediction (attn_models/masked_lm.py) over texts, one per line of a .txt file (or of every .txt
    file under a folder), with the task's tokenizer, learned on the labelled training texts and these together."""

    objective: Literal["auto", "masked_tokens"] = AUTO


class TextParams(TaskParams):
    kind: Literal["text"]
    data: TextData
    model: TextModel
    pretrain: TextPretrain | None = None  # null (or left out): the encoder starts from random weights

    _finetune_defaults = model_validator(mode="before")(finetune_defaults)
    _absent_pretrain = without_absent("pretrain")

    @model_validator(mode="after")
    def pretrain_from_scratch(self):
        """Pretraining trains the task's own architecture; continuing a Hugging Face backbone's pretraining on the
        user's text is not built."""
        if self.pretrain is not None and self.model.backbone is not None:
            raise ValueError("pretrain: pretrains the from-scratch model; leave out model.backbone (or pretrain)")
        return self


class Text(Classifier):
    name, order, params = "text", 10, TextParams
    input_column = "text"
    model_class = "attn_models.text_classifier:TextTransformer"
    generator = "tasks.data.builtin_text:generate_text_dataset"
    importer = "tasks.data.importers:import_text"
    unlabelled_importer = "tasks.data.unlabelled:import_unlabelled_texts"
    pretrain_objective = "masked_tokens"
    serving_input = "a raw string, tokenized with the run's BPE vocabulary (tokenizer.json); longer texts are cut"
    limits = (
        "Subwords unseen in training map to [UNK]. Rollout shows which tokens fed the class token, not a faithful "
        "explanation of the decision."
    )

    def split_files(self, data_dir, split):
        return [data_dir / f"{split}.csv"]

    def learn_tokenizer(self, data_dir, section):
        if section.model.backbone is not None:  # its own vocabulary, as pretrained (tasks/backbones.py)
            from tasks import backbones

            return backbones.content_tokenizer(backbones.load_tokenizer(section.model.backbone, Path("/")))
        from tasks.data.datasets import read_text_csv, train_tokenizer

        texts = read_text_csv(data_dir / "train.csv")[0]
        if section.pretrain is None:
            return train_tokenizer(texts, section.model.vocab_size)
        from tasks.data.unlabelled import read_unlabelled_texts  # the pretrain stage's texts: their subwords too

        return train_tokenizer(texts + read_unlabelled_texts(data_dir), section.model.vocab_size, masking=True)

    def auto_values(self, section, data_dir, tokenizer):
        """Model size from the training texts' count; max_len from their subword counts (no token is added: the
        class token has a position of its own)."""
        from tasks.data.datasets import read_text_csv

        texts = read_text_csv(data_dir / "train.csv")[0]
        values, longest = self.size_values(section, len(texts))
        if is_auto(section.model.max_len):
            lengths = [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]
            values["model.max_len"] = min(token_length(lengths), longest)
        return values

    def size_values(self, section, train_examples: int) -> tuple[dict, int]:
        """(the size keys: from a backbone's config, else by the size tiers; the longest max_len the model takes)."""
        if section.model.backbone is None:
            return size_values(section.model, train_examples), 4096
        config = self.backbone_config(section)
        return self.backbone_size_values(section, config), config.max_position_embeddings - 1

    def load_splits(self, data_dir, section, seed, tokenizer):
        from tasks.data.datasets import LabelledItems, Splits, encode_texts, pad_token_batch, read_text_csv

        texts = {name: read_text_csv(data_dir / f"{name}.csv") for name in SPLITS}
        class_names = sorted(set(texts["train"][1]))

        def split(name):
            split_texts, split_labels = texts[name]
            ids = encode_texts(tokenizer, split_texts, section.model.max_len)
            return LabelledItems(ids, [class_names.index(label) for label in split_labels], lambda item: item)

        return Splits(split("train"), split("val"), split("test"), class_names, pad_token_batch)

    def model_args(self, section, splits, tokenizer):
        m = section.model
        if m.backbone is not None:
            return self.pretrained_args(section, splits) | {"max_len": m.max_len}  # where texts are cut
        return m.attention_args() | dict(
            vocab_size=tokenizer.get_vocab_size(),
            num_classes=len(splits.class_names),
            max_len=m.max_len,
            depth=m.depth,
            token_dropout=m.token_dropout,
        )

    def serving_example(self, data_dir, section):
        from tasks.data.datasets import read_text_csv

        return read_text_csv(data_dir / "test.csv")[0][0]

    def attention_figure(self, model, inputs, relevance, true, predicted, tokenizer):
        import matplotlib.pyplot as plt

        from tasks.evaluation.plots import sample_title

        tokens = [tokenizer.id_to_token(int(i)) for i in inputs[0]]
        figure, axes = plt.subplots(figsize=(max(4.0, 0.6 * len(tokens)), 1.6))
        axes.imshow(relevance[None, :], cmap="Reds", aspect="auto", vmin=0)
        axes.set_xticks(range(len(tokens)))
        axes.set_xticklabels(tokens, rotation=45, ha="right", fontsize=9)
        axes.set_yticks([])
        axes.set_title(sample_title(true, predicted), fontsize=9)
        figure.tight_layout()
        return figure

    def attention_record(self, item, tokenizer):
        return {"tokens": [tokenizer.id_to_token(int(i)) for i in item]}

    def removal_baseline(self, item, e):
        """As many unknown words."""
        import torch

        from tasks.data.datasets import UNK

        return torch.full_like(item, e.tokenizer.token_to_id(UNK))

    def spliced_example(self, index, item, label, e):
        """Test example index joined with the next test example of another class (after it when index is even,
        before it when odd), cut at the model's length: whichever class the model predicts, the evidence for it
        is the tokens of that class's text. Fits any text classification (languages, topics)."""
        import torch

        test = e.splits.test
        following = ((index + step) % len(test) for step in range(1, len(test)))
        partner = next((test[i] for i in following if test[i][1] != label), None)
        if partner is None:  # one class in the test split: nothing to tell apart
            return None
        parts = [(item, label), partner] if index % 2 == 0 else [partner, (item, label)]
        ids = torch.cat([tokens for tokens, _ in parts])[: e.checkpoint["model_args"]["max_len"]]
        first = min(len(parts[0][0]), len(ids))
        evidence = {parts[0][1]: torch.arange(len(ids)) < first, parts[1][1]: torch.arange(len(ids)) >= first}
        return ids, {cls: span.float() for cls, span in evidence.items()}

    def viewer_input(self, item, tokens, e):
        return {"tokens": [e.tokenizer.id_to_token(int(i)) for i in item]}

    def request_input(self, value, model_args, tokenizer, limits):
        from tasks.data.datasets import encode_texts
        from tasks.data.requests import text

        ids = encode_texts(tokenizer, [text(value, limits)], model_args["max_len"])[0]
        return ids.unsqueeze(0), {"tokens": [tokenizer.id_to_token(int(i)) for i in ids]}

    def input_features(self, inputs, tokenizer):
        """How many subwords (up to the model's length) and the share of them unknown to the vocabulary: text in
        another language or script, or garbage, is mostly unknown subwords."""
        from tasks.data.datasets import UNK

        return {
            "token_count": float(len(inputs)),
            "unknown_rate": float((inputs == tokenizer.token_to_id(UNK)).float().mean()),
        }

    def batch_inputs(self, inputs):
        from torch.nn.utils.rnn import pad_sequence

        ids = [row[0] for row in inputs]  # padded with the model's pad id, 0, which attention leaves out
        return pad_sequence(ids, batch_first=True, padding_value=0), [len(row) for row in ids]


SPEC = Text()
