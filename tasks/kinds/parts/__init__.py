"""The parts a task kind is made of, one module each, by concern:

- data.py: where the data comes from (generate, import) and how a prepared split is loaded;
- model.py: the model a kind trains and its loss;
- evaluation.py: the metrics, their direction and the evaluate stage's figures;
- explanation.py: how the explain stage reads and scores the attention maps;
- compression.py: what the compress stage scores and times;
- serving.py: what a request holds and how it is answered.

Each part is an abstract class: the hooks a kind must fill in are abstract methods, so a kind that lacks one cannot
be made (the registry fails at import, naming the hook), and the class attributes it must set are listed by
``required_attributes``. A kind (tasks/kinds/kind.py) is all six; tests/test_kinds.py checks every kind has them.
"""

from typing import ClassVar, get_origin, get_type_hints

from tasks.kinds.parts.compression import CompressionPart
from tasks.kinds.parts.data import DataPart
from tasks.kinds.parts.evaluation import EvaluationPart
from tasks.kinds.parts.explanation import ExplanationPart
from tasks.kinds.parts.model import ModelPart
from tasks.kinds.parts.serving import ServingPart

PARTS = (DataPart, ModelPart, EvaluationPart, ExplanationPart, CompressionPart, ServingPart)


def required_attributes(cls: type) -> list[str]:
    """The class attributes that cls and its bases declare (``name: ClassVar[...]``) without a value: each kind sets
    them."""
    declared = []
    for base in cls.__mro__:
        hints = get_type_hints(base) if vars(base).get("__annotations__") else {}
        declared += [name for name in vars(base).get("__annotations__", {})
                     if get_origin(hints.get(name)) is ClassVar and name not in declared]  # fmt: skip
    return [name for name in declared if not any(name in vars(base) for base in cls.__mro__)]
