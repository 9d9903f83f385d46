"""The compression part of a kind: what the compress stage (tasks/stages/compress.py) scores each smaller variant
of the trained model on, and what one latency measurement runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from tasks.kinds.base import Evaluation


class CompressionPart(ABC):
    # The validation figure each compressed variant is scored on and the compact variant chosen by (a cheaper one than
    # evaluation's primary metric where that is slow), in the direction of higher_is_better; one of val_metrics.
    compress_metric: ClassVar[str]

    @abstractmethod
    def compress_score(self, evaluation: Evaluation) -> float:
        """The compress_metric of evaluation.model (a variant of the trained model, on the CPU) on the validation
        split, as the evaluate stage computes it; nothing is logged."""

    @abstractmethod
    def timed_call(self, model, inputs, section) -> None:
        """What one latency measurement runs on a batch of test inputs (as a test loader gives them): the work of
        answering a request for them."""
