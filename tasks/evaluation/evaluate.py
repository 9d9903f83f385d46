"""Evaluate stage: test metrics, confusion matrix, attention maps of a few test samples, and the model (mlflow.pytorch
and the pyfunc "serving" wrapper), to MLflow.

torch, scikit-learn and matplotlib are imported inside the functions that use them: a cached run never calls
them, and leaving them out of module scope saves seconds of start-up on every run (docs/benchmarks.md).
"""
import json
from pathlib import Path

from prefect import get_run_logger, task

from tasks.caching import code_fingerprint, digest
from tasks.params import Params
from tasks.tracking.mlflow_tracking import connect, log_metrics, log_pytorch_model
from tasks.training.train import TOKENIZER

LABELS = "labels.json"


def attention_figure(modality: str, model, inputs, relevance, true: str, predicted: str, tokenizer):
    """A figure of one test sample's attention (inputs: a batch of one tensor; relevance: a numpy array)."""
    from tasks.evaluation import plots

    if modality == "text":
        tokens = [tokenizer.id_to_token(int(i)) for i in inputs[0]]
        return plots.text_attention_figure(tokens, relevance, true, predicted)
    if modality == "image":
        image = (inputs[0] * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()  # undo Normalize
        return plots.image_attention_figure(image, relevance, true, predicted)
    log_mel = model.front_end(inputs)[0].numpy()
    return plots.speech_attention_figure(log_mel, relevance, true, predicted)


def log_attention_maps(client, run_id: str, modality: str, model, test_set, class_names, count: int, tokenizer):
    """Draw and log attention for `count` evenly spaced test samples; the numbers go in attention_maps.json."""
    import matplotlib.pyplot as plt
    import numpy as np

    records = []
    for number, index in enumerate(np.linspace(0, len(test_set) - 1, count).astype(int)):
        item, label = test_set[index]
        inputs = item.unsqueeze(0)
        predicted = class_names[model(inputs).argmax(-1).item()]
        relevance = model.input_relevance(inputs)[0].numpy()
        figure = attention_figure(modality, model, inputs, relevance, class_names[label], predicted, tokenizer)
        client.log_figure(run_id, figure, f"attention/sample_{number:02d}.png")
        plt.close(figure)
        records.append({"test_index": int(index), "true": class_names[label], "predicted": predicted,
                        "relevance": [round(float(v), 5) for v in relevance]})
        if tokenizer is not None:
            records[-1]["tokens"] = [tokenizer.id_to_token(int(i)) for i in item]
    client.log_dict(run_id, records, "attention/attention_maps.json")


def evaluate_cache_key(_context, inputs: dict) -> str:
    """Evaluation depends on the trained checkpoint, the test data, its eval section and the evaluation code."""
    section = inputs["params"].section(inputs["modality"])
    return "evaluate-" + digest(inputs["trained"], inputs["data_recipe"], section.eval,
                                code_fingerprint("tasks/evaluation", "tasks/tracking"))


@task(name="evaluate", cache_key_fn=evaluate_cache_key, persist_result=True)
def evaluate_model(modality: str, params: Params, root: Path, run_id: str, trained: dict, data_recipe: dict) -> dict:
    """Returns the test metrics and the id of the MLflow run that holds them with the model and figures."""
    import matplotlib.pyplot as plt
    import torch
    from mlflow.models import infer_signature
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from tokenizers import Tokenizer

    import attn_models
    from tasks.data.splits import load_splits, test_split_md5
    from tasks.evaluation import plots
    from tasks.reproducibility import resolve_device
    from tasks.serving.pyfunc_model import log_serving_model
    from tasks.training.loop import make_loader, predict
    from tasks.training.models import build_model

    logger = get_run_logger()
    checkpoint_path = Path(trained["checkpoint"])
    section = params.section(modality)
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    model = build_model(modality, checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    class_names = checkpoint["class_names"]
    tokenizer_path = checkpoint_path.parent / TOKENIZER
    tokenizer = Tokenizer.from_file(str(tokenizer_path)) if modality == "text" else None
    splits = load_splits(modality, root / "data" / modality, section, params.global_.seed, tokenizer)

    device = resolve_device(params.global_.device)
    logits, labels = predict(model.to(device), make_loader(splits.test, splits, section.eval.batch_size), device)
    model.cpu()
    predictions = logits.argmax(-1).numpy()
    metrics = {"test_accuracy": float(accuracy_score(labels, predictions)),  # plain floats in the cached result
               "test_macro_f1": float(f1_score(labels, predictions, average="macro"))}
    client, _ = connect(root, params, modality)
    log_metrics(client, run_id, metrics)
    client.set_tag(run_id, "test_data_md5", test_split_md5(modality, root / "data" / modality))
    logger.info("%s test accuracy %.4f, macro F1 %.4f on %d samples", modality, metrics["test_accuracy"],
                metrics["test_macro_f1"], len(labels))

    matrix = confusion_matrix(labels, predictions, labels=range(len(class_names)))
    figure = plots.confusion_matrix_figure(matrix, class_names, f"{modality}: test accuracy {metrics['test_accuracy']:.3f}")
    client.log_figure(run_id, figure, "confusion_matrix.png")
    plt.close(figure)
    log_attention_maps(client, run_id, modality, model, splits.test, class_names, section.eval.attention_maps, tokenizer)

    labels_file = checkpoint_path.parent / LABELS
    labels_file.write_text(json.dumps(class_names))
    example = splits.test[0][0].unsqueeze(0)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    extra_files = [str(labels_file)] + ([str(tokenizer_path)] if tokenizer else [])
    log_pytorch_model(run_id, model, input_example=example.numpy(), signature=signature,
                      code_paths=[str(Path(attn_models.__file__).parent)], extra_files=extra_files)
    log_serving_model(run_id, checkpoint_path, tokenizer_path if tokenizer else None)  # raw inputs in, for serving
    return {**metrics, "run_id": run_id}
