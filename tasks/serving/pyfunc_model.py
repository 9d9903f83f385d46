"""The served model: an mlflow.pyfunc wrapper that takes raw inputs, one row per example (``dataframe_records`` or
``inputs`` in a serving request), and answers per example as the checkpoint's kind says (tasks/kinds/):
a classifier with the label, the class probabilities and the attention over the input; a sequence model (translation,
speech recognition) with its output and the alignment of the output with the input.

Which field holds the input is the kind's ``input_column`` (text: "text", image: "image", speech: "audio", ...).
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
    """Raw inputs in; the kind's answers out (its spec's ``serve``)."""

    def load_context(self, context):
        from tokenizers import Tokenizer

        from tasks.kinds import get, load_checkpoint

        self.model, self.checkpoint = load_checkpoint(context.artifacts[CHECKPOINT])
        self.spec = get(self.checkpoint["kind"])
        tokenizer = context.artifacts.get(TOKENIZER)
        self.tokenizer = Tokenizer.from_file(tokenizer) if tokenizer else None
        self.config = context.model_config  # e.g. how a sequence model decodes: the run's eval settings
        if (self.config or {}).get("quantize"):  # a compact variant: int8 is a deterministic function of the weights
            from attn_models.compression import quantize_int8

            self.model = quantize_int8(self.model)

    def predict(self, context, model_input, params=None) -> list[dict]:
        """The answers, one per row; a request it cannot take is an MlflowException with INVALID_PARAMETER_VALUE,
        which the scoring server answers with HTTP 400 and the one-line reason (tasks/data/requests.py)."""
        import json

        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from tasks.data.requests import BadRequest, limits_from

        try:
            values = rows(model_input, self.spec.input_column, limits_from(self.config))
            answers = self.spec.serve(self.model, self.checkpoint, self.tokenizer, self.config, values, params)
            json.dumps(answers, allow_nan=False)  # raises ValueError on NaN or infinity: never sent as invalid JSON
        except BadRequest as error:
            raise MlflowException(f"bad request: {error}", error_code=INVALID_PARAMETER_VALUE) from None
        except ValueError as error:
            if "JSON compliant" not in str(error):
                raise
            raise MlflowException(
                "bad request: the model's answer to it is not finite", INVALID_PARAMETER_VALUE
            ) from None
        return answers


def rows(model_input, column: str, limits: dict) -> list:
    """The raw inputs, one per example, from whatever the scoring server or a caller hands in: a DataFrame with the
    field (``dataframe_records``; or one unnamed column: ``inputs``), a dict of lists, a string or a list; between
    1 and max_rows of them."""
    from tasks.data.requests import BadRequest

    if hasattr(model_input, "columns"):  # pandas DataFrame
        named = [name for name in model_input.columns if isinstance(name, str)]
        if column not in model_input.columns and named:
            raise BadRequest(f"the request has no {column!r} field (it has {named})")
        values = list(model_input[column] if column in model_input.columns else model_input.iloc[:, 0])
    elif isinstance(model_input, dict):  # {"text": [...]}: a list of examples per column
        if column not in model_input:
            raise BadRequest(f"the request has no {column!r} field (it has {sorted(map(str, model_input))})")
        values = model_input[column]
        values = list(values) if isinstance(values, (list, np.ndarray)) else [values]
    else:
        values = [model_input] if isinstance(model_input, str) else list(model_input)
    if not values:
        raise BadRequest("the request holds no rows")
    if len(values) > limits["max_rows"]:
        raise BadRequest(f"the request holds {len(values)} rows, over the limit of {limits['max_rows']}"
                         " (global.serving.max_rows)")  # fmt: skip
    return values


def params_schema(params: dict | None):
    """The signature's params: MLflow passes a request's "params" to predict, with these defaults, and refuses
    others."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ParamSchema([ParamSpec(name, "string", default) for name, default in params.items()]) if params else None


def log_serving_model(
    run_id: str,
    checkpoint: Path,
    tokenizer: Path | None,
    config: dict | None,
    column: str,
    example,
    answers: list[dict],
    params: dict | None = None,
    name: str = SERVING_ARTIFACT,
):
    """Log the pyfunc wrapper as the run's "serving" model (or under name: the compress stage's "compact"), with this
    project's model and data code. config: what the kind's serving reads (e.g. decoding settings; "quantize":
    the compact int8 variants); example: a raw input value of the request field column, and answers: what the model
    answered it, which give the signature: the field takes any value (a string, or an array of pixels or samples),
    the answer's fields are those of the example's; params: what a request's "params" may set (the kind's
    serving_params), with their defaults."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    import attn_models
    import tasks

    request = pd.DataFrame({column: [example]})
    outputs = infer_signature(request, answers).outputs
    signature = ModelSignature(Schema([ColSpec(AnyType(), column)]), outputs, params_schema(params))

    artifacts = {CHECKPOINT: str(checkpoint), **({TOKENIZER: str(tokenizer)} if tokenizer else {})}
    code = [str(Path(attn_models.__file__).parent), str(Path(tasks.__file__).parent)]
    with mlflow.start_run(run_id=run_id, nested=True):
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=AttentionModel(),
            artifacts=artifacts,
            code_paths=code,
            model_config=config,
            signature=signature,
            input_example=request,
            pip_requirements=pinned(SERVING_PACKAGES),
        )
