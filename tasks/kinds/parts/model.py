"""The model part of a kind: which model class it trains (in attn_models/), the arguments it is built with (saved in
the checkpoint), its name in run names, and the training loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from tasks.kinds.base import load_object


class ModelPart(ABC):
    model_class: ClassVar[str]  # 'attn_models.module:Class', built with model_args

    @property
    def model_module(self) -> str:
        """The module of the model class: loaded by name, so no import statement shows it to the stage cache
        (tasks/caching.py), which follows it from here. (The data's generator and importer are in the data recipe.)"""
        return self.model_class.partition(":")[0]

    @abstractmethod
    def model_args(self, section, splits, tokenizer) -> dict:
        """The model constructor's arguments; saved in the checkpoint to rebuild the model."""

    def build_model(self, args: dict):
        """The model from its arguments (random weights): what training starts from and a checkpoint loads into."""
        return load_object(self.model_class)(**args)

    def start_model(self, args: dict, section):
        """The model training starts from (a kind that fine-tunes a pretrained backbone loads its weights here)."""
        return self.build_model(args)

    def parameter_groups(self, model, section) -> list[dict] | None:
        """The optimizer's parameter groups (each may set its own lr), or None: every parameter at train.lr."""
        return None

    def describe_model(self, section) -> str:
        """Model class and size, for run names: e.g. VisionTransformer-d4-w64-h4."""
        m = section.model
        return f"{self.model_class.rpartition(':')[2]}-d{m.depth}-w{m.embed_dim}-h{m.num_heads}"

    @abstractmethod
    def logits_and_labels(self, model, inputs, targets):
        """The logits (N, classes) and the labels they should predict (N,) of a batch: the training loss and the
        validation accuracy are computed on these."""

    def training_loss(self, model, inputs, targets, train):
        """(loss, logits, labels) of a training batch: label-smoothed cross-entropy on ``logits_and_labels`` (train:
        the section's train params). A kind whose model learns from more than its logits (an auxiliary loss)
        overrides it; validation scores ``logits_and_labels`` alone."""
        import torch.nn.functional as F

        logits, labels = self.logits_and_labels(model, inputs, targets)
        return F.cross_entropy(logits, labels, label_smoothing=train.label_smoothing), logits, labels
