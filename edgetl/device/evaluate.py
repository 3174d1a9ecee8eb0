"""Accuracy of any edgetl artifact on an image folder, and its parity with the float model.

Every artifact is fed exactly what training fed the float model: the preprocessing contract is
read from the artifact's ``edgetl.json`` (or, for a file on its own, from what it carries: a
``.tflite``'s embedded ``edgetl`` metadata entry, an ``.onnx`` file's ``metadata_props``), never
re-guessed. ``.tflite`` files run in LiteRT and ``.onnx`` files in ONNX
Runtime, with no TensorFlow. Keras models (``.keras``, ``.h5``, run folders) are evaluated by the
predictor their format entry names by module path (:data:`edgetl.runtime.formats.FORMATS`),
imported only then: this module never imports TensorFlow, and without it a Keras model gets
a one-line error naming the install command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.core.metadata import ModelInfo
from edgetl.data.split import ImageData, load_eval_set
from edgetl.device.heldout import check_split, select
from edgetl.runtime.classify import checked_scores
from edgetl.runtime.formats import FORMATS, artifact_kind, check_requirements, model_info_for, open_model, resolve

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 pixels (N,H,W,3) -> probabilities (N,C)


@dataclass
class Metrics:
    """Classification figures; ``per_class`` maps class name to accuracy and support."""

    num_images: int
    top1: float
    top5: float
    top_k: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    class_names: list[str]


@dataclass
class EvalReport:
    artifact: str
    kind: str
    metrics: Metrics
    skipped_files: list[str] = field(default_factory=list)
    against: dict[str, Any] | None = None
    split: str = "all"  # all, train or val: which images of the folder (see edgetl.device.heldout)
    data_note: str | None = None  # one line when the folder changed since the build, else None
    board: str | None = None  # the board whose outputs gave the figures (edgetl eval --remote); None: this machine

    def to_dict(self) -> dict[str, Any]:
        data = {
            "artifact": self.artifact, "kind": self.kind, "split": self.split, **asdict(self.metrics),
            "skipped_files": self.skipped_files, "data_note": self.data_note,
        }
        if self.board is not None:
            data["board"] = self.board
        if self.against is not None:
            data["against"] = self.against
        return data


def compute_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Metrics:
    """Top-1, top-5 (top-k with k = min(5, classes)), per-class accuracy and confusion matrix."""
    num_classes = len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.argmax(probs, axis=1)
    k = min(5, num_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for index, name in enumerate(class_names):
        support = int(confusion[index].sum())
        per_class[name] = {
            "accuracy": float(confusion[index, index] / support) if support else float("nan"),
            "support": support,
        }
    n = len(labels)
    return Metrics(
        num_images=n,
        top1=float(np.mean(pred == labels)) if n else float("nan"),
        top5=float(np.mean(np.any(topk == labels[:, None], axis=1))) if n else float("nan"),
        top_k=k,
        per_class=per_class,
        confusion=confusion.tolist(),
        class_names=list(class_names),
    )


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Fraction of images on which two models give the same top-1 class."""
    return float(np.mean(np.argmax(probs_a, axis=1) == np.argmax(probs_b, axis=1)))


def load_predictor(artifact: Path, *, num_threads: int | None = None, trust_model: bool = False) -> tuple[Predictor, ModelInfo, str]:
    """A function from uint8 pixels to probabilities for any supported artifact.

    Raises:
        ArtifactError: missing file, unknown kind, no metadata, or a file the runtime rejects.
        ConfigError: the format needs packages that are not installed (TensorFlow for a Keras model).
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    kind = artifact_kind(artifact)
    fmt = FORMATS.get(kind)
    check_requirements(fmt, artifact)  # e.g. TensorFlow for a Keras model: one line naming the install command
    info = model_info_for(artifact)
    contract = info.contract
    if fmt.open is not None:
        model = open_model(artifact, num_threads=num_threads)

        def predict(pixels: np.ndarray) -> np.ndarray:
            # model.predict = to_input -> invoke in batches -> from_output; a board runs the same steps (edgetl.bench.boards)
            return checked_scores(model.predict(contract.normalize(pixels)), artifact, info.class_names)

        return predict, info, kind

    make_predictor = resolve(fmt.predictor)  # registered by module path: imported only for this format
    return make_predictor(artifact, contract, trust_model=trust_model), info, kind


def _board_predictor(artifact: Path, board: Any) -> tuple[Predictor, ModelInfo, str]:
    """:func:`load_predictor`'s triple for an artifact that runs on ``board`` (``.tflite``/``.onnx`` only).

    Raises:
        ArtifactError: missing file, no metadata.
        ConfigError: a Keras model or run folder (boards run the TensorFlow-free formats).
    """
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    fmt = FORMATS.get(artifact_kind(artifact))
    if fmt.open is None:
        raise ConfigError(f"Received {artifact} (a {fmt.name} model): a board runs .tflite and .onnx files; export one first (edgetl export)")
    info = model_info_for(artifact)

    def predict(pixels: np.ndarray) -> np.ndarray:
        return board.predict_artifact(artifact, pixels, batch_size=64)

    return predict, info, fmt.name


def evaluate_predictor(predict: Predictor, pixels: np.ndarray, labels: np.ndarray, class_names: list[str], batch_size: int = 64) -> tuple[Metrics, np.ndarray]:
    outputs = [predict(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    probs = np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, len(class_names)), np.float32)
    return compute_metrics(probs, labels, class_names), probs


def _rows(images: ImageData, indices: np.ndarray) -> ImageData:
    return ImageData(x=images.x[indices], y=images.y[indices], paths=[images.paths[i] for i in indices])


def evaluate(
    artifact: Path, data_dir: Path, *, against: Path | None = None, strict: bool = False, num_threads: int | None = None, trust_model: bool = False,
    split: str = "all", board: Any | None = None,
) -> EvalReport:
    """Evaluate ``artifact`` on the images of ``data_dir`` (class subfolders): all of them, or one part of the build's split.

    Args:
        artifact: ``.tflite``, ``.onnx``, ``.keras``/``.h5`` or an edgetl run folder.
        data_dir: labelled image folder; its classes must be among the model's.
        against: a float reference model; adds top-1 agreement and the accuracy drop.
        split: ``all``; or ``val`` / ``train``: only the images of that part of the split the artifact's
            ``edgetl.json`` records (:mod:`edgetl.device.heldout`), so ``val`` reproduces the build's figures.
        board: where the artifact runs: an object with ``label`` and ``predict_artifact(artifact, pixels, batch_size)``
            (an :mod:`edgetl.bench.boards` board: same preprocessing, outputs made on the board); None: here.
            ``against`` is always evaluated here.

    Raises:
        ArtifactError, DataError: unusable model or folder.
        ConfigError: an unknown ``split``, or ``val``/``train`` for an artifact that records no split.
    """
    check_split(split)
    if board is None:
        predict, info, kind = load_predictor(artifact, num_threads=num_threads, trust_model=trust_model)
    else:
        predict, info, kind = _board_predictor(Path(artifact), board)
    images, skipped = load_eval_set(Path(data_dir), info.contract.hw, class_names=info.class_names, strict=strict, resize=info.contract.resize, channels=info.contract.channels)
    selection = select(info.extra, Path(data_dir), images.paths, images.y, split)
    if split != "all":
        images = _rows(images, selection.indices)
        if selection.note:  # the CLI shows it (report.data_note); a log line for the Python API
            log.info("%s", selection.note)
    # a board gets every image in one call (it batches there): one upload and one runner start, not one per 64 images
    batch_size = max(len(images.x), 1) if board is not None else 64
    metrics, probs = evaluate_predictor(predict, images.x, images.y, info.class_names, batch_size=batch_size)
    report = EvalReport(str(artifact), kind, metrics, [str(s.path) for s in skipped], split=split, data_note=selection.note,
                        board=getattr(board, "label", None) if board is not None else None)
    if against is not None:
        ref_predict, ref_info, ref_kind = load_predictor(against, trust_model=trust_model)
        if ref_info.class_names != info.class_names:
            raise DataError(f"{against} has classes {ref_info.class_names}, {artifact} has {info.class_names}; compare models of the same task")
        ref_pixels = images.x
        if ref_info.contract.input_shape != info.contract.input_shape:
            ref_images, _ = load_eval_set(Path(data_dir), ref_info.contract.hw, class_names=ref_info.class_names, strict=strict, resize=ref_info.contract.resize, channels=ref_info.contract.channels)
            by_path = {path: i for i, path in enumerate(ref_images.paths)}  # the same rows as the artifact's (split included)
            ref_pixels = ref_images.x[np.asarray([by_path[path] for path in images.paths], dtype=np.int64)]
        ref_metrics, ref_probs = evaluate_predictor(ref_predict, ref_pixels, images.y, ref_info.class_names)
        report.against = {
            "artifact": str(against),
            "kind": ref_kind,
            "top1": ref_metrics.top1,
            "top1_agreement": agreement(probs, ref_probs),
            "top1_drop": ref_metrics.top1 - metrics.top1,
        }
    return report
