"""Top-k labels for image files: the data behind ``edgetl predict``.

Each image is decoded, converted to RGB and resized exactly as evaluation does
(:func:`edgetl.data.images.load_images`, with the filter the artifact's preprocessing contract names),
then normalized by the contract and run through the artifact with
:func:`edgetl.device.evaluate.load_predictor`. Labels and the contract come from the artifact's
metadata (:func:`edgetl.runtime.formats.model_info_for`), never guessed. A ``.tflite`` or ``.onnx``
artifact runs in LiteRT or ONNX Runtime, with no TensorFlow: ``edgetl[runtime]`` is enough.

``top_k`` larger than the number of classes is clamped to it (the report keeps what was asked,
and the CLI prints a note); ``top_k`` below 1 is an error.

:func:`predict_many` is the same at scale (``edgetl predict ARTIFACT DIR --csv out.csv``): folders are
searched recursively, images decoded and run in batches (memory stays bounded), progress goes to an
:mod:`edgetl.core.progress` callback, and a CSV is streamed to a temporary name and renamed when
complete. An image that cannot be read does not stop the run: it gets a row with an empty class
and the reason in the ``error`` column, and is counted (:attr:`BatchPredictReport.failed`). Files
without an image suffix are ignored and counted. Every text cell is spreadsheet-safe
(:func:`spreadsheet_safe`): a file or class name starting with ``=``, ``+``, ``-`` or ``@`` is
written with a leading ``'`` so no spreadsheet runs it as a formula.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.core.progress import Progress, log_progress
from edgetl.data.images import IMAGE_SUFFIXES, SkippedFile, decode_all, load_images, resample_filter, stack_pixels
from edgetl.device.evaluate import load_predictor
from edgetl.runtime import captured_native_output
from edgetl.runtime.formats import model_info_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes.

    Attributes:
        label: class name.
        index: class index in the model's output.
        score: the model's output for that class (a probability for edgetl's softmax classifiers).
    """

    label: str
    index: int
    score: float


@dataclass
class PredictReport:
    """Top-k predictions of one artifact for a list of images.

    Attributes:
        artifact: the model file.
        kind: ``tflite``, ``onnx`` or ``keras``.
        top_k: how many classes each image lists (``requested_top_k`` clamped to the class count).
        requested_top_k: what the caller asked for.
        class_names: the model's classes, in output order.
        predictions: ``(image path, top-k predictions best first)`` per image, in input order.
        contract: the preprocessing contract that was applied.
    """

    artifact: str
    kind: str
    top_k: int
    requested_top_k: int
    class_names: list[str]
    predictions: list[tuple[str, list[Prediction]]] = field(default_factory=list)
    contract: dict[str, Any] = field(default_factory=dict)

    @property
    def clamped(self) -> bool:
        return self.top_k < self.requested_top_k

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "kind": self.kind,
            "top_k": self.top_k,
            "requested_top_k": self.requested_top_k,
            "num_classes": len(self.class_names),
            "preprocessing": self.contract,
            "predictions": [
                {"image": image, "top": [{"label": p.label, "index": p.index, "score": p.score} for p in top]}
                for image, top in self.predictions
            ],
        }


def check_top_k(top_k: int) -> int:
    """Raises: ConfigError: ``top_k`` is not a positive integer."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ConfigError(f"Received --top-k {top_k}; pass 1 or more (the number of classes to list per image)")
    return int(top_k)


def check_images(images: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Cheap checks before the model loads: at least one image, each an existing file.

    Raises:
        DataError: no images, or a path that does not exist or is not a file (named).
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise DataError("Received no images; pass one or more image files")
    for path in paths:
        if not path.exists():
            raise DataError(f"image {path} does not exist")
        if not path.is_file():
            raise DataError(f"image {path} is not a file; pass image files (a folder of class folders is for `edgetl eval --data`)")
        if not os.access(path, os.R_OK):
            raise DataError(f"image {path} cannot be read (permission denied)")
    return paths


def top_k_of(scores: np.ndarray, class_names: list[str], k: int) -> list[list[Prediction]]:
    """The ``k`` highest-scoring classes of each row, best first; ties go to the lower class index."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[Prediction(class_names[int(i)], int(i), float(row[int(i)])) for i in ranks] for row, ranks in zip(scores, order, strict=True)]


def predict_images(
    artifact: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 3,
    num_threads: int | None = None,
    trust_model: bool = False,
) -> PredictReport:
    """Top-k labels and scores of ``artifact`` for each image.

    Args:
        artifact: a ``.tflite`` or ``.onnx`` file with its labels and preprocessing contract in
            ``edgetl.json`` beside it or in its own metadata (a Keras model works too, with TensorFlow).
        images: image files (any format Pillow reads; transparency, 16-bit and EXIF orientation
            are handled as in training, see :mod:`edgetl.data.images`).
        top_k: classes to list per image; clamped to the number of classes.
        num_threads: runtime threads; None: the runtime's default.
        trust_model: load a Keras model even if it carries code (Lambda layers); see
            :mod:`edgetl.ml.keras_safety`.

    Returns:
        A :class:`PredictReport`.

    Raises:
        ConfigError: ``top_k`` below 1.
        DataError: a missing, unreadable or non-image file (named).
        ArtifactError: the artifact is missing, unreadable, has no labels/contract metadata, or
            its output does not have one score per class.
    """
    requested = check_top_k(top_k)
    paths = check_images(images)
    artifact = Path(artifact)
    # Labels, contract and pixels before the runtime loads, so a bad image fails before any runtime output.
    info = _labelled_model_info(artifact)
    pixels = load_images(paths, info.contract.hw, info.contract.resize, channels=info.contract.channels)
    with captured_native_output() as native:  # LiteRT's "INFO: Created ... XNNPACK delegate" line
        predict, info, kind = load_predictor(artifact, num_threads=num_threads, trust_model=trust_model)
    logger.debug("runtime output while loading %s: %s", artifact, native.get("text", "").strip())
    scores = np.asarray(predict(pixels), dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(info.class_names):
        raise ArtifactError(
            f"{artifact} outputs shape {tuple(scores.shape)} for {len(paths)} image(s), but its metadata names "
            f"{len(info.class_names)} classes; the labels do not belong to this model"
        )
    k = min(requested, len(info.class_names))
    report = PredictReport(str(artifact), kind, k, requested, list(info.class_names), contract=info.contract.to_dict())
    report.predictions = [(str(p), top) for p, top in zip(paths, top_k_of(scores, info.class_names, k), strict=True)]
    return report


# ----------------------------------------------------------------------------- at scale: folders, batches, CSV

#: First characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula
#: (OWASP "CSV injection"): ``=``, ``+``, ``-``, ``@``, and tab / carriage return, which some strip first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet evaluates: a leading ``'`` when it starts like a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass(frozen=True)
class PredictedRow:
    """One image of :func:`predict_many`: its path, its top-k classes, or why it could not be read.

    Attributes:
        path: relative to the folder it was found in (``/``-separated), or as given for a file.
        top: best first; empty when ``error`` is set.
        error: empty, or why the image was skipped (``not an image``, ``truncated image``, ...).
    """

    path: str
    top: list[Prediction]
    error: str = ""


@dataclass
class BatchPredictReport:
    """What :func:`predict_many` did: one row per image file, in the order found.

    Attributes:
        rows: one per image-suffixed file; unreadable ones carry an ``error``.
        ignored: files without an image suffix (not predicted, not in the CSV).
        csv_path: the CSV written, if one was asked for.
    """

    artifact: str
    kind: str
    top_k: int
    requested_top_k: int
    class_names: list[str]
    rows: list[PredictedRow] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    csv_path: str | None = None
    contract: dict[str, Any] = field(default_factory=dict)

    @property
    def clamped(self) -> bool:
        return self.top_k < self.requested_top_k

    @property
    def predicted(self) -> int:
        return sum(1 for row in self.rows if not row.error)

    @property
    def failed(self) -> list[PredictedRow]:
        return [row for row in self.rows if row.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "kind": self.kind, "top_k": self.top_k, "requested_top_k": self.requested_top_k,
            "num_classes": len(self.class_names), "preprocessing": self.contract, "csv": self.csv_path,
            "images": len(self.rows), "predicted": self.predicted, "failed": len(self.failed), "ignored": len(self.ignored),
            "predictions": [
                {"image": row.path, "top": [{"label": p.label, "index": p.index, "score": p.score} for p in row.top], "error": row.error or None}
                for row in self.rows
            ],
        }


def _walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image-suffixed files under ``folder`` (recursively, sorted, hidden files and folders left out) and the rest."""
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Image files of ``inputs`` (files, and folders searched recursively) with the path each is shown as.

    Returns:
        ``([(file, shown path), ...], ignored)``: a folder's files are shown relative to it
        (``/``-separated), a file as given; ``ignored`` lists the files without an image suffix.

    Raises:
        DataError: no inputs, an input that does not exist, or no image file at all.
    """
    if not inputs:
        raise DataError("Received no images; pass image files or folders")
    found: list[tuple[Path, str]] = []
    ignored: list[str] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images, others = _walk_images(item)
            found += [(p, p.relative_to(item).as_posix()) for p in images]
            ignored += [p.relative_to(item).as_posix() for p in others]
        elif item.is_file():
            found.append((item, str(item)))
        elif item.exists():
            raise DataError(f"{item} is neither a file nor a folder; pass image files or folders")
        else:
            raise DataError(f"image {item} does not exist")
    if not found:
        where = ", ".join(str(i) for i in inputs[:3])
        raise DataError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {where}"
            + (f"; {len(ignored)} other file(s) ignored" if ignored else "")
        )
    return found, ignored


def csv_header(top_k: int) -> list[str]:
    """``path, class, confidence`` then ``class_2, confidence_2`` ... up to ``top_k``, then ``error``."""
    header = ["path", "class", "confidence"]
    for rank in range(2, top_k + 1):
        header += [f"class_{rank}", f"confidence_{rank}"]
    return [*header, "error"]


def csv_row(row: PredictedRow, top_k: int) -> list[str]:
    """One CSV line's cells; text cells through :func:`spreadsheet_safe`, scores with 6 decimals."""
    cells = [spreadsheet_safe(row.path)]
    for rank in range(top_k):
        if rank < len(row.top):
            cells += [spreadsheet_safe(row.top[rank].label), f"{row.top[rank].score:.6f}"]
        else:
            cells += ["", ""]
    return [*cells, spreadsheet_safe(row.error)]


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_many(
    artifact: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 1,
    batch_size: int = 64,
    csv_path: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    trust_model: bool = False,
    progress: Progress | None = None,
) -> BatchPredictReport:
    """Top-k classes of every image in ``inputs`` (files, and folders searched recursively), in batches.

    Unlike :func:`predict_images`, an unreadable image does not stop the run: it becomes a row with
    an ``error`` (and an ``error`` cell in the CSV). The CSV, if asked for, is written under a
    temporary name beside ``csv_path`` and renamed when every image is done.

    Args:
        artifact: as for :func:`predict_images`.
        inputs: image files and folders.
        top_k: classes per image (clamped to the class count).
        batch_size: images decoded and run at once.
        csv_path: write the rows here (columns: :func:`csv_header`).
        progress: callback ``(task, completed, total, message)``; one task, ``predict``.

    Returns:
        A :class:`BatchPredictReport`.

    Raises:
        ConfigError: ``top_k`` or ``batch_size`` below 1, a ``csv_path`` that is a folder.
        DataError: an input that does not exist, or no image file at all.
        ArtifactError: as for :func:`predict_images`.
    """
    requested = check_top_k(top_k)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"Received --batch-size {batch_size!r}; pass 1 or more")
    if csv_path is not None and Path(csv_path).is_dir():
        raise ConfigError(f"--csv {csv_path} is a folder; pass a file name such as predictions.csv")
    progress = progress or log_progress
    artifact = Path(artifact)
    info = _labelled_model_info(artifact)
    files, ignored = collect_images(inputs)
    resample = resample_filter(info.contract.resize)
    size, channels = info.contract.hw, info.contract.channels
    with captured_native_output() as native:
        predict, info, kind = load_predictor(artifact, num_threads=num_threads, trust_model=trust_model)
    logger.debug("runtime output while loading %s: %s", artifact, native.get("text", "").strip())
    k = min(requested, len(info.class_names))
    report = BatchPredictReport(
        str(artifact), kind, k, requested, list(info.class_names), ignored=ignored,
        csv_path=str(csv_path) if csv_path is not None else None, contract=info.contract.to_dict(),
    )

    def run(writer) -> None:
        done = 0
        progress("predict", 0, len(files), "")
        for batch in _batches(files, batch_size):
            decoded = decode_all([path for path, _ in batch], size, resample, verify=True, channels=channels)
            good = [i for i, d in enumerate(decoded) if not isinstance(d, SkippedFile)]
            tops: dict[int, list[Prediction]] = {}
            if good:
                scores = np.asarray(predict(stack_pixels([decoded[i].pixels for i in good], size, channels)), dtype=np.float32)  # type: ignore[union-attr]
                if scores.ndim != 2 or scores.shape[0] != len(good) or scores.shape[1] != len(info.class_names):
                    raise ArtifactError(
                        f"{artifact} outputs shape {tuple(scores.shape)} for {len(good)} image(s), but its metadata names "
                        f"{len(info.class_names)} classes; the labels do not belong to this model"
                    )
                tops = dict(zip(good, top_k_of(scores, info.class_names, k), strict=True))
            for i, (_, shown) in enumerate(batch):
                item = decoded[i]
                row = PredictedRow(shown, tops[i]) if i in tops else PredictedRow(shown, [], item.reason)  # type: ignore[union-attr]
                report.rows.append(row)
                if writer is not None:
                    writer.writerow(csv_row(row, k))
            done += len(batch)
            progress("predict", done, len(files), f"{len(report.failed)} unreadable" if report.failed else "")

    if csv_path is None:
        run(None)
    else:
        with _fs.atomic_path(Path(csv_path)) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(csv_header(k))
            run(writer)
    if report.failed:
        logger.warning("%d of %d image(s) could not be read (rows with an error)", len(report.failed), len(report.rows))
    return report


def _labelled_model_info(artifact: Path):
    """The artifact's metadata, which must name its classes (predict prints them).

    Raises:
        ArtifactError: no such artifact, or metadata without class names.
    """
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    info = model_info_for(artifact)
    if not info.class_names:
        raise ArtifactError(f"the metadata of {artifact} lists no class names; predict needs the labels")
    return info
