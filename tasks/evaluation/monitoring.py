"""What the monitor compares (tasks/monitoring/, flows/monitor.py), computed one way for the test split when a model is
evaluated (its reference, logged to its run) and for each answer the served model gives (the request log): summary
features of the input (the kind's ``input_features``, which a served answer carries as ``input_summary``), the
answer's confidence and the entropy of its attention map, and the predicted label. Never the raw input.

Here, apart from the monitor's own package, because the classifiers' evaluation builds the reference with it and
must not import the monitor (which reads params and MLflow).
"""

import math

OUTPUT_FEATURES = ("confidence", "attention_entropy")


def confidence(probabilities: dict[str, float]) -> float:
    """The probability of the predicted class: a model unsure of its inputs spreads its probabilities."""
    return max(probabilities.values())


def attention_entropy(attention: list[float]) -> float:
    """The entropy of an attention map divided by the log of its length: 0 when it rests on one token, 1 when it is
    spread evenly; comparable across inputs of different lengths (texts). A map of one token has 0."""
    total = sum(attention)
    if len(attention) < 2 or total <= 0:
        return 0.0
    entropy = -sum(w / total * math.log(w / total) for w in attention if w > 0)
    return min(1.0, max(0.0, entropy / math.log(len(attention))))


def answer_features(answer: dict) -> dict[str, float]:
    """The features of one classifier answer: its input summary, confidence and attention entropy."""
    return {
        **answer["input_summary"],
        "confidence": round(confidence(answer["probabilities"]), 6),
        "attention_entropy": round(attention_entropy(answer["attention"]), 6),
    }


def reference(answers: list[dict], class_names: list[str]) -> dict:
    """The reference a served model's answers are compared with (monitoring/reference.json of its run): every
    feature's values over the test split (PSI takes its bins from their quantiles, KS takes them whole) and how
    often each class was predicted."""
    rows = [answer_features(answer) for answer in answers]
    names = sorted({name for row in rows for name in row})
    predictions = {name: 0 for name in class_names}
    for answer in answers:
        predictions[answer["label"]] += 1
    return {
        "count": len(answers),
        "features": {name: [row[name] for row in rows if name in row] for name in names},
        "predictions": predictions,
    }
