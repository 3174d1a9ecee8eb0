"""What a build writes beside ``report.md`` for people to read: ``training_curves.png`` (every
phase of float training and QAT, discarded epochs shaded), ``confusion_matrix.png``,
``misclassified.html`` and ``MODEL_CARD.md``.

:func:`write_build_extras` is called by :func:`edgetl.pipeline.build.build` once the artifact is
verified and measured and before ``report.md`` is written. It adds to the build's metadata what
the files are made from (``data``: the data folder, split and images per class; ``scores``: per-class precision, recall and
F1; ``misclassified``; ``report_files``), so every figure in them is also in ``edgetl.json``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.data.split import SplitData
from edgetl.ml.curves import combine_histories, plot_history
from edgetl.pipeline.gallery import write_gallery
from edgetl.pipeline.model_card import CARD, class_scores, render_model_card
from edgetl.pipeline.plots import plot_confusion

log = logging.getLogger(__name__)

CURVES = "training_curves.png"
CONFUSION = "confusion_matrix.png"


def data_summary(split: SplitData, config: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` block: where the images came from, how they were split, how many per class."""
    data = config.get("data") or {}
    names = split.class_names
    train = np.bincount(np.asarray(split.train.y, dtype=np.int64), minlength=len(names))
    val = np.bincount(np.asarray(split.val.y, dtype=np.int64), minlength=len(names))
    return {
        "path": data.get("path"),
        "val_path": data.get("val_path"),
        "val_split": None if data.get("val_path") else data.get("val_split"),
        "seed": data.get("seed"),
        "train_images": int(len(split.train.y)),
        "val_images": int(len(split.val.y)),
        "skipped_files": len(split.skipped),
        "per_class": {name: {"train": int(train[i]), "val": int(val[i])} for i, name in enumerate(names)},
    }


def display_names(paths: list[Path], roots: list[str | None]) -> list[str]:
    """Each image's path relative to the data folder it came from (else its last two parts)."""
    bases = [Path(r).resolve() for r in roots if r]
    shown = []
    for path in paths:
        path = Path(path)
        name = "/".join(path.parts[-2:])
        for base in bases:
            try:
                name = path.resolve().relative_to(base).as_posix()
                break
            except ValueError:
                continue
        shown.append(name)
    return shown


def stage_folder(root: Path, name: str, fingerprint: str | None) -> Path | None:
    """``root/name``, or the temporary folder this build is writing it into, whichever holds the
    stage with ``fingerprint`` (``staged_dirs`` names it ``.<name>.tmp-<pid>``); None if neither."""
    if not fingerprint:
        return None
    for folder in (root / f".{name}.tmp-{os.getpid()}", root / name):
        try:
            if _fs.read_json(folder / _fs.MARKER).get("fingerprint") == fingerprint:
                return folder
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _history(folder: Path | None) -> dict[str, Any]:
    if folder is None:
        return {}
    try:
        history = _fs.read_json(Path(folder) / "history.json")
    except (OSError, ValueError) as exc:
        log.warning("no training history in %s (%s): the build's curves leave that stage out", folder, exc)
        return {}
    return history if isinstance(history, dict) else {}


def build_history(meta: dict[str, Any], root: Path, float_dir: Path | None) -> dict[str, list]:
    """Float training (head, fine-tune, clean) followed by QAT, as one history."""
    fingerprints = meta.get("stage_fingerprints") or {}
    parts: list[tuple[str | None, dict[str, Any]]] = [(None, _history(float_dir))]
    if fingerprints.get("qat"):  # QAT ran (its model ships, or PTQ's did better and ships instead)
        parts.append(("qat", _history(stage_folder(root, "qat", fingerprints["qat"]))))
    return combine_histories(*parts)


def write_build_extras(folder: Path, meta: Any, split: SplitData, probs: np.ndarray, *, float_dir: Path | None = None) -> dict[str, str]:
    """Write the curves, confusion matrix, misclassified gallery and model card into ``folder``
    (the build's target folder, being staged) and add their data to ``meta``.

    Args:
        folder: where ``report.md`` goes; its parent is the build root (``<out>/<name>``).
        meta: the build's metadata (``ArtifactMetadata`` or a dict), with ``accuracy`` filled in.
        split: the build's data split (validation images, labels, files).
        probs: the shipped artifact's probabilities on ``split.val``.
        float_dir: the float training run the build used (for its ``history.json``).

    Returns:
        ``report_files``: what each written file is, by file name (also put into ``meta``).
    """
    folder = Path(folder)
    snapshot = meta.to_json() if hasattr(meta, "to_json") else dict(meta)
    config = snapshot.get("config") or {}
    names = list(snapshot["class_names"])
    title = f"{snapshot.get('name', '')} / {snapshot['target']}"
    files: dict[str, str] = {}
    additions: dict[str, Any] = {
        "data": data_summary(split, config),
        "scores": {"split": "validation", **class_scores(snapshot["accuracy"]["confusion"], names)},
    }

    history = build_history(snapshot, folder.parent, float_dir)
    if history.get("loss"):
        plot_history(history, folder / CURVES, title=f"{title}: training")
        files["training_curves"] = CURVES
    plot_confusion(snapshot["accuracy"]["confusion"], names, folder / CONFUSION, title=f"{title}: confusion matrix, validation ({len(split.val.y)} images)")
    files["confusion_matrix"] = CONFUSION
    data = config.get("data") or {}
    additions["misclassified"] = write_gallery(
        folder, split.val.x, split.val.y, probs, names, display_names(split.val.paths, [data.get("val_path"), data.get("path")]), title=title,
    )
    files["misclassified"] = additions["misclassified"]["file"]
    files["model_card"] = CARD
    additions["report_files"] = files
    meta.update(additions)
    snapshot.update(additions)
    _fs.write_text(folder / CARD, render_model_card(snapshot))
    return files
