"""What would fit a flash budget: the advice in the ``--flash-budget`` error.

A model's file size is its weights: it depends on the backbone, its width multiplier, the head's
class count and the dtype, not on the input size. The stored backbone figures
(``edgetl/ml/backbones/figures.json``: TFLite fp32 and int8 file sizes of every backbone and alpha
with a 1000-class head) give each candidate's size with the model's own class count; they are
scaled by how the model at hand compares with its own entry (metadata and converter details), and
the advice names, in this order: int8 for a float model, a smaller alpha of the same backbone, the
largest other backbone that fits, or that none of edgetl's backbones fits.

The figures are read as a data file, without importing :mod:`edgetl.ml` (this layer must not:
a device install has no TensorFlow, and the table needs none).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError
from edgetl.core.metadata import read_model_info
from edgetl.core.units import human_size

log = logging.getLogger(__name__)


@cache
def _entries() -> tuple[dict[str, Any], ...]:
    try:
        text = resources.files("edgetl").joinpath("ml", "backbones", "figures.json").read_text(encoding="utf-8")
        return tuple(json.loads(text)["entries"])
    except (OSError, ValueError, KeyError) as exc:  # an install without the table: advice without figures
        log.debug("no backbone figures: %s", exc)
        return ()


def _size(entry: dict[str, Any], classes: int, int8: bool) -> int:
    """The entry's file size with a ``classes``-way head (see ``edgetl.ml.backbones.figures.with_classes``)."""
    delta = classes - entry["classes"]
    if int8:
        return entry["int8_bytes"] + (entry["features"] + 4) * delta
    return entry["float_bytes"] + 4 * (entry["features"] + 1) * delta


def _model_facts(metadata: dict[str, Any] | None) -> tuple[str | None, float | None, int | None, bool]:
    """``(backbone, alpha, classes, is_int8)`` from a model's ``edgetl.json`` content (what it says)."""
    meta = metadata if isinstance(metadata, dict) else {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    backbone = meta.get("backbone") if isinstance(meta.get("backbone"), str) else model.get("name") if isinstance(model.get("name"), str) else None
    alpha = model.get("alpha") if isinstance(model.get("alpha"), (int, float)) else None
    names = meta.get("class_names")
    classes = len(names) if isinstance(names, list) and names else None
    dtype = meta.get("dtype") or str(meta.get("target", "")).rsplit("-", 1)[-1]
    return backbone, alpha, classes, dtype in ("int8", "uint8")


def flash_advice(model_bytes: int, budget: int, metadata: dict[str, Any] | None, model: Path | None = None) -> str:
    """One clause saying what would fit ``budget`` bytes, for a model of ``model_bytes`` described by
    ``metadata`` (None: read from beside or inside ``model``, when it has edgetl metadata)."""
    if metadata is None and model is not None:
        try:
            metadata = read_model_info(model).extra
        except EdgetlError:  # a model without edgetl metadata: general advice
            metadata = None
    backbone, alpha, classes, is_int8 = _model_facts(metadata)
    entries = _entries()
    if classes is None or not entries:
        return "make the model smaller: a smaller backbone or width multiplier (--alpha), and int8 (`--target tflite-int8`), then build again"
    own = [e for e in entries if e["backbone"] == backbone and (alpha is None or e["alpha"] == alpha)]
    if alpha is None and len(own) > 1:  # no alpha recorded: the backbones' default, 1.0
        own = [e for e in own if e["alpha"] == 1.0] or own
        alpha = own[0]["alpha"]
    # How this file compares with the table's estimate of it (embedded metadata, converter version): applied to every candidate.
    scale = model_bytes / _size(own[0], classes, is_int8) if own else 1.0

    def fits(entry: dict[str, Any], int8: bool = True) -> int | None:
        size = round(_size(entry, classes, int8) * scale)
        return size if size <= budget else None

    def alpha_of(entry: dict[str, Any]) -> str:
        return f" --alpha {entry['alpha']:g}" if entry["alpha"] is not None else ""

    if own and not is_int8 and (size := fits(own[0])) is not None:
        return f"as full-integer int8 (`--target tflite-int8`) it would be about {human_size(size)}, which fits; build again with it"
    tail = "" if is_int8 else " as int8 (`--target tflite-int8`)"
    smaller_alpha = [(e, s) for e in entries if e["backbone"] == backbone and alpha is not None and e["alpha"] is not None
                     and e["alpha"] < alpha and (s := fits(e)) is not None]
    if smaller_alpha:
        entry, size = max(smaller_alpha, key=lambda pair: pair[1])
        return f"{backbone} at{alpha_of(entry)} would be about {human_size(size)}{tail}, which fits; build again with it"
    others = sorted(((e, s) for e in entries if e["backbone"] != backbone and (s := fits(e)) is not None), key=lambda pair: -pair[1])
    if others:
        named = ", ".join(f"--model {e['backbone']}{alpha_of(e)} (about {human_size(s)})" for e, s in others[:2])
        return f"a smaller backbone fits{tail}: {named}; build again with one (the input size does not change the file size)"
    smallest = min(entries, key=lambda e: _size(e, classes, True))
    alpha_text = f" at alpha {smallest['alpha']:g}" if smallest["alpha"] is not None else ""
    this = " (this model)" if smallest["backbone"] == backbone and smallest["alpha"] == alpha and is_int8 else ""
    return (
        f"none of edgetl's backbones fits {human_size(budget)}: the smallest, {smallest['backbone']}{alpha_text}{this}, is about "
        f"{human_size(round(_size(smallest, classes, True) * scale))} as int8 with {classes} classes (the input size does not change "
        "the file size); raise the budget or bring a smaller model of your own"
    )
