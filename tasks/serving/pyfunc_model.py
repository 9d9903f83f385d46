"""The served model: an mlflow.pyfunc wrapper that takes raw inputs and answers with the predicted label, the
class probabilities and the attention over the input (attention rollout from the class token).

Inputs, one row per example (``dataframe_records`` or ``inputs`` in a serving request):
- text:   ``{"text": "a raw string"}``                     -> tokenizer.json -> token ids
- image:  ``{"image": [[0..255, ...], ...]}`` (H x W [x C] pixels) or a base64 PNG string
          -> resized to the model's size, normalised as in training (tasks/data/datasets.py image_transforms)
- speech: ``{"audio": [samples ...]}`` (float, model sample rate) or a base64 WAV string -> the model's waveform

Translation is served by ``Translator``: ``{"text": "a source sentence"}`` in; the translation (beam search with the
run's eval settings), the source and output subwords and their cross-attention alignment out.
"""
import base64
import io
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import torch
from PIL import Image

INPUT_COLUMN = {"text": "text", "image": "image", "speech": "audio", "translation": "text"}


class AttentionClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from tokenizers import Tokenizer

        from tasks.training.models import load_checkpoint

        self.model, checkpoint = load_checkpoint(context.artifacts["checkpoint"])
        self.modality, self.args = checkpoint["modality"], checkpoint["model_args"]
        self.class_names = checkpoint["class_names"]
        self.tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"]) if self.modality == "text" else None

    def predict(self, context, model_input, params=None) -> list[dict]:
        answers = []
        for value in rows(model_input, INPUT_COLUMN[self.modality]):
            inputs, extra = self.prepare(value)
            with torch.no_grad():
                probabilities = self.model(inputs).softmax(-1)[0]
            relevance = self.model.input_relevance(inputs)[0]
            answers.append({"label": self.class_names[int(probabilities.argmax())],
                            "probabilities": {name: round(float(p), 6) for name, p in zip(self.class_names, probabilities)},
                            "attention": [round(float(v), 6) for v in relevance], **extra})
        return answers

    def prepare(self, value) -> tuple[torch.Tensor, dict]:
        """One raw input -> a batch of one for the model, plus what explains the attention (text: the tokens)."""
        from tasks.data.datasets import encode_texts, fit_length, image_pixels, image_transforms, read_clip

        if self.modality == "text":
            ids = encode_texts(self.tokenizer, [str(value)], self.args["max_len"])[0]
            return ids.unsqueeze(0), {"tokens": [self.tokenizer.id_to_token(int(i)) for i in ids]}
        if self.modality == "image":
            channels, size = self.args["in_channels"], self.args["image_size"]
            if isinstance(value, str):
                image = Image.open(io.BytesIO(base64.b64decode(value)))
            else:
                array = np.asarray(value, dtype=np.float32).clip(0, 255).astype(np.uint8)
                image = Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)
            pixels = image_pixels(image, channels, size)
            return image_transforms(channels)(image=pixels)["image"].unsqueeze(0), {}
        num_samples = int(self.args["sample_rate"] * self.args["clip_seconds"])
        if isinstance(value, str):
            clip = read_clip(io.BytesIO(base64.b64decode(value)), num_samples, self.args["sample_rate"])
        else:
            clip = fit_length(torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(-1)), num_samples)
        return clip.unsqueeze(0), {}


class Translator(mlflow.pyfunc.PythonModel):
    """Source sentences in; per sentence its translation, the source and output subwords, and the alignment
    (output subwords x source subwords, cross-attention averaged over heads and layers; rows sum to 1)."""

    def load_context(self, context):
        from tokenizers import Tokenizer

        from tasks.training.models import load_checkpoint

        self.model, _ = load_checkpoint(context.artifacts["checkpoint"])
        self.tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        self.settings = context.model_config  # the run's eval section: beam_size, length_penalty, ...

    def predict(self, context, model_input, params=None) -> list[dict]:
        from tasks.evaluation.translation import alignment, translate_sentences

        sentences = [str(value) for value in rows(model_input, INPUT_COLUMN["translation"])]
        sources, outputs, translations = translate_sentences(self.model, self.tokenizer, sentences, self.settings,
                                                             torch.device("cpu"))
        return [{"translation": text, **alignment(self.model, self.tokenizer, source, output)}
                for source, output, text in zip(sources, outputs, translations)]


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


def log_serving_model(run_id: str, checkpoint: Path, tokenizer: Path | None, decode_settings: dict | None = None):
    """Log the pyfunc wrapper as the run's "serving" model, with this project's model and data code.
    decode_settings (translation models only) say how the Translator decodes."""
    import attn_models
    import tasks

    artifacts = {"checkpoint": str(checkpoint), **({"tokenizer": str(tokenizer)} if tokenizer else {})}
    code = [str(Path(attn_models.__file__).parent), str(Path(tasks.__file__).parent)]
    with mlflow.start_run(run_id=run_id, nested=True):
        python_model = AttentionClassifier() if decode_settings is None else Translator()
        return mlflow.pyfunc.log_model(name="serving", python_model=python_model, artifacts=artifacts,
                                       code_paths=code, model_config=decode_settings)
