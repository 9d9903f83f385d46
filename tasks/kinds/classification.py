"""The classifier kinds: one label per input, predicted from a class token; the attention map is attention
rollout from the class token over the input tokens (text subwords, image patches, spectrogram frames).

Evaluation: test accuracy and macro F1, a confusion matrix, and the rollout of ``eval.attention_maps`` test samples
drawn by the kind (``attention_figure``), and the reference of the served model's monitor (``log_reference``);
accuracy on the validation split too (``eval_val_accuracy``), which models are chosen by.
Serving: per input, the label, the class probabilities, the rollout and a summary of the input (``input_features``).
"""

from abc import abstractmethod
from pathlib import Path

from tasks.defaults import is_auto
from tasks.kinds.base import Evaluation, Explanation, load_object, val_name
from tasks.kinds.kind import Kind
from tasks.names import MONITOR_REFERENCE


class Classifier(Kind):
    metrics = ("test_accuracy", "test_macro_f1")
    attention_method = (
        "attention rollout (Abnar & Zuidema, 2020) from the class token over the input tokens: heads averaged, the "
        "residual path mixed in, multiplied through the layers; rows sum to 1"
    )

    def logits_and_labels(self, model, inputs, targets):
        return model(inputs), targets

    # ---- a pretrained backbone (model.backbone: tasks/backbones.py, attn_models/pretrained.py) ------------
    pretrained_class = "attn_models.pretrained:PretrainedClassifier"  # the fine-tuned model: built from model_args
    input_args: tuple[str, ...] = ()  # model_args that say how inputs are decoded (not the model's): image's processor

    def check_backbone(self, section, root: Path, task: str) -> None:
        """Before a run opens (tasks/backbones.py check_sources, once the backbone's config has loaded): what the kind
        reads inputs with loads and fits it, else UserError naming the params key. Here the text kind's: the
        backbone's tokenizer (as pretrained_args reads it); the image and speech kinds check their processor and
        feature extractor."""
        from tasks import backbones

        backbones.content_tokenizer(backbones.load_tokenizer(section.model.backbone, root, task), task)

    def backbone_size_values(self, section, config) -> dict:
        """The size keys from the backbone's config (width, depth, heads): `auto` ones resolved to its values, a
        number that differs stops training, naming the key."""
        size = {"embed_dim": config.hidden_size, "depth": config.num_hidden_layers,
                "num_heads": config.num_attention_heads}  # fmt: skip
        for key, value in size.items():
            given = getattr(section.model, key)
            if not is_auto(given) and given != value:
                raise ValueError(f"model.{key}: {given}, but the backbone's is {value} (leave it out or auto)")
        return {f"model.{key}": value for key, value in size.items() if is_auto(getattr(section.model, key))}

    def pretrained_args(self, section, splits) -> dict:
        """The fine-tuned model's arguments: the backbone's config (the checkpoint rebuilds it without the source),
        the classes, the backbone's class token and padding, the head's dropout."""
        from attn_models.pretrained import backbone_config
        from tasks import backbones

        tokenizer = backbones.load_tokenizer(section.model.backbone, Path("/"))
        config = self.backbone_config(section)
        return {"backbone_config": backbone_config(config), "num_classes": len(splits.class_names),
                "class_token_id": backbones.class_token_id(tokenizer), "pad_id": backbones.PAD_ID,
                "dropout": section.model.dropout}  # fmt: skip

    def backbone_config(self, section):
        from tasks.backbones import load_model_config

        return load_model_config(section.model.backbone, Path("/"))

    def describe_model(self, section) -> str:
        """With a backbone, the fine-tuned model and the backbone's name: PretrainedClassifier-all-MiniLM-L6-v2."""
        backbone = getattr(section.model, "backbone", None)
        if backbone is None:
            return super().describe_model(section)
        return f"PretrainedClassifier-{Path(backbone.source).name}"

    def build_model(self, args: dict):
        """The kind's model, or with a backbone's config in args the fine-tuned one (rebuilt from the config alone)."""
        if "backbone_config" not in args:
            return super().build_model(args)
        return load_object(self.pretrained_class)(**self.constructor_args(args))

    def constructor_args(self, args: dict) -> dict:
        """model_args without the input_args: what the model class is built with."""
        return {name: value for name, value in args.items() if name not in self.input_args}

    def start_model(self, args: dict, section):
        """The model training starts from: with a backbone, its pretrained weights under a new head."""
        backbone = getattr(section.model, "backbone", None)
        if backbone is None:
            return self.build_model(args)
        from tasks import backbones

        pretrained = backbones.load_model(backbone, Path("/"))
        head = self.constructor_args(args)
        del head["backbone_config"]  # the pretrained model's own
        return load_object(self.pretrained_class).from_backbone(pretrained, **head)

    def parameter_groups(self, model, section):
        """With a backbone: the embeddings and first freeze_layers layers frozen, the others at the backbone's rate
        (times layer_decay per layer below the top with layer-wise decay), the new head at train.lr."""
        backbone = getattr(section.model, "backbone", None)
        if backbone is None:
            return super().parameter_groups(model, section)
        from tasks.training.finetune import layer_groups

        return layer_groups(model.layer_groups(), backbone, section.train.lr)

    # ---- what each classifier kind draws and decodes --------------------------------------
    @abstractmethod
    def attention_figure(self, model, inputs, relevance, true: str, predicted: str, tokenizer):
        """A matplotlib figure of one test sample (inputs: a batch of one) and its rollout (numpy, one per token)."""

    def attention_record(self, item, tokenizer) -> dict:
        """What attention_maps.json records beside the relevance, e.g. the tokens of a text."""
        return {}

    @abstractmethod
    def request_input(self, value, model_args: dict, tokenizer, limits: dict) -> tuple:
        """One raw request value -> (a batch of one for the model, what else the answer carries); a value it cannot
        take raises tasks.data.requests.BadRequest (limits: the served model's, global.serving)."""

    @abstractmethod
    def input_features(self, inputs, tokenizer) -> dict[str, float]:
        """Summary features of one decoded input (what request_input returns, unbatched: the same as a test split
        item) that tell whether served inputs still look like the test split (text: its length and share of unknown
        subwords; image: its brightness and contrast; audio: its level and silence), and carry none of the input
        itself: they go to the request log and the monitor compares them with the run's reference."""

    def reference_request(self, split, index: int, tokenizer) -> tuple:
        """Test example index of split as a decoded request (a batch of one, what else the answer carries), for the
        reference the monitor compares served answers with; a kind adds what its request_input records of the
        raw value (a clip's duration before it is padded or cut)."""
        return split[index][0].unsqueeze(0), {}

    def batch_inputs(self, inputs: list) -> tuple:
        """The rows' inputs (each a batch of one) as one batch, and each row's length where rows of different lengths
        were padded (None: all have one shape, as images and fixed-length clips do)."""
        import torch

        return torch.cat(inputs), None

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, evaluation: Evaluation) -> dict[str, float]:
        """Test accuracy and macro F1, validation accuracy, the confusion matrix and attention rollout maps."""
        import matplotlib.pyplot as plt
        from sklearn.metrics import confusion_matrix

        from tasks.evaluation import plots

        e = evaluation
        metrics, labels, predictions = self.test_predictions(e)
        class_names = e.splits.class_names
        matrix = confusion_matrix(labels, predictions, labels=range(len(class_names)))
        figure = plots.confusion_matrix_figure(
            matrix, class_names, f"{self.name}: test accuracy {metrics['test_accuracy']:.3f}"
        )
        e.client.log_figure(e.run_id, figure, "confusion_matrix.png")
        plt.close(figure)
        self.log_attention_maps(e)
        self.log_reference(e)
        return metrics | {self.val_metric: self.val_accuracy(e)}

    def log_reference(self, e: Evaluation) -> None:
        """What the served model's answers will be compared with (tasks/evaluation/monitoring.py): the features of its
        answers to the whole test split, answered as served (rollout, one pass per eval.batch_size examples)."""
        import torch

        from tasks.evaluation.monitoring import reference

        test, size, answers = e.splits.test, e.section.eval.batch_size, []
        with torch.no_grad():
            for start in range(0, len(test), size):
                indices = range(start, min(start + size, len(test)))
                requests = [self.reference_request(test, index, e.tokenizer) for index in indices]
                answers += self.answer(e.model, e.splits.class_names, e.tokenizer, requests)
        e.client.log_dict(e.run_id, reference(answers, e.splits.class_names), MONITOR_REFERENCE)

    def test_predictions(self, e: Evaluation) -> tuple[dict[str, float], object, object]:
        """(test accuracy and macro F1, the labels, the predictions) of e.model on the test split, on e.device."""
        from sklearn.metrics import accuracy_score, f1_score

        labels, predictions = self.predictions(e, e.splits.test)
        metrics = {
            "test_accuracy": float(accuracy_score(labels, predictions)),  # plain floats in the cached result
            "test_macro_f1": float(f1_score(labels, predictions, average="macro")),
        }
        return metrics, labels, predictions

    def val_accuracy(self, e: Evaluation) -> float:
        """Accuracy of e.model on the validation split, computed as test_accuracy is (eval batch size, e.device)."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(*self.predictions(e, e.splits.val)))

    def predictions(self, e: Evaluation, split) -> tuple:
        """(the labels, the predicted labels) of e.model on one split, on e.device."""
        from tasks.training.loop import make_loader, predict

        loader = make_loader(split, e.splits, e.section.eval.batch_size)
        logits, labels = predict(e.model.to(e.device), loader, e.device)
        e.model.cpu()
        return labels, logits.argmax(-1).numpy()

    # ---- compression --------------------------------------------------------------------------
    compress_metric = val_name("test_accuracy")  # eval_val_accuracy: the choice of `compact` never sees the test split

    def compress_score(self, evaluation: Evaluation) -> float:
        return self.val_accuracy(evaluation)  # as the evaluate stage computes it

    def timed_call(self, model, inputs, section) -> None:
        model(inputs)

    def log_attention_maps(self, e: Evaluation) -> None:
        """Draw and log the rollout of eval.attention_maps evenly spaced test samples; the numbers go in
        attention/attention_maps.json."""
        import matplotlib.pyplot as plt
        import numpy as np

        records, class_names = [], e.splits.class_names
        count = e.section.eval.attention_maps
        for number, index in enumerate(np.linspace(0, len(e.splits.test) - 1, count).astype(int)):
            item, label = e.splits.test[index]
            inputs = item.unsqueeze(0)
            logits, relevance = e.model.predict_with_relevance(inputs)
            predicted, relevance = class_names[logits.argmax(-1).item()], relevance[0].numpy()
            figure = self.attention_figure(e.model, inputs, relevance, class_names[label], predicted, e.tokenizer)
            e.client.log_figure(e.run_id, figure, f"attention/sample_{number:02d}.png")
            plt.close(figure)
            records.append(
                {
                    "test_index": int(index),
                    "true": class_names[label],
                    "predicted": predicted,
                    "relevance": [round(float(v), 5) for v in relevance],
                    **self.attention_record(item, e.tokenizer),
                }
            )
        e.client.log_dict(e.run_id, records, "attention/attention_maps.json")

    # ---- explanation --------------------------------------------------------------------------
    explainer = "tasks.evaluation.explain:explain_classifier"  # by name: evaluate's code does not include it
    explain_headline = ("gradient_attention", "rollout")
    viewer_kind: str = "tokens"  # how the HTML viewer draws an input: tokens, image or spectrogram

    def localization_target(self, index: int, item, tokens: int, e: Explanation):
        """The share of each of the tokens of test example index (item) that is evidence for the label (T,), known by
        construction (the ink of a built-in digit, the span of a built-in spoken word), or None when not known."""
        return None

    def spliced_example(self, index: int, item, label: int, e: Explanation):
        """For a classifier whose evidence is spread over the whole input (every word of a sentence): an input made
        of test example index and another of a different class, with the span of each, (input, {class: (T,) share
        of each token that is evidence for it}); the maps over it are scored for localization in place of
        ``localization_target``. None: no such check."""
        return None

    @abstractmethod
    def viewer_input(self, item, tokens: int, e: Explanation) -> dict:
        """What the viewer shows of one test input of that many tokens: {"tokens": [...]} or {"picture": base64 PNG,
        "grid": [rows, cols]} (the token grid laid over the picture)."""

    def model_example(self, model, splits):
        import torch
        from mlflow.models import infer_signature

        example = splits.test[0][0].unsqueeze(0)
        with torch.no_grad():
            signature = infer_signature(example.numpy(), model(example).numpy())
        return example.numpy(), signature

    # ---- serving ------------------------------------------------------------------------------
    serving_params = {"attention": "rollout"}  # a request's "params": which map answers "attention"

    def serve(self, model, checkpoint: dict, tokenizer, config, values: list, params: dict | None = None) -> list[dict]:
        """The rows' answers, from one forward pass over all of them (at most global.serving.max_rows). The
        attention is the rollout of that pass, or the map of another method (attn_models/attribution.py) when the
        request's params name one: a gradient-weighted map costs a forward and a backward pass per row."""
        from attn_models.attribution import METHODS
        from tasks.data.requests import BadRequest, each_row, limits_from

        method = (params or {}).get("attention") or "rollout"
        if method not in METHODS:
            raise BadRequest(f"params.attention must be one of {', '.join(METHODS)}; got {method!r}")
        if method != "rollout" and (config or {}).get("quantize"):  # the other maps need the gradients of one pass
            raise BadRequest(f"params.attention: this model is quantized to int8 (no gradients): only rollout, not "
                             f"{method!r}")  # fmt: skip
        limits = limits_from(config)
        requests = each_row(
            values, lambda value: self.request_input(value, checkpoint["model_args"], tokenizer, limits)
        )
        return self.answer(model, checkpoint["class_names"], tokenizer, requests, method)

    def answer(self, model, class_names: list[str], tokenizer, requests: list[tuple], method: str = "rollout"):
        """The answers to decoded requests ((a batch of one, what else the answer carries) each, as request_input
        gives them), from one forward pass: the label, the class probabilities, the attention map and the input's
        summary (``input_features``: what the request log keeps, in place of the input)."""
        from attn_models.attribution import class_token_maps

        batch, lengths = self.batch_inputs([inputs for inputs, _ in requests])
        logits, relevance = model.predict_with_relevance(batch)
        answers = []
        for row, (probabilities, (inputs, extra)) in enumerate(zip(logits.softmax(-1), requests)):
            if method == "rollout":
                attention = relevance[row, : lengths[row]] if lengths else relevance[row]  # padding has none
            else:
                attention = class_token_maps(model, inputs)[method]
            summary = self.input_features(inputs[0], tokenizer) | extra.get("input_summary", {})
            answers.append(
                {
                    "label": class_names[int(probabilities.argmax())],
                    "probabilities": {name: round(float(p), 6) for name, p in zip(class_names, probabilities)},
                    "attention": [round(float(v), 6) for v in attention],
                    "attention_method": method,
                    **extra,
                    "input_summary": {name: round(float(value), 6) for name, value in summary.items()},
                }
            )
        return answers
