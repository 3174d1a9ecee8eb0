"""``build``: train -> QAT -> export -> verify -> benchmark, into one output folder.

Layout of ``<out>/<name>/``::

    float/          the fine-tuned float model (a train run folder)
    qat/            the quantization-aware model (int8 targets, mode qat)
    <target>/       model.tflite, labels.txt, edgetl.json, report.md  <- what you ship

Each stage's folder records the fingerprint of the configuration (and image files) that made it,
so a second ``build`` that changes only later settings (target, QAT epochs, bench) reuses the
earlier stages instead of training again. ``--force`` starts over. A later stage's fingerprint
also covers the exact file of the model it was made from, so a stage left over from another run is
never reused. Every stage is written into a temporary sibling folder and the finished folders
replace the previous ones only when the whole build succeeds: an interrupted (or forced) build
leaves the previous complete build as it was. A lock on ``<out>/<name>`` refuses a second
concurrent build into the same folder.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError, VerificationError
from edgetl.core.fingerprint import after_parent, file_sha256, stage_fingerprints
from edgetl.core.metadata import SCHEMA_VERSION, package_versions, write_labels
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import QuantMode
from edgetl.export import TARGETS, TargetSpec

log = logging.getLogger(__name__)

#: fp32 TFLite must reproduce Keras to this tolerance; anything more is a converter bug.
FP32_TOLERANCE = 1e-4
#: Below this top-1 agreement with the model it came from, a quantized artifact gets a warning.
INT8_AGREEMENT_WARN = 0.9


@dataclass
class BuildResult:
    out_dir: Path
    artifact: Path
    target: str
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def build_name(config: BuildConfig) -> str:
    """The build's folder name under ``config.out``: ``config.name`` or the data folder's name.

    Raises:
        ConfigError: no name and no data folder, or a name that is not a single folder name.
    """
    from edgetl.core.config import check_path_component

    if config.name:
        return check_path_component(config.name, "name")
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    return check_path_component(Path(config.data.path).resolve().name or "model", "build name (the data folder's name; pass --name to choose one)")


def check_build(config: BuildConfig) -> TargetSpec:
    """Every cheap check, before any training: target, backbone, size, alpha, weights, data path."""
    from edgetl.ml.backbones import BACKBONES, resolve_weights
    from edgetl.ml.train import resolve_model_options

    target = TARGETS.get(config.target)
    spec, input_size, alpha = resolve_model_options(config)
    if target.name not in spec.targets:
        raise ConfigError(f"{spec.name} does not support target {target.name}; it supports {', '.join(spec.targets)}")
    resolve_weights(BACKBONES.get(config.model.name), config.model.weights, alpha, input_size)
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    from edgetl.package.stage import check_build_packaging  # [package]: a package the target cannot make fails here

    check_build_packaging(config)
    return target


def _reusable(folder: Path, stage_fp: str, model_file: str) -> bool:
    marker = folder / _fs.MARKER
    if not (marker.is_file() and (folder / model_file).is_file()):
        return False
    try:
        return _fs.read_json(marker).get("fingerprint") == stage_fp
    except (OSError, ValueError):
        return False


def tflite_io_details(path: Path) -> dict[str, Any]:
    """Input/output tensor facts of a .tflite file for the metadata (LiteRT, no TF)."""
    from edgetl.runtime.litert import LiteRTModel, op_report

    model = LiteRTModel(path)
    graph = op_report(path)
    return {
        "inputs": [vars(t) | {"shape": list(t.shape)} for t in model.inputs],
        "outputs": [vars(t) | {"shape": list(t.shape)} for t in model.outputs],
        "graph": graph,
    }


def onnx_io_details(path: Path) -> dict[str, Any]:
    """Input/output tensor facts of a .onnx file (ONNX Runtime, no TF)."""
    from edgetl.runtime.onnxruntime import ORTModel

    model = ORTModel(path)
    return {
        "inputs": [vars(t) | {"shape": list(t.shape)} for t in model.inputs],
        "outputs": [vars(t) | {"shape": list(t.shape)} for t in model.outputs],
    }


def verify_artifact(
    artifact: Path, target: TargetSpec, reference, pixels: np.ndarray, contract: PreprocessContract
) -> tuple[dict[str, Any], np.ndarray]:
    """Run the reference Keras model and the artifact on the same images; compare.

    fp32 must match to ``FP32_TOLERANCE`` (else :class:`VerificationError`, listing every
    mismatch at once); quantized artifacts report their top-1 agreement and max difference.

    Returns:
        The comparison, and the artifact's probabilities (for its accuracy, without a second run).
    """
    from edgetl.device.evaluate import open_model
    from edgetl.ml.train import predict_pixels

    ref = predict_pixels(reference, pixels, contract)
    out = open_model(artifact).predict(contract.normalize(pixels))
    diff = np.abs(ref - out)
    result = {
        "images": int(len(pixels)),
        "top1_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1))) if len(pixels) else float("nan"),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
    }
    if target.dtype == "fp32" and diff.size and diff.max() > FP32_TOLERANCE:
        bad = np.nonzero(diff.max(axis=1) > FP32_TOLERANCE)[0]
        raise VerificationError(
            f"{artifact} differs from the Keras model on {len(bad)} of {len(pixels)} images (max |diff| {diff.max():.2e} > {FP32_TOLERANCE}); "
            "the converter changed the model: report it with the model's backbone and versions"
        )
    if target.dtype != "fp32" and result["top1_agreement"] < INT8_AGREEMENT_WARN:
        log.warning("%s agrees with its source model on only %.1f%% of validation images", artifact, 100 * result["top1_agreement"])
    return result, out


def export_artifact(
    model,
    target_name: str,
    out_dir: Path,
    *,
    class_names: list[str],
    contract: PreprocessContract,
    representative: np.ndarray | None,
    config: BuildConfig,
    extra_metadata: dict[str, Any] | None = None,
    write_marker: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Convert ``model`` for ``target_name`` into ``out_dir`` with labels and metadata.

    Returns:
        The artifact path and the metadata written to ``edgetl.json``.
    """
    from edgetl.export.onnx import export_onnx
    from edgetl.export.tflite import export_tflite

    target = TARGETS.get(target_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_details = None
    quantization = None
    if target.dtype == "int8" and representative is not None:
        from edgetl.ml.quantize import graph_ptq_model, is_quantized

        if is_quantized(model):
            quantization = "learned in quantization-aware training"
        else:
            graph_ptq = graph_ptq_model(model, representative, contract)
            quantization = (
                f"TFLite converter calibration on {len(representative)} training images" if graph_ptq is None
                else f"calibrated on {len(representative)} training images through the QAT graph (hard-swish kept as int8 ADD/MUL, which XNNPACK runs)"
            )
            model = graph_ptq if graph_ptq is not None else model
    if target.format == "tflite":
        artifact = export_tflite(
            model, target.name, out_dir / target.filename, class_names=class_names,
            representative=representative, contract=contract, io_dtype=config.export.io_dtype,
        )
        io = tflite_io_details(artifact)
    elif target.dtype == "int8":
        # The int8 TFLite model carries the QAT ranges and int8 per-channel weights; the ONNX model
        # is rewritten from it, so both formats share the same scales (and both ship).
        tflite = export_tflite(
            model, "tflite-int8", out_dir / TARGETS.get("tflite-int8").filename, class_names=class_names,
            representative=representative, contract=contract, io_dtype=config.export.io_dtype,
        )
        artifact, onnx_details = export_onnx(target.name, out_dir / target.filename, tflite_int8=tflite, class_names=class_names, contract=contract, opset=config.export.opset)
        io = onnx_io_details(artifact)
    else:
        artifact, onnx_details = export_onnx(target.name, out_dir / target.filename, model=model, class_names=class_names, contract=contract, opset=config.export.opset)
        io = onnx_io_details(artifact)
    if onnx_details is not None:
        io["graph"] = onnx_graph_summary(onnx_details, target)
        io["onnx"] = {k: v for k, v in onnx_details.items() if k != "graph"}
    write_labels(out_dir / "labels.txt", class_names)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": target.format,
        "target": target.name,
        "model_file": target.filename,
        "dtype": target.dtype,
        "runtime": target.runtime,
        "backbone": config.model.name,
        "class_names": class_names,
        "preprocessing": contract.to_dict(),
        **io,
        "size_bytes": artifact.stat().st_size,
        **({"int8_ranges": quantization} if quantization else {}),
        "note": target.note,
        "versions": package_versions(),
        "config": config.to_toml_dict(),
        **(extra_metadata or {}),
    }
    if target.dtype == "int8" and not meta["graph"]["full_integer"]:
        names = sorted({op["op"] for op in meta["graph"]["float_ops"]})
        meta["graph"]["float_ops_reason"] = "the converter found no int8 kernel for these ops and kept them in float"
        log.warning("%s is not full-integer: float ops %s", artifact, ", ".join(names))
    if write_marker:
        _fs.write_json(out_dir / _fs.MARKER, meta)
    return artifact, meta


def onnx_graph_summary(details: dict[str, Any], target: TargetSpec) -> dict[str, Any]:
    """The ``graph`` block of an ONNX artifact: op counts, and how ONNX Runtime runs its convolutions."""
    graph = dict(details["graph"])
    if target.dtype == "int8":
        graph["full_integer"] = graph["convs"] == graph["int8_convs"] and graph["float_convs_after_optimization"] == 0
        graph["float_ops"] = [] if graph["full_integer"] else [{"op": "Conv", "count": graph["float_convs_after_optimization"]}]
    return graph


def quick_latency(artifact: Path, config: BuildConfig) -> list[dict[str, Any]]:
    """A short in-process latency check of a .tflite (LiteRT) or .onnx (ONNX Runtime) file."""
    from edgetl.bench.harness import BenchResult, bench_tflite, summarize, synthetic_input, time_calls
    from edgetl.device.evaluate import open_model

    threads, warmup, runs = config.bench.resolved_threads, config.bench.warmup, config.bench.runs
    if Path(artifact).suffix != ".onnx":
        return [r.to_dict() for r in bench_tflite(artifact, threads=threads, warmup=warmup, runs=runs)]
    results = []
    for count in threads:
        model = open_model(artifact, num_threads=count)
        rng = np.random.default_rng(0)
        # batch 1: the symbolic batch dimension (and any other unknown one) is set to 1
        inputs = [synthetic_input([d if isinstance(d, int) and d > 0 else 1 for d in info.shape], info.dtype, rng) for info in model.inputs]
        samples = time_calls(lambda m=model, x=inputs: m.invoke_raw(x), warmup=warmup, runs=runs)
        results.append(BenchResult(
            artifact=str(artifact), runtime=model.runtime, threads=int(count), stats=summarize(samples, warmup),
            input_shapes=[list(x.shape) for x in inputs], model_size_bytes=Path(artifact).stat().st_size,
            runtime_version=str(getattr(model, "version", "unknown")),
        ).to_dict())
    return results


def build(config: BuildConfig, *, force: bool = False, progress: Progress = log_progress, trust_model: bool = False) -> BuildResult:
    """Run the whole pipeline for ``config.target`` and write ``<out>/<name>/<target>/``.

    The stages write temporary sibling folders; the previous build's folders are replaced only
    when every stage has succeeded, so an interrupted build (``--force`` too) leaves them intact.

    Raises:
        ConfigError, DataError, OutputExistsError (also: another process is writing the same
        ``<out>/<name>``), ExportError, VerificationError.
    """
    target = check_build(config)
    root = Path(config.out) / build_name(config)
    from edgetl.ml.train import deterministic_ops

    # trust_model: the Keras models of earlier builds reused from <out>/<name> load without the code check
    with _fs.output_lock(root), _fs.staged_dirs() as stage, deterministic_ops(config.train.deterministic):
        return _build_stages(config, target, root, stage, force=force, progress=progress, trust_model=trust_model)


def _build_stages(
    config: BuildConfig, target: TargetSpec, root: Path, stage: Callable[[Path], Path], *, force: bool, progress: Progress,
    trust_model: bool = False,
) -> BuildResult:
    """The body of :func:`build`; ``stage(folder)`` gives the temporary folder that replaces ``folder`` at the end."""
    from edgetl.bench.harness import machine_info
    from edgetl.ml.qat import QAT_MODEL_FILE, load_keras_artifact, qat, representative_images
    from edgetl.ml.train import MODEL_FILE, train

    fps = stage_fingerprints(config)
    target_dir = root / target.name
    _fs.check_output_dir(target_dir, fps["export"], force=force, what="build")  # refuse before training
    timings: dict[str, float] = {}

    start = time.perf_counter()
    float_dir = root / "float"
    if not force and _reusable(float_dir, fps["train"], MODEL_FILE):
        log.info("reusing the float model in %s (same data and training settings)", float_dir)
        from edgetl.data.images import load_split

        float_model, info = load_keras_artifact(float_dir, trust_model=trust_model)
        class_names, contract = info.class_names, info.contract
        split = load_split(config.data, contract.input_size)
        float_file = float_dir / MODEL_FILE
    else:
        trained = train(config, stage(float_dir), force=True, progress=progress, run_fingerprint=fps["train"])
        float_model, class_names, contract, split = trained.model, trained.class_names, trained.contract, trained.split
        float_file = Path(trained.out_dir) / MODEL_FILE
    qat_fp = after_parent(fps["qat"], float_file)  # a QAT folder made from another float model is stale
    timings["train_s"] = time.perf_counter() - start

    quant_model, quant_acc, mode = None, None, None
    start = time.perf_counter()
    if target.needs_quantized_model:
        mode = QuantMode(config.qat.mode)
        qat_dir = root / "qat"
        if mode is QuantMode.qat and not force and _reusable(qat_dir, qat_fp, QAT_MODEL_FILE):
            log.info("reusing the QAT model in %s", qat_dir)
            quant_model, _ = load_keras_artifact(qat_dir, trust_model=trust_model)
            from edgetl.ml.train import accuracy

            quant_acc = accuracy(quant_model, split.val, contract)
        else:
            float_copy = _clone(float_model)
            result = qat(
                config, float_copy, class_names=class_names, contract=contract, split=split,
                out_dir=stage(qat_dir) if mode is QuantMode.qat else None, force=True, progress=progress,
                run_fingerprint=qat_fp,
            )
            quant_model, quant_acc = result.model, result.val_accuracy
    timings["qat_s"] = time.perf_counter() - start

    start = time.perf_counter()
    progress("export", 0, 1, target.name)
    source = quant_model if quant_model is not None else float_model
    representative = representative_images(split, config.export.representative_samples, config.data.seed)
    with contextlib.nullcontext(stage(target_dir)) as staging:  # replaces target_dir when build() completes
        artifact, meta = export_artifact(
            source, target.name, staging, class_names=class_names, contract=contract,
            representative=representative, config=config, write_marker=False,
        )
        progress("export", 1, 1, target.name)
        timings["export_s"] = time.perf_counter() - start

        start = time.perf_counter()
        progress("verify", 0, 1, "")
        verification, artifact_probs = verify_artifact(artifact, target, source, split.val.x, contract)
        from edgetl.device.evaluate import compute_metrics
        from edgetl.ml.train import predict_pixels

        artifact_metrics = compute_metrics(artifact_probs, split.val.y, class_names)
        float_probs = predict_pixels(float_model, split.val.x, contract)
        float_metrics = compute_metrics(float_probs, split.val.y, class_names)
        progress("verify", 1, 1, "")
        timings["verify_s"] = time.perf_counter() - start

        start = time.perf_counter()
        progress("benchmark", 0, 1, "LiteRT")
        latency = quick_latency(artifact, config)
        progress("benchmark", 1, 1, "")
        timings["bench_s"] = time.perf_counter() - start

        companion = None
        if target.dtype == "int8" and config.export.companion:
            progress("companion", 0, 1, "the same int8 model in the other format")
            companion = companion_artifact(artifact, target, staging, class_names, contract, config, split.val.x, split.val.y, float_probs, artifact_probs)
            progress("companion", 1, 1, "")

        ptq = None
        if mode is QuantMode.qat and config.export.compare_ptq:
            progress("PTQ comparison", 0, 1, "int8 from the float model, calibrated")
            ptq_dir = root / "ptq-int8"
            ptq = compare_ptq(float_model, target, ptq_dir, class_names, contract, representative, split, config, float_metrics, staging=stage(ptq_dir))
            progress("PTQ comparison", 1, 1, "")
        accuracy_block = {
            "split": "validation",
            "images": int(len(split.val.y)),
            "float_top1": float_metrics.top1,
            "float_top5": float_metrics.top5,
            "artifact_top1": artifact_metrics.top1,
            "artifact_top5": artifact_metrics.top5,
            "top1_drop": float_metrics.top1 - artifact_metrics.top1,
            "top1_agreement_with_source": verification["top1_agreement"],
            "top1_agreement_with_float": float(np.mean(np.argmax(float_probs, 1) == np.argmax(artifact_probs, 1))) if len(float_probs) else float("nan"),
            "source": "qat" if mode is QuantMode.qat else ("ptq-calibrated float" if mode is QuantMode.ptq else "float"),
            "source_keras_top1": quant_acc if quant_acc is not None else float_metrics.top1,
            "per_class": artifact_metrics.per_class,
            "confusion": artifact_metrics.confusion,
        }
        if ptq is not None:
            accuracy_block["ptq_comparison"] = ptq
        if companion is not None:
            accuracy_block["companion"] = companion
        meta.update(
            {
                "fingerprint": fps["export"],
                "stage_fingerprints": {"train": fps["train"], "qat": qat_fp if mode is QuantMode.qat else None, "float_model_sha256": file_sha256(float_file)},
                "name": root.name,
                "quantization_mode": mode.value if mode else None,
                "accuracy": accuracy_block,
                "verification": verification,
                "latency": latency,
                "machine": machine_info(),
                "timings_s": timings,
            }
        )
        # ---- packaging ([package] targets, `build --package c`): app bundles in <target>/package-<for>/ ----
        if config.package.targets:
            from edgetl.package.stage import package_build

            meta["packages"] = package_build(artifact, staging, config.package, metadata=meta, progress=progress)
        # ---- end of packaging ----
        from edgetl.pipeline.report import build_report

        _fs.write_text(staging / "report.md", build_report(meta))
        _fs.write_json(staging / _fs.MARKER, meta)
    final = target_dir / target.filename
    summary = {
        "artifact": str(final),
        "float_top1": float_metrics.top1,
        "artifact_top1": artifact_metrics.top1,
        "size_bytes": meta["size_bytes"],
        "latency": latency,
        "target": target.name,
        "source_keras_top1": accuracy_block["source_keras_top1"],
        "source": accuracy_block["source"],
        "ptq_top1": ptq["artifact_top1"] if ptq else None,
        "runtime": target.runtime,
        "companion": companion,
    }
    return BuildResult(target_dir, final, target.name, summary, timings)


def companion_artifact(
    artifact: Path, target: TargetSpec, folder: Path, class_names: list[str], contract: PreprocessContract,
    config: BuildConfig, pixels: np.ndarray, labels: np.ndarray, float_probs: np.ndarray, artifact_probs: np.ndarray,
) -> dict[str, Any]:
    """The int8 model in the other format, beside the target: ``model.onnx`` for a ``tflite-int8``
    build (rewritten from the TFLite file), ``model.tflite`` for ``onnx-int8`` (its source).
    Both carry the same scales; this measures how well they agree, and each one's accuracy and speed."""
    from edgetl.device.evaluate import compute_metrics, open_model
    from edgetl.export.onnx import export_onnx

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
        from edgetl.runtime.litert import op_report

        result["graph"] = op_report(path)
    return result


def _clone(model):
    """A copy with the same weights, so QAT never alters the float model still in use."""
    from edgetl.ml._keras import keras

    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def compare_ptq(
    float_model, target: TargetSpec, out_dir: Path, class_names: list[str], contract: PreprocessContract,
    representative: np.ndarray, split, config: BuildConfig, float_metrics, *, staging: Path | None = None,
) -> dict[str, Any]:
    """Post-training int8 of the float model, beside the QAT artifact, so the report can show
    what QAT bought. Written to ``<name>/ptq-int8/`` with its own metadata (into ``staging``,
    a temporary folder that replaces ``out_dir`` later, when given)."""
    from edgetl.device.evaluate import compute_metrics

    with _fs.atomic_dir(out_dir) if staging is None else contextlib.nullcontext(staging) as staging:
        artifact, meta = export_artifact(
            float_model, target.name, staging, class_names=class_names, contract=contract,
            representative=representative, config=config, write_marker=False,
        )
        verification, probs = verify_artifact(artifact, target, float_model, split.val.x, contract)
        metrics = compute_metrics(probs, split.val.y, class_names)
        result = {
            "artifact": str(out_dir / target.filename),
            "artifact_top1": metrics.top1,
            "artifact_top5": metrics.top5,
            "top1_drop": float_metrics.top1 - metrics.top1,
            "top1_agreement_with_float": verification["top1_agreement"],
            "size_bytes": meta["size_bytes"],
        }
        meta.update({"quantization_mode": "ptq", "accuracy": result, "verification": verification})
        _fs.write_json(staging / _fs.MARKER, meta)
    return result
