"""What the pipeline knows about a kind of task, in one object: ``Kind``, made of the parts in tasks/kinds/parts/
(data, model, evaluation, explanation, compression, serving).

The stages (tasks/stages/), the served model (tasks/serving/) and the command line ask a kind's spec for
everything that differs between kinds: its params section, built-in data and importer, the files of its test
split, tokenizer, data loading, model, loss, evaluation, attention maps and serving input. Nothing outside
tasks/kinds/ branches on a kind's name.

Two families of kinds share most of that: ``Classifier`` (tasks/kinds/classification.py: one label per input, read
from a class token, attention rollout over the input) and ``SequenceKind`` (tasks/kinds/sequence.py: an
encoder-decoder writes a token sequence; cross-attention aligns it with the input). A kind module subclasses
one of them, fills in what is its own and ends with ``SPEC = TheKind()``; the registry
(tasks/kinds/__init__.py) finds it there. A hook left out stops that line with a TypeError naming it.
"""

from __future__ import annotations

from typing import ClassVar

from tasks.kinds.parts import CompressionPart, DataPart, EvaluationPart, ExplanationPart, ModelPart, ServingPart
from tasks.schema import TaskParams


class Kind(DataPart, ModelPart, EvaluationPart, ExplanationPart, CompressionPart, ServingPart):
    """The spec of one kind: its parts' hooks filled in. Class attributes say what it is; methods do its work."""

    name: ClassVar[str]  # what a task's `kind:` says; the MLflow tag `kind`
    order: ClassVar[int]  # position in lists of kinds (docs, the params schema)
    params: ClassVar[type[TaskParams]]  # its params.yaml section, validated on load
