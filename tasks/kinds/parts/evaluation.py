"""The evaluation part of a kind: its test metrics and their direction, the validation figures models are chosen
by (``val_metrics``), and what the evaluate stage computes and logs (``evaluate``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from tasks.kinds.base import Evaluation, val_name


class EvaluationPart(ABC):
    metrics: ClassVar[tuple[str, ...]]  # test metrics, reported; the first is the primary metric
    higher_is_better: ClassVar[bool] = True  # of the primary metric: False for error rates

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def val_metric(self) -> str:
        """The primary metric on the validation split (eval_val_accuracy, eval_val_bleu, eval_val_wer): what decides
        promotion and ranks a sweep, so that the test split stays an unbiased report."""
        return val_name(self.primary_metric)

    @property
    def val_metrics(self) -> tuple[str, ...]:
        """What the evaluate stage logs on the validation split: the primary metric's figure and the compress
        stage's metric (the same one for classifiers)."""
        return tuple(dict.fromkeys((self.val_metric, self.compress_metric)))

    def rank_key(self, score: float | None) -> float:
        """Sorting key that puts the best score first (missing scores last)."""
        if score is None:
            return float("inf")
        return -score if self.higher_is_better else score

    @abstractmethod
    def evaluate(self, evaluation: Evaluation) -> dict[str, float]:
        """Compute the test metrics (keys: ``metrics``) and the validation figures (keys: ``val_metrics``), and log
        this kind's figures and files to the run."""

    def model_example(self, model, splits):
        """(input example, signature) for the logged pytorch model, or (None, None) when it has no single input."""
        return None, None
