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

from edgetl.bench.harness import machine_info
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig, check_path_component
from edgetl.core.errors import ConfigError
from edgetl.core.fingerprint import after_parent, file_sha256, stage_fingerprints
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import QuantMode
from edgetl.data.split import load_split
from edgetl.device.evaluate import compute_metrics
from edgetl.export.run import export_verified
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.ml import qat as qat_stage  # the module: tests replace qat_stage.qat
from edgetl.ml._keras import keras
from edgetl.ml.backbones import resolve_weights
from edgetl.ml.backbones.spec import BACKBONES
from edgetl.ml.model_io import MODEL_FILE, accuracy, load_keras_artifact, predict_pixels
from edgetl.ml.train import deterministic_ops, resolve_model_options, train
from edgetl.pipeline.cache import reusable
from edgetl.pipeline.compare import companion_artifact, compare_ptq, quick_latency
from edgetl.pipeline.report import build_report

log = logging.getLogger(__name__)


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
    if config.name:
        return check_path_component(config.name, "name")
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    return check_path_component(Path(config.data.path).resolve().name or "model", "build name (the data folder's name; pass --name to choose one)")


def check_build(config: BuildConfig) -> TargetSpec:
    """Every cheap check, before any training: target, backbone, size, alpha, weights, data path."""
    target = TARGETS.get(config.target)
    spec, input_size, alpha = resolve_model_options(config)
    if target.name not in spec.targets:
        raise ConfigError(f"{spec.name} does not support target {target.name}; it supports {', '.join(spec.targets)}")
    resolve_weights(BACKBONES.get(config.model.name), config.model.weights, alpha, input_size)
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    from edgetl.package.stage import check_build_packaging  # [package]: a package the target cannot make fails here

    check_build_packaging(config.package.targets, target.name, target.format)
    return target


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
    # trust_model: the Keras models of earlier builds reused from <out>/<name> load without the code check
    with _fs.output_lock(root), _fs.staged_dirs() as stage, deterministic_ops(config.train.deterministic):
        return _build_stages(config, target, root, stage, force=force, progress=progress, trust_model=trust_model)


def _build_stages(
    config: BuildConfig, target: TargetSpec, root: Path, stage: Callable[[Path], Path], *, force: bool, progress: Progress,
    trust_model: bool = False,
) -> BuildResult:
    """The body of :func:`build`; ``stage(folder)`` gives the temporary folder that replaces ``folder`` at the end."""
    fps = stage_fingerprints(config)
    target_dir = root / target.name
    _fs.check_output_dir(target_dir, fps["export"], force=force, what="build")  # refuse before training
    timings: dict[str, float] = {}

    start = time.perf_counter()
    float_dir = root / "float"
    if not force and reusable(float_dir, fps["train"], MODEL_FILE):
        log.info("reusing the float model in %s (same data and training settings)", float_dir)
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
        if mode is QuantMode.qat and not force and reusable(qat_dir, qat_fp, qat_stage.QAT_MODEL_FILE):
            log.info("reusing the QAT model in %s", qat_dir)
            quant_model, _ = load_keras_artifact(qat_dir, trust_model=trust_model)
            quant_acc = accuracy(quant_model, split.val, contract)
        else:
            float_copy = _clone(float_model)
            result = qat_stage.qat(
                config, float_copy, class_names=class_names, contract=contract, split=split,
                out_dir=stage(qat_dir) if mode is QuantMode.qat else None, force=True, progress=progress,
                run_fingerprint=qat_fp,
            )
            quant_model, quant_acc = result.model, result.val_accuracy
    timings["qat_s"] = time.perf_counter() - start

    start = time.perf_counter()
    progress("export", 0, 1, target.name)
    source = quant_model if quant_model is not None else float_model
    representative = qat_stage.representative_images(split, config.export.representative_samples, config.data.seed)
    with contextlib.nullcontext(stage(target_dir)) as staging:  # replaces target_dir when build() completes
        exported = export_verified(
            source, target.name, staging, class_names=class_names, contract=contract,
            representative=representative, config=config, pixels=split.val.x, progress=progress,
        )
        artifact, meta, verification, artifact_probs = exported.artifact, exported.metadata, exported.verification, exported.probs
        timings["export_s"] = time.perf_counter() - start - exported.verify_s

        start = time.perf_counter() - exported.verify_s
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
            from edgetl.package.stage import package_build  # [package]: app bundles, only when a build packages

            meta["packages"] = package_build(artifact, staging, config.package, metadata=meta.to_json(), progress=progress)
        # ---- end of packaging ----
        _fs.write_text(staging / "report.md", build_report(meta.to_json()))
        exported.stamp()
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


def _clone(model):
    """A copy with the same weights, so QAT never alters the float model still in use."""
    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


