"""The served model: an mlflow.pyfunc wrapper that takes raw inputs, one row per example (``dataframe_records`` or
``inputs`` in a serving request), and answers per example as the checkpoint's modality says (tasks/modalities/):
a classifier with the label, the class probabilities and the attention over the input; a sequence model (translation,
speech recognition) with its output and the alignment of the output with the input.

Which field holds the input is the modality's ``input_column`` (text: "text", image: "image", speech: "audio", ...).
"""

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np

from tasks.names import CHECKPOINT, SERVING_ARTIFACT, TOKENIZER

# What a logged model needs installed, pinned to this environment's versions: the pytorch model (attn_models, pickled
# with its code) and the served wrapper (tasks/ and attn_models/ as code_paths). Given explicitly, because MLflow's
# inference spawns subprocesses for seconds per model and gets it wrong (it lists this project, which no index has,
# and misses torch for the wrapper). tests/test_serving.py checks that serving imports nothing else.
MODEL_PACKAGES = ("mlflow", "cloudpickle", "numpy", "torch", "torchaudio")
SERVING_PACKAGES = (
    *MODEL_PACKAGES,
    "pandas",
    "tokenizers",
    "pillow",
    "soundfile",
    "albumentations",
    "pydantic",
    "tqdm",
)


def pinned(packages: tuple[str, ...]) -> list[str]:
    """['torch==2.11.0', ...]: the installed version of each distribution."""
    return [f"{name}=={version(name)}" for name in packages]


class AttentionModel(mlflow.pyfunc.PythonModel):
    """Raw inputs in; the modality's answers out (its spec's ``serve``)."""

    def load_context(self, context):
        from tokenizers import Tokenizer

        from tasks.modalities import get, load_checkpoint

        self.model, self.checkpoint = load_checkpoint(context.artifacts[CHECKPOINT])
        self.spec = get(self.checkpoint["modality"])
        tokenizer = context.artifacts.get(TOKENIZER)
        self.tokenizer = Tokenizer.from_file(tokenizer) if tokenizer else None
        self.config = context.model_config  # e.g. how a sequence model decodes: the run's eval settings

    def predict(self, context, model_input, params=None) -> list[dict]:
        values = rows(model_input, self.spec.input_column)
        return self.spec.serve(self.model, self.checkpoint, self.tokenizer, self.config, values)


def rows(model_input, column: str) -> list:
    """The raw inputs, one per example, from whatever the scoring server or a caller hands in."""
    if hasattr(model_input, "columns"):  # pandas DataFrame
        return list(model_input[column] if column in model_input.columns else model_input.iloc[:, 0])
    if isinstance(model_input, dict):  # {"text": [...]}: a list of examples per column
        values = model_input.get(column, next(iter(model_input.values())))
        return list(values) if isinstance(values, (list, np.ndarray)) else [values]
    if isinstance(model_input, str):
        return [model_input]
    return list(model_input)


def log_serving_model(
    run_id: str,
    checkpoint: Path,
    tokenizer: Path | None,
    config: dict | None,
    column: str,
    example,
    answers: list[dict],
):
    """Log the pyfunc wrapper as the run's "serving" model, with this project's model and data code. config: what
    the modality's serving reads (e.g. decoding settings); example: a raw input value of the request field column,
    and answers: what the model answered it, which give the signature: the field takes any value (a string, or an
    array of pixels or samples), the answer's fields are those of the example's."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    import attn_models
    import tasks

    request = pd.DataFrame({column: [example]})
    signature = ModelSignature(Schema([ColSpec(AnyType(), column)]), infer_signature(request, answers).outputs)

    artifacts = {CHECKPOINT: str(checkpoint), **({TOKENIZER: str(tokenizer)} if tokenizer else {})}
    code = [str(Path(attn_models.__file__).parent), str(Path(tasks.__file__).parent)]
    with mlflow.start_run(run_id=run_id, nested=True):
        return mlflow.pyfunc.log_model(
            name=SERVING_ARTIFACT,
            python_model=AttentionModel(),
            artifacts=artifacts,
            code_paths=code,
            model_config=config,
            signature=signature,
            input_example=request,
            pip_requirements=pinned(SERVING_PACKAGES),
        )
