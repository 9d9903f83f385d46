"""Each modality's test metrics, and its primary metric: the first, which ranks runs and decides promotion."""
CLASSIFICATION_METRICS = ("test_accuracy", "test_macro_f1")
TRANSLATION_METRICS = ("test_bleu", "test_chrf", "test_bleu_greedy")  # sacrebleu on detokenized output


def evaluation_metrics(modality: str) -> tuple[str, ...]:
    return TRANSLATION_METRICS if modality == "translation" else CLASSIFICATION_METRICS


def primary_metric(modality: str) -> str:
    return evaluation_metrics(modality)[0]
