"""Top-k labels for image files: the data behind ``edgetl predict``.

Each image is decoded, converted to RGB and resized exactly as evaluation does
(:func:`edgetl.data.images.load_images`, with the filter the artifact's preprocessing contract names),
then normalized by the contract and run through the artifact with
:func:`edgetl.device.evaluate.load_predictor`. Labels and the contract come from the artifact's
metadata (:func:`edgetl.runtime.formats.model_info_for`), never guessed. A ``.tflite`` or ``.onnx``
artifact runs in LiteRT or ONNX Runtime, with no TensorFlow: ``edgetl[runtime]`` is enough.

``top_k`` larger than the number of classes is clamped to it (the report keeps what was asked,
and the CLI prints a note); ``top_k`` below 1 is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.data.images import load_images
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
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    # Labels, contract and pixels before the runtime loads, so a bad image fails before any runtime output.
    info = model_info_for(artifact)
    if not info.class_names:
        raise ArtifactError(f"the metadata of {artifact} lists no class names; predict needs the labels")
    pixels = load_images(paths, info.contract.input_size, info.contract.resize)
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
