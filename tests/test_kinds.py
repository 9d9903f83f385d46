"""Every task kind is made of the declared parts (tasks/kinds/parts/): it fills in each part's hooks and sets each
class attribute the parts ask for, so that a missing one is found here, not when its stage first runs."""

import subprocess
import sys

import pytest

from tasks.kinds import KINDS, REGISTRY
from tasks.kinds.classification import Classifier
from tasks.kinds.kind import Kind
from tasks.kinds.parts import PARTS, required_attributes
from tasks.kinds.sequence import SequenceKind
from tests.conftest import REPO


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_fills_in_every_part(name):
    spec = REGISTRY[name]
    assert all(isinstance(spec, part) for part in PARTS)
    assert not type(spec).__abstractmethods__  # every declared hook is implemented
    assert required_attributes(type(spec)) == []  # and every declared attribute set
    assert spec.name == name and spec.params.model_fields["kind"].annotation.__args__ == (name,)


def test_the_parts_declare_the_hooks_a_kind_must_fill_in():
    """What the parts and the families declare is what a new kind is asked for: leaving one out is a TypeError that
    names it, at the kind module's ``SPEC = ...`` line."""
    declared = {part.__name__: sorted(part.__abstractmethods__) for part in PARTS}
    assert declared["DataPart"] == ["load_splits", "split_files"]
    assert declared["ServingPart"] == ["serve", "serving_example"]
    assert {"name", "order", "params", "metrics", "model_class", "input_column"} <= set(required_attributes(Kind))

    class HalfClassifier(Classifier):  # a classifier kind with its data part and nothing else
        def split_files(self, data_dir, split):
            return []

        def load_splits(self, data_dir, section, seed, tokenizer):
            return None

    with pytest.raises(TypeError, match="abstract methods.*request_input") as error:
        HalfClassifier()
    assert "split_files" not in str(error.value) and "model_args" in str(error.value)
    assert {"score", "split_texts", "collate_sources", "request_source"} <= SequenceKind.__abstractmethods__


def test_the_params_schema_loads_without_torch():
    """Every command validates params.yaml first; that must not cost the seconds torch takes to import."""
    check = (
        "import sys; from tasks.params import load_params; load_params(sys.argv[1]); "
        "heavy = {'torch', 'torchaudio', 'mlflow', 'prefect'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", check, str(REPO / "params.yaml")], check=True, cwd=REPO)
