"""The serving part of a kind: what a request's raw input is (``input_column``), how the served model (tasks/serving/)
answers it, the settings and example it is logged with, and what the model card says about it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar


class ServingPart(ABC):
    input_column: ClassVar[str]  # the field of a serving request that holds the raw input
    serving_params: ClassVar[dict | None] = None  # what a request's "params" may set, with the defaults
    # For model cards (tasks/tracking/model_card.py): what a request holds, how attention is read, what to mind.
    serving_input: ClassVar[str]
    attention_method: ClassVar[str]
    limits: ClassVar[str]

    def serving_config(self, section) -> dict | None:
        """Settings the served model reads (model_config), e.g. how to decode."""
        return None

    @abstractmethod
    def serving_example(self, data_dir: Path, section):
        """A raw input as a client would send it (the value of ``input_column``), from the test split: the served
        model's input example."""

    @abstractmethod
    def serve(self, model, checkpoint: dict, tokenizer, config: dict | None, values: list,
              params: dict | None = None) -> list[dict]:  # fmt: skip
        """Answers, one per raw input value of a request (params: the request's, within ``serving_params``)."""
