"""A build's side measurements beside its artifact: a short latency check, the int8 companion
(the same int8 model in the other format), the PTQ comparison (what QAT bought) and the choice
of the int8 model a build ships (:func:`choose_int8`)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.harness import bench_in_process
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.device.evaluate import compute_metrics
from edgetl.export.onnx import export_onnx, onnx_graph_summary
from edgetl.export.run import VerifiedExport, export_verified
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.runtime.formats import open_model
from edgetl.runtime.litert import op_report


def quick_latency(artifact: Path, config: BuildConfig) -> list[dict[str, Any]]:
    """A short in-process latency check of a .tflite (LiteRT) or .onnx (ONNX Runtime) file,
    timed by the measurement ``edgetl bench`` uses (:func:`edgetl.bench.harness.bench_in_process`)."""
    threads, warmup, runs = config.bench.resolved_threads, config.bench.warmup, config.bench.runs
    results = [r.to_dict() for r in bench_in_process(artifact, threads=threads, warmup=warmup, runs=runs)]
    for entry in results:  # the path the file will have, not the staged folder it is timed in
        entry["artifact"] = str(_fs.final_path(Path(entry["artifact"])))
    return results


def companion_artifact(
    artifact: Path, target: TargetSpec, folder: Path, class_names: list[str], contract: PreprocessContract,
    config: BuildConfig, pixels: np.ndarray, labels: np.ndarray, float_probs: np.ndarray, artifact_probs: np.ndarray,
) -> dict[str, Any]:
    """The int8 model in the other format, beside the target: ``model.onnx`` for a ``tflite-int8``
    build (rewritten from the TFLite file), ``model.tflite`` for ``onnx-int8`` (its source).
    Both carry the same scales; this measures how well they agree, and each one's accuracy and speed."""
    other = TARGETS.get("onnx-int8" if target.format == "tflite" else "tflite-int8")
    path = Path(folder) / other.filename
    details = None
    if other.format == "onnx":
        path, details = export_onnx(other.name, path, tflite_int8=artifact, class_names=class_names, contract=contract, opset=config.export.opset)
    probs = open_model(path).predict(contract.normalize(pixels))
    hits = np.argmax(probs, 1)
    result = {
        "target": other.name,
        "file": other.filename,
        "runtime": other.runtime,
        "size_bytes": path.stat().st_size,
        "artifact_top1": compute_metrics(probs, labels, class_names).top1,
        "top1_agreement_with_float": float(np.mean(hits == np.argmax(float_probs, 1))) if len(pixels) else float("nan"),
        "top1_agreement_with_target": float(np.mean(hits == np.argmax(artifact_probs, 1))) if len(pixels) else float("nan"),
        "max_abs_diff_with_target": float(np.abs(probs - artifact_probs).max()) if len(pixels) else 0.0,
        "latency": quick_latency(path, config),
    }
    if details is not None:
        result["graph"] = onnx_graph_summary(details, other)
        result["onnx"] = {k: v for k, v in details.items() if k != "graph"}
    else:
        result["graph"] = op_report(path)
    return result


def compare_ptq(
    float_model, target: TargetSpec, out_dir: Path, class_names: list[str], contract: PreprocessContract,
    representative: np.ndarray, split, config: BuildConfig, float_metrics, *, staging: Path | None = None,
) -> tuple[dict[str, Any], VerifiedExport]:
    """Post-training int8 of the float model, beside the QAT artifact, so the report can show
    what QAT bought (and the build can ship it when it is better: :func:`choose_int8`). Written to
    ``<name>/ptq-int8/`` with its own metadata (into ``staging``, a temporary folder that replaces
    ``out_dir`` later, when given).

    Returns:
        The comparison for the build's ``edgetl.json``, and the verified export (its metadata as
        the exporter made it, before this folder's own fields were stamped).
    """
    with _fs.atomic_dir(out_dir) if staging is None else contextlib.nullcontext(staging) as staging:
        exported = export_verified(
            float_model, target.name, staging, class_names=class_names, contract=contract,
            representative=representative, config=config, pixels=split.val.x,
        )
        verification = exported.verification
        metrics = compute_metrics(exported.probs, split.val.y, class_names)
        result = {
            "artifact": str(out_dir / target.filename),
            "artifact_top1": metrics.top1,
            "artifact_top5": metrics.top5,
            "top1_drop": float_metrics.top1 - metrics.top1,
            "top1_agreement_with_float": verification["top1_agreement"],
            "size_bytes": exported.metadata["size_bytes"],
        }
        unstamped = dataclasses.replace(exported, metadata=copy.deepcopy(exported.metadata))
        exported.stamp({"quantization_mode": "ptq", "accuracy": result, "verification": verification})
    return result, unstamped


#: Two accuracies closer than this are a tie (both are counts over the same images).
_TIE = 1e-9


def choose_int8(qat_top1: float | None, ptq_top1: float | None, images: int, *, mode: str = "qat") -> dict[str, Any]:
    """Which int8 model a build ships, and why: the one with the higher top-1 on the validation split;
    QAT on a tie (its ranges were trained for int8 rounding). Without a PTQ comparison (``[export]
    compare_ptq = false``) QAT ships; with ``--mode ptq`` PTQ does.

    Returns:
        ``accuracy.int8_choice`` of ``edgetl.json``: ``shipped`` (``qat`` or ``ptq``), ``reason``
        (one sentence), the split, its image count and both top-1s (None when not measured).
    """
    def pct(value: float) -> str:
        return f"{100 * value:.1f}%"

    if mode == "ptq":
        shipped, reason = "ptq", "PTQ int8 ships because the build ran with --mode ptq (no QAT)"
    elif ptq_top1 is None or qat_top1 is None:
        shipped, reason = "qat", "QAT int8 ships; it was not compared with PTQ int8 ([export] compare_ptq = false)"
    elif ptq_top1 > qat_top1 + _TIE:
        shipped = "ptq"
        reason = (
            f"PTQ int8 ships because its top-1 on the {images} validation images, {pct(ptq_top1)}, is higher than "
            f"QAT int8's {pct(qat_top1)}; the QAT model stays in qat/ (`edgetl export` it to ship it anyway)"
        )
    elif qat_top1 > ptq_top1 + _TIE:
        shipped = "qat"
        reason = f"QAT int8 ships because its top-1 on the {images} validation images, {pct(qat_top1)}, is higher than PTQ int8's {pct(ptq_top1)}"
    else:
        shipped = "qat"
        reason = f"QAT int8 ships: it ties with PTQ int8 at {pct(qat_top1)} top-1 on the {images} validation images, and a tie goes to QAT"
    return {"shipped": shipped, "reason": reason, "split": "validation", "images": int(images), "qat_int8_top1": qat_top1, "ptq_int8_top1": ptq_top1}


def ship_instead(other: VerifiedExport, staging: Path) -> VerifiedExport:
    """Put the files of the verified export ``other`` (the PTQ model) in the build's target folder
    ``staging`` in place of what the first export wrote there; ``edgetl.json`` is written later,
    by the build, from the returned export's metadata."""
    staging = Path(staging)
    for entry in staging.iterdir():  # only the first export's files so far: nothing else is written yet
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in Path(other.folder).iterdir():
        if entry.name != _fs.MARKER and entry.is_file():
            shutil.copy2(entry, staging / entry.name)
    return dataclasses.replace(other, artifact=staging / Path(other.artifact).name, folder=staging, metadata=copy.deepcopy(other.metadata))
