"""Figures shared by the kinds: a classifier's confusion matrix and the title of a sample's attention figure.
Each kind draws its own attention maps (tasks/kinds/<kind>.py)."""

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


def png_base64(values, flip: bool = False) -> str:
    """A 2-D array as a grayscale PNG in base64, scaled to 0-255 (flip: the first row at the bottom, as a
    spectrogram's lowest frequency)."""
    import base64
    import io

    from PIL import Image

    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    scaled = np.zeros_like(values) if span == 0 else (values - values.min()) / span
    buffer = io.BytesIO()
    pixels = np.round((scaled[::-1] if flip else scaled) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()
