"""The explanation part of a kind: the function the explain stage scores its attention maps with (``explainer``,
tasks/evaluation/), and the hooks that function asks the kind for (the input with evidence removed, the viewer's
drawing of an input), declared by the kind families (tasks/kinds/classification.py, sequence.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from tasks.kinds.base import Explanation


class ExplanationPart(ABC):
    # 'module:function(spec, Explanation) -> attn_* metrics': scores the attention maps in the explain stage, or None
    explainer: ClassVar[str | None] = None
    # The two methods whose deletion AUC the explain stage prints and whose deletion gap `attnflow compare` shows.
    explain_headline: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def removal_baseline(self, item, e: Explanation):
        """An input like item (one model input, as a split holds it) that carries no evidence: what a token or source
        unit removed in the deletion and insertion curves becomes (tasks/evaluation/explain.py,
        attn_models/sequence_attribution.py)."""
