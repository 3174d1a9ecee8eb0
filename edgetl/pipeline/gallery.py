"""``misclassified.html``: the validation images the shipped artifact got wrong, as thumbnails.

Each entry shows the image as the model saw it (resized to its input size), the true and the
predicted class and the predicted class's probability, the most confident mistakes first. The thumbnails are small JPEGs
inside the page (``data:`` URIs), so the page is one file that can be mailed or attached. Every
string that comes from the user (class names, file names) is HTML-escaped, and the page's content
security policy lets nothing run or load.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.core import fs as _fs

PAGE = "misclassified.html"
#: At most this many thumbnails; the page states the total.
MAX_SHOWN = 100
THUMB_PX = 128


@dataclass(frozen=True)
class Mistake:
    """One misclassified validation image."""

    index: int  # row in the validation split
    file: str  # the image's path, relative to the data folder where possible
    true: str
    predicted: str
    confidence: float  # the artifact's probability of ``predicted``
    true_probability: float


def find_mistakes(probs: np.ndarray, labels: np.ndarray, class_names: list[str], files: list[str]) -> list[Mistake]:
    """The misclassified rows, most confident first."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.argmax(probs, axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    wrong = [int(i) for i in np.flatnonzero(pred != labels)]
    mistakes = [
        Mistake(i, files[i], class_names[labels[i]], class_names[pred[i]], float(probs[i, pred[i]]), float(probs[i, labels[i]]))
        for i in wrong
    ]
    return sorted(mistakes, key=lambda m: (-m.confidence, m.index))


def thumbnail_uri(pixels: np.ndarray) -> str:
    """A ``data:`` URI of a JPEG thumbnail (at most ``THUMB_PX`` on a side) of uint8 RGB pixels."""
    array = np.asarray(pixels, dtype=np.uint8)
    image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).convert("RGB")  # gray: (H, W, 1)
    if max(image.size) > THUMB_PX:
        image.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 150px; border: 1px solid #ddd; border-radius: 4px; padding: 6px; background: #fafafa; }
figure img { width: 138px; height: 138px; object-fit: contain; image-rendering: pixelated; background: #fff; }
figcaption { font-size: 12px; line-height: 1.35; word-wrap: break-word; }
.true { color: #1a6b1a; } .pred { color: #a31515; } .file { color: #666; font-size: 11px; }
"""


def render_gallery(mistakes: list[Mistake], total_images: int, thumbnails: list[str], *, title: str = "") -> str:
    """The HTML page; ``thumbnails[i]`` is the ``data:`` URI of ``mistakes[i]``'s image (fewer thumbnails: the rest are not shown)."""
    esc = html.escape
    shown = len(thumbnails)
    heading = f"Misclassified validation images{': ' + title if title else ''}"
    if not mistakes:
        summary = f"None: the artifact classified all {total_images} validation images correctly."
    else:
        summary = (
            f"{len(mistakes)} of {total_images} validation images are misclassified"
            + (f"; the {shown} most confident mistakes are shown." if shown < len(mistakes) else "; all are shown, the most confident first.")
        )
    figures = []
    for mistake, thumb in zip(mistakes, thumbnails, strict=False):
        figures.append(
            "<figure>"
            f'<img src="{esc(thumb)}" alt="{esc(mistake.file)}" title="{esc(mistake.file)}">'
            "<figcaption>"
            f'<div class="true">true: {esc(mistake.true)} ({100 * mistake.true_probability:.1f}%)</div>'
            f'<div class="pred">predicted: {esc(mistake.predicted)} ({100 * mistake.confidence:.1f}%)</div>'
            f'<div class="file">{esc(mistake.file)}</div>'
            "</figcaption></figure>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # Nothing runs and nothing outside this folder loads, whatever a class or file name holds.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
            f"<title>{esc(heading)}</title>",
            f"<style>{_STYLE}</style>",
            "</head><body>",
            f"<h1>{esc(heading)}</h1>",
            f"<p>{esc(summary)} Each image is shown as the model saw it (resized to its input size); "
            "the percentages are the artifact's probabilities of the true and of the predicted class.</p>",
            '<div class="grid">',
            *figures,
            "</div>",
            "</body></html>",
            "",
        ]
    )


def write_gallery(
    folder: Path, pixels: np.ndarray, labels: np.ndarray, probs: np.ndarray, class_names: list[str], files: list[str],
    *, title: str = "", max_shown: int = MAX_SHOWN,
) -> dict[str, Any]:
    """Write ``misclassified.html`` (thumbnails inside) into ``folder``.

    Args:
        pixels: the validation images as the model saw them, uint8 ``(N, H, W, 3)``.
        labels: their true class indices.
        probs: the artifact's probabilities, ``(N, classes)``.
        files: a display name per image (user-provided: escaped in the page).

    Returns:
        A summary for ``edgetl.json``: file, total images, misclassified, shown.
    """
    folder = Path(folder)
    mistakes = find_mistakes(probs, labels, class_names, files)
    shown = mistakes[: max(0, max_shown)]
    thumbnails = [thumbnail_uri(pixels[mistake.index]) for mistake in shown]
    _fs.write_text(folder / PAGE, render_gallery(mistakes, int(len(labels)), thumbnails, title=title))
    return {"file": PAGE, "images": int(len(labels)), "misclassified": len(mistakes), "shown": len(shown)}
