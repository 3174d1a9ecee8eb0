"""Figures of a build: the confusion matrix of the shipped artifact on the validation split.

The training curves are drawn by :mod:`edgetl.ml.curves` (a training run draws its own too); this
module draws what only a build has. Matplotlib only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.core import fs as _fs

#: Class names longer than this are cut on the axes (the full names are in labels.txt).
AXIS_NAME_CHARS = 24


def axis_text(text: str, limit: int = AXIS_NAME_CHARS) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")  # matplotlib reads $...$ as math


def plot_confusion(confusion: list[list[int]] | np.ndarray, class_names: list[str], path: Path, *, title: str = "") -> Path:
    """Confusion matrix as a PNG: true class per row, predicted per column, each cell's count
    written in it and coloured by its share of the row (so a small class's errors show as clearly
    as a large one's). Sized and lettered to stay readable up to ~30 classes.

    Args:
        confusion: counts, ``confusion[true][predicted]``.
        class_names: one name per row/column.
        path: the PNG to write (atomically).
        title: figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.int64).reshape(len(class_names), len(class_names))
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    n = len(class_names)
    side = min(18.0, max(4.5, 0.42 * n + 2.5))
    fontsize = 10 if n <= 8 else 9 if n <= 16 else 7.5 if n <= 30 else 5
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("share of the true class (row)")
    names = [axis_text(name) for name in class_names]
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 45, ha="center" if n > 6 else "right", fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if counts[i, j] or i == j:
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    ax.set_title(axis_text(title, 120) if title else f"confusion matrix ({int(counts.sum())} validation images)", fontsize=10)
    fig.tight_layout()
    with _fs.atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
