"""Stage functions that take artifacts on disk, as the CLI and notebooks use them.

``train``, ``qat`` and ``build`` live in their own modules; this module adds ``export_model``,
which turns a trained run folder into a verified artifact folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.errors import ConfigError
from edgetl.core.fingerprint import fingerprint
from edgetl.core.metadata import read_model_info
from edgetl.core.types import IODType, QuantMode
from edgetl.export import TARGETS

log = logging.getLogger(__name__)


def export_model(
    model: Path,
    target: str,
    *,
    data: Path | None = None,
    out: Path | None = None,
    io_dtype: IODType = IODType.int8,
    samples: int = 200,
    force: bool = False,
    opset: int = 17,
    trust_model: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export a float or QAT run folder to ``target``, verified on the run's validation split.

    A float model exported to ``tflite-int8`` is post-training quantized with ``samples``
    training images; a QAT model keeps the ranges it learned.

    Args:
        model: an ``edgetl train`` or ``edgetl qat`` output folder.
        target: ``tflite-int8``, ``tflite-fp16``, ``tflite-fp32``, ``onnx-int8`` or ``onnx-fp32``.
        opset: ONNX opset for ``onnx-*`` targets.
        trust_model: load the Keras model even if it carries code (Lambda layers); see
            :mod:`edgetl.ml.keras_safety`.
        data: the training images (default: the folder recorded in the run).
        out: output folder (default: ``<model>-<target>`` beside the run).

    Returns:
        The artifact path and its metadata.

    Raises:
        ConfigError, ArtifactError, DataError, ExportError, OutputExistsError.
    """
    from edgetl.data.images import load_split
    from edgetl.ml.qat import load_keras_artifact, representative_images
    from edgetl.pipeline.build import export_artifact, verify_artifact

    spec = TARGETS.get(target)
    if spec.format == "onnx":
        from edgetl.export.onnx import check_opset

        check_opset(opset)
    model = Path(model)
    info = read_model_info(model)
    kind = info.extra.get("kind")
    if kind not in ("keras-float", "keras-qat"):
        raise ConfigError(f"{model} is a {kind!r} artifact; export takes a `edgetl train` or `edgetl qat` run folder")
    if kind == "keras-qat" and spec.dtype != "int8":
        raise ConfigError(f"{model} is a QAT model, which exports to int8 targets only (tflite-int8, onnx-int8); export the float run for {target}")
    run_config = dict(info.extra.get("config", {}))
    if data is not None:
        run_config.setdefault("data", {})["path"] = str(data)
    run_config.setdefault("export", {})
    run_config["export"].update({"io_dtype": IODType(io_dtype).value, "representative_samples": samples, "opset": opset})
    run_config["target"] = target
    config = BuildConfig.model_validate(run_config)
    if config.data.path is None:
        raise ConfigError("export needs the training images (calibration and verification): pass --data DIR")
    split = load_split(config.data, info.contract.input_size)
    if split.class_names != info.class_names:
        raise ConfigError(f"--data has classes {split.class_names}, the model {info.class_names}; pass the folder it was trained on")

    out = Path(out) if out is not None else model.with_name(f"{model.name}-{target}")
    export_fp = fingerprint({"stage": "export", "source": info.extra.get("fingerprint"), "target": target, "export": config.export.model_dump(mode="json")})
    keras_model, _ = load_keras_artifact(model, trust_model=trust_model)  # refused before any output folder exists
    _fs.check_output_dir(out, export_fp, force=force, what="export")  # a forced export replaces `out` only when complete (atomic_dir)
    mode = None
    if spec.dtype == "int8":
        mode = QuantMode.qat if kind == "keras-qat" else QuantMode.ptq
    with _fs.atomic_dir(out) as staging:
        artifact, meta = export_artifact(
            keras_model, target, staging, class_names=info.class_names, contract=info.contract,
            representative=representative_images(split, samples, config.data.seed), config=config, write_marker=False,
        )
        verification, artifact_probs = verify_artifact(artifact, spec, keras_model, split.val.x, info.contract)
        from edgetl.device.evaluate import compute_metrics

        metrics = compute_metrics(artifact_probs, split.val.y, info.class_names)
        meta.update(
            {
                "fingerprint": export_fp,
                "quantization_mode": mode.value if mode else None,
                "source_model": str(model),
                "accuracy": {"split": "validation", "images": int(len(split.val.y)), "artifact_top1": metrics.top1, "source_keras_top1": info.extra.get("val_accuracy")},
                "verification": verification,
            }
        )
        _fs.write_json(staging / _fs.MARKER, meta)
    return out / spec.filename, meta
