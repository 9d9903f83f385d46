"""Evaluate stage: test metrics, attention maps of a few test samples, and the model (mlflow.pytorch and the pyfunc
"serving" wrapper), to MLflow. Classifiers: accuracy, macro F1, confusion matrix, attention rollout. Translation:
BLEU and chrF of beam-search (and greedy) output, sample translations, cross-attention alignment maps.

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


def evaluate_classifier(client, run_id: str, modality: str, model, splits, section, tokenizer, device) -> dict:
    """Test accuracy and macro F1, the confusion matrix and attention rollout maps."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from tasks.evaluation import plots
    from tasks.training.loop import make_loader, predict

    logits, labels = predict(model.to(device), make_loader(splits.test, splits, section.eval.batch_size), device)
    model.cpu()
    predictions = logits.argmax(-1).numpy()
    metrics = {"test_accuracy": float(accuracy_score(labels, predictions)),  # plain floats in the cached result
               "test_macro_f1": float(f1_score(labels, predictions, average="macro"))}
    get_run_logger().info("%s test accuracy %.4f, macro F1 %.4f on %d samples", modality, metrics["test_accuracy"],
                          metrics["test_macro_f1"], len(labels))
    class_names = splits.class_names
    matrix = confusion_matrix(labels, predictions, labels=range(len(class_names)))
    figure = plots.confusion_matrix_figure(matrix, class_names, f"{modality}: test accuracy {metrics['test_accuracy']:.3f}")
    client.log_figure(run_id, figure, "confusion_matrix.png")
    plt.close(figure)
    log_attention_maps(client, run_id, modality, model, splits.test, class_names, section.eval.attention_maps, tokenizer)
    return metrics


def evaluate_translator(client, run_id: str, data_dir: Path, model, splits, section, tokenizer, device) -> dict:
    """Beam-search and greedy translations of the test split, scored with sacrebleu against the raw references;
    sample translations and cross-attention alignment maps of `eval.attention_maps` test sentences."""
    import matplotlib.pyplot as plt
    import numpy as np

    from tasks.data.datasets import read_parallel, translation_languages
    from tasks.evaluation import plots, translation

    sources, references = read_parallel(data_dir, "test", translation_languages(section))
    test_ids = [splits.test[i][0] for i in range(len(splits.test))]
    settings = translation.decode_settings(section.eval)
    model.to(device)
    beam = translation.translate_ids(model, test_ids, device=device, **settings)
    greedy = translation.translate_ids(model, test_ids, device=device, **settings | {"beam_size": 1})
    model.cpu()
    hypotheses = [tokenizer.decode(ids) for ids in beam]
    scores = translation.corpus_scores(hypotheses, references)
    metrics = {"test_bleu": scores["bleu"], "test_chrf": scores["chrf"],
               "test_bleu_greedy": translation.corpus_scores([tokenizer.decode(ids) for ids in greedy], references)["bleu"]}
    get_run_logger().info("translation test BLEU %.2f (greedy %.2f), chrF %.2f on %d sentences (beam %d)",
                          metrics["test_bleu"], metrics["test_bleu_greedy"], metrics["test_chrf"], len(references),
                          section.eval.beam_size)
    client.log_text(run_id, "".join(line + "\n" for line in hypotheses), "translations/test_hypotheses.txt")
    client.log_dict(run_id, [{"source": sources[i], "reference": references[i], "translation": hypotheses[i]}
                             for i in range(min(20, len(sources)))], "translations/samples.json")
    records = []
    for number, index in enumerate(np.linspace(0, len(test_ids) - 1, section.eval.attention_maps).astype(int)):
        aligned = translation.alignment(model, tokenizer, test_ids[index], beam[index])
        figure = plots.alignment_figure(aligned["source_tokens"], aligned["output_tokens"],
                                        np.array(aligned["alignment"]), sources[index], hypotheses[index],
                                        references[index])
        client.log_figure(run_id, figure, f"attention/sample_{number:02d}.png")
        plt.close(figure)
        records.append({"test_index": int(index), "source": sources[index], "reference": references[index],
                        "translation": hypotheses[index], **aligned})
    client.log_dict(run_id, records, "attention/attention_maps.json")
    return metrics


@task(name="evaluate", cache_key_fn=evaluate_cache_key, persist_result=True)
def evaluate_model(modality: str, params: Params, root: Path, run_id: str, trained: dict, data_recipe: dict) -> dict:
    """Returns the test metrics and the id of the MLflow run that holds them with the model and figures."""
    import torch
    from mlflow.models import infer_signature
    from tokenizers import Tokenizer

    import attn_models
    from tasks.data.splits import load_splits, test_split_md5
    from tasks.evaluation.translation import decode_settings
    from tasks.reproducibility import resolve_device
    from tasks.serving.pyfunc_model import log_serving_model
    from tasks.training.models import load_checkpoint

    checkpoint_path = Path(trained["checkpoint"])
    section = params.section(modality)
    model, checkpoint = load_checkpoint(checkpoint_path)
    tokenizer_path = checkpoint_path.parent / TOKENIZER
    tokenizer = Tokenizer.from_file(str(tokenizer_path)) if tokenizer_path.exists() else None
    data_dir = root / "data" / modality
    splits = load_splits(modality, data_dir, section, params.global_.seed, tokenizer)
    device = resolve_device(params.global_.device)
    client, _ = connect(root, params, modality)
    if splits.task == "translation":
        metrics = evaluate_translator(client, run_id, data_dir, model, splits, section, tokenizer, device)
    else:
        metrics = evaluate_classifier(client, run_id, modality, model, splits, section, tokenizer, device)
    log_metrics(client, run_id, metrics)
    client.set_tag(run_id, "test_data_md5", test_split_md5(modality, data_dir))

    labels_file = checkpoint_path.parent / LABELS
    labels_file.write_text(json.dumps(checkpoint["class_names"]))
    extra_files = [str(labels_file)] + ([str(tokenizer_path)] if tokenizer else [])
    if splits.task == "translation":  # two inputs (source, target so far): no single-tensor signature; the "serving"
        example, signature = None, None  # model is the one that takes raw sentences
    else:
        example = splits.test[0][0].unsqueeze(0)
        with torch.no_grad():
            signature = infer_signature(example.numpy(), model(example).numpy())
        example = example.numpy()
    log_pytorch_model(run_id, model, input_example=example, signature=signature,
                      code_paths=[str(Path(attn_models.__file__).parent)], extra_files=extra_files)
    log_serving_model(run_id, checkpoint_path, tokenizer_path if tokenizer else None,
                      decode_settings(section.eval) if splits.task == "translation" else None)
    return {**metrics, "run_id": run_id}
