"""Figures logged with every run: the confusion matrix and one attention map per test sample.

Attention maps of classifiers show attention rollout from the class token to the inputs:
text as a heatmap over subword tokens, images as a heatmap over the picture,
speech as a relevance curve over time drawn on the log-mel spectrogram.
Translation shows its cross-attention alignment: source subwords x output subwords.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str], title: str):
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    axes.imshow(matrix, cmap="Blues")
    axes.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted", ylabel="true",
             title=title)
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticklabels(class_names)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    figure.tight_layout()
    return figure


def _title(true: str, predicted: str) -> str:
    return f"true: {true}   predicted: {predicted}"


def text_attention_figure(tokens: list[str], relevance: np.ndarray, true: str, predicted: str):
    figure, axes = plt.subplots(figsize=(max(4.0, 0.6 * len(tokens)), 1.6))
    axes.imshow(relevance[None, :], cmap="Reds", aspect="auto", vmin=0)
    axes.set_xticks(range(len(tokens)))
    axes.set_xticklabels(tokens, rotation=45, ha="right", fontsize=9)
    axes.set_yticks([])
    axes.set_title(_title(true, predicted), fontsize=9)
    figure.tight_layout()
    return figure


def image_attention_figure(image: np.ndarray, relevance: np.ndarray, true: str, predicted: str):
    """image: (H, W) or (H, W, 3) in [0, 1]; relevance: one value per patch, (grid * grid,)."""
    grid = int(round(len(relevance) ** 0.5))
    patches = torch.from_numpy(relevance.reshape(1, 1, grid, grid).astype(np.float32))
    heatmap = F.interpolate(patches, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    figure, (left, right) = plt.subplots(1, 2, figsize=(5, 2.8))
    left.imshow(image, cmap="gray")
    left.set_title("input", fontsize=9)
    right.imshow(image, cmap="gray")
    right.imshow(heatmap.numpy(), cmap="jet", alpha=0.5)
    right.set_title("attention rollout", fontsize=9)
    for axes in (left, right):
        axes.axis("off")
    figure.suptitle(_title(true, predicted), fontsize=9)
    figure.tight_layout()
    return figure


def speech_attention_figure(log_mel: np.ndarray, relevance: np.ndarray, true: str, predicted: str):
    """log_mel: (n_mels, frames); relevance: one value per encoder frame (frames / subsampling)."""
    figure, axes = plt.subplots(figsize=(6, 3))
    axes.imshow(log_mel, origin="lower", aspect="auto", cmap="magma")
    times = np.linspace(0, log_mel.shape[1] - 1, len(relevance))
    curve = axes.twinx()
    curve.plot(times, relevance, color="cyan", linewidth=2)
    curve.set_ylim(0, relevance.max() * 1.1)
    curve.set_ylabel("attention")
    axes.set(xlabel="frame (10 ms)", ylabel="mel bin")
    axes.set_title(_title(true, predicted), fontsize=9)
    figure.tight_layout()
    return figure



def alignment_figure(source_tokens: list[str], output_tokens: list[str], weights: np.ndarray, source: str,
                     translation: str, reference: str):
    """weights: (output tokens, source tokens) cross-attention; each row sums to 1."""
    figure, axes = plt.subplots(figsize=(max(4.0, 0.45 * len(source_tokens) + 2), max(3.0, 0.4 * len(output_tokens) + 2)))
    axes.imshow(weights, cmap="Blues", aspect="auto", vmin=0)
    plain = {"parse_math": False}  # amounts such as "10,00 AU$" are text, not mathtext
    axes.set_xticks(range(len(source_tokens)))
    axes.set_xticklabels(source_tokens, rotation=60, ha="right", fontsize=8, **plain)
    axes.set_yticks(range(len(output_tokens)))
    axes.set_yticklabels(output_tokens, fontsize=8, **plain)
    axes.set(xlabel="source subwords", ylabel="output subwords")
    axes.set_title(f"source: {source}\noutput: {translation}\nreference: {reference}", fontsize=8, loc="left", **plain)
    figure.tight_layout()
    return figure
