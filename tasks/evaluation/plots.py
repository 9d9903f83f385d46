"""Figures shared by the modalities: a classifier's confusion matrix and the title of a sample's attention figure.
Each modality draws its own attention maps (tasks/modalities/<modality>.py)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str], title: str):
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    axes.imshow(matrix, cmap="Blues")
    axes.set(
        xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted", ylabel="true", title=title
    )
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticklabels(class_names)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=8,
        )
    figure.tight_layout()
    return figure


def sample_title(true: str, predicted: str) -> str:
    """The title of one test sample's attention figure."""
    return f"true: {true}   predicted: {predicted}"
