"""Accuracy of any edgetl artifact on an image folder, and its parity with the float model.

Every artifact is fed exactly what training fed the float model: the preprocessing contract is
read from the artifact's ``edgetl.json`` (or, for a file on its own, from what it carries: a
``.tflite``'s embedded ``edgetl`` metadata entry, an ``.onnx`` file's ``metadata_props``), never
re-guessed. ``.tflite`` files run in LiteRT and ``.onnx`` files in ONNX
Runtime, with no TensorFlow; Keras models import it when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, DataError
from edgetl.core.metadata import ModelInfo, metadata_path_for, read_model_info
from edgetl.data.images import load_eval_set

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 pixels (N,H,W,3) -> probabilities (N,C)

KERAS_SUFFIXES = (".keras", ".h5")


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

    def to_dict(self) -> dict[str, Any]:
        data = {"artifact": self.artifact, "kind": self.kind, **asdict(self.metrics), "skipped_files": self.skipped_files}
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


def artifact_kind(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return "keras"
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    if suffix in KERAS_SUFFIXES:
        return "keras"
    raise ArtifactError(f"cannot evaluate {path}: expected a .tflite, .onnx, .keras or .h5 file or an edgetl run folder")


def open_model(artifact: Path, *, num_threads: int | None = None):
    """A runtime model (``LiteRTModel`` or ``ORTModel``) for a ``.tflite`` or ``.onnx`` file."""
    kind = artifact_kind(Path(artifact))
    if kind == "tflite":
        from edgetl.runtime.litert import LiteRTModel

        return LiteRTModel(artifact, num_threads=num_threads)
    if kind == "onnx":
        from edgetl.runtime.onnxruntime import ORTModel

        return ORTModel(artifact, num_threads=num_threads)
    raise ArtifactError(f"{artifact} is not a .tflite or .onnx file")


def model_info_for(artifact: Path) -> ModelInfo:
    """Labels and contract: ``edgetl.json`` beside the model, else what the file carries itself
    (a ``.tflite``'s embedded ``edgetl`` metadata entry, an ``.onnx`` file's ``metadata_props``)."""
    artifact = Path(artifact)
    try:
        return read_model_info(artifact)
    except ArtifactError:
        kind = artifact_kind(artifact)
        # a broken edgetl.json beside a .tflite is reported as such, not papered over
        if kind not in ("onnx", "tflite") or (kind == "tflite" and metadata_path_for(artifact).is_file()):
            raise
    if kind == "tflite":
        from edgetl.core.metadata import EMBEDDED_METADATA_NAME, model_info_from_embedded
        from edgetl.runtime.litert import tflite_metadata

        entries = tflite_metadata(artifact)
        if EMBEDDED_METADATA_NAME not in entries:
            raise ArtifactError(
                f"{artifact} has no edgetl.json beside it and no embedded {EMBEDDED_METADATA_NAME!r} metadata (labels, preprocessing); "
                "evaluate a .tflite exported by edgetl, or put its edgetl.json beside it"
            )
        return model_info_from_embedded(entries[EMBEDDED_METADATA_NAME], artifact)
    from edgetl.core.metadata import checked_metadata
    from edgetl.runtime.onnxruntime import ORTModel

    props = ORTModel(artifact).metadata
    try:
        import json

        labels, preprocessing = json.loads(props["labels"]), json.loads(props["preprocessing"])
    except (KeyError, ValueError, TypeError, RecursionError):
        raise ArtifactError(
            f"{artifact} has no edgetl.json beside it and no `labels`/`preprocessing` in its metadata_props; "
            "evaluate an ONNX model exported by edgetl, or put its edgetl.json beside it"
        ) from None
    class_names, contract = checked_metadata(labels, preprocessing, f"{artifact} (metadata_props)")
    return ModelInfo(class_names=class_names, contract=contract, extra={"kind": "onnx", "metadata_props": props})


def load_predictor(artifact: Path, *, num_threads: int | None = None, trust_model: bool = False) -> tuple[Predictor, ModelInfo, str]:
    """A function from uint8 pixels to probabilities for any supported artifact.

    Raises:
        ArtifactError: missing file, unknown kind, no metadata, or a file the runtime rejects.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    kind = artifact_kind(artifact)
    info = model_info_for(artifact)
    contract = info.contract
    if kind in ("tflite", "onnx"):
        model = open_model(artifact, num_threads=num_threads)

        def predict(pixels: np.ndarray) -> np.ndarray:
            scores = model.predict(contract.normalize(pixels))
            if scores.ndim != 2 or scores.shape[1] != len(info.class_names):  # a corrupt or foreign model
                raise ArtifactError(
                    f"{artifact} outputs shape {tuple(scores.shape)}, but its metadata names {len(info.class_names)} classes; "
                    "the model is corrupt or the labels do not belong to it"
                )
            return scores

        return predict, info, kind

    from edgetl.ml.qat import load_keras_artifact
    from edgetl.ml.train import predict_pixels

    keras_model, _ = load_keras_artifact(artifact, trust_model=trust_model)  # no code from the file runs unless trusted
    return (lambda pixels: predict_pixels(keras_model, pixels, contract)), info, kind


def evaluate_predictor(predict: Predictor, pixels: np.ndarray, labels: np.ndarray, class_names: list[str], batch_size: int = 64) -> tuple[Metrics, np.ndarray]:
    outputs = [predict(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    probs = np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, len(class_names)), np.float32)
    return compute_metrics(probs, labels, class_names), probs


def evaluate(
    artifact: Path, data_dir: Path, *, against: Path | None = None, strict: bool = False, num_threads: int | None = None, trust_model: bool = False,
) -> EvalReport:
    """Evaluate ``artifact`` on every image of ``data_dir`` (class subfolders).

    Args:
        artifact: ``.tflite``, ``.onnx``, ``.keras``/``.h5`` or an edgetl run folder.
        data_dir: labelled image folder; its classes must be among the model's.
        against: a float reference model; adds top-1 agreement and the accuracy drop.

    Raises:
        ArtifactError, DataError: unusable model or folder.
    """
    predict, info, kind = load_predictor(artifact, num_threads=num_threads, trust_model=trust_model)
    images, skipped = load_eval_set(Path(data_dir), info.contract.input_size, class_names=info.class_names, strict=strict, resize=info.contract.resize)
    metrics, probs = evaluate_predictor(predict, images.x, images.y, info.class_names)
    report = EvalReport(str(artifact), kind, metrics, [str(s.path) for s in skipped])
    if against is not None:
        ref_predict, ref_info, ref_kind = load_predictor(against, trust_model=trust_model)
        if ref_info.class_names != info.class_names:
            raise DataError(f"{against} has classes {ref_info.class_names}, {artifact} has {info.class_names}; compare models of the same task")
        ref_pixels = images.x
        if ref_info.contract.input_size != info.contract.input_size:
            ref_pixels, _ = load_eval_set(Path(data_dir), ref_info.contract.input_size, class_names=ref_info.class_names, strict=strict, resize=ref_info.contract.resize)
            ref_pixels = ref_pixels.x
        ref_metrics, ref_probs = evaluate_predictor(ref_predict, ref_pixels, images.y, ref_info.class_names)
        report.against = {
            "artifact": str(against),
            "kind": ref_kind,
            "top1": ref_metrics.top1,
            "top1_agreement": agreement(probs, ref_probs),
            "top1_drop": ref_metrics.top1 - metrics.top1,
        }
    return report
