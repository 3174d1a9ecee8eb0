"""A build's side measurements beside its artifact: a short latency check, the int8 companion
(the same int8 model in the other format) and the PTQ comparison (what QAT bought)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.harness import bench_in_process
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.device.evaluate import compute_metrics
from edgetl.export.onnx import export_onnx, onnx_graph_summary
from edgetl.export.run import export_verified
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.runtime.formats import open_model
from edgetl.runtime.litert import op_report


def quick_latency(artifact: Path, config: BuildConfig) -> list[dict[str, Any]]:
    """A short in-process latency check of a .tflite (LiteRT) or .onnx (ONNX Runtime) file,
    timed by the measurement ``edgetl bench`` uses (:func:`edgetl.bench.harness.bench_in_process`)."""
    threads, warmup, runs = config.bench.resolved_threads, config.bench.warmup, config.bench.runs
    return [r.to_dict() for r in bench_in_process(artifact, threads=threads, warmup=warmup, runs=runs)]


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
) -> dict[str, Any]:
    """Post-training int8 of the float model, beside the QAT artifact, so the report can show
    what QAT bought. Written to ``<name>/ptq-int8/`` with its own metadata (into ``staging``,
    a temporary folder that replaces ``out_dir`` later, when given)."""
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
        exported.stamp({"quantization_mode": "ptq", "accuracy": result, "verification": verification})
    return result
