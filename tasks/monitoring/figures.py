"""The monitor's figure: each feature's histogram over the reference against the answers checked, and the predicted
classes' shares."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def drift_figure(reference: dict, rows: list[dict]):
    """One panel per feature (densities, common bins), and one of the class shares."""
    names = sorted(reference["features"])
    figure, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 2.8), squeeze=False)
    for panel, name in zip(axes[0], names):
        expected = np.asarray(reference["features"][name], dtype=float)
        current = np.asarray([row["features"][name] for row in rows if name in row["features"]], dtype=float)
        edges = np.histogram_bin_edges(np.concatenate([expected, current]), bins=20)
        panel.hist(expected, bins=edges, density=True, alpha=0.5, label="reference (test split)")
        panel.hist(current, bins=edges, density=True, alpha=0.5, label="requests")
        panel.set_title(name, fontsize=9)
    classes = list(reference["predictions"])
    predicted = [row["prediction"] for row in rows]
    classes += sorted(set(predicted) - set(classes))
    total = max(1, sum(reference["predictions"].values()))
    positions = np.arange(len(classes))
    last = axes[0][-1]
    last.bar(positions - 0.2, [reference["predictions"].get(c, 0) / total for c in classes], 0.4, label="reference")
    last.bar(positions + 0.2, [predicted.count(c) / max(1, len(predicted)) for c in classes], 0.4, label="requests")
    last.set_xticks(positions, classes, rotation=90, fontsize=7)
    last.set_title("predicted classes", fontsize=9)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure
