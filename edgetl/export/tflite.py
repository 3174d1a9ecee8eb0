"""Keras -> TFLite: full-integer int8, int16 activations with int8 weights (int16x8), dynamic-range
int8 weights, fp16 weights, fp32.

int8 conversion always gets a representative dataset of training images: PTQ needs it to
calibrate, and ``TFLITE_BUILTINS_INT8`` demands one even for a QAT model whose ranges are
already learned (then it only fills ranges tfmot does not track, e.g. the input). int16x8 is
calibrated the same way (its input and output stay float32); dynamic-range quantization stores
int8 weights and computes in float, so it takes no representative dataset.

The converter gets the model as one frozen inference function, not through
``TFLiteConverter.from_keras_model``: that one first writes the Keras model as a SavedModel,
tracing every layer's call functions for serialization, and loads it back, which was 90% of an
export's time (tiny MobileNetV2 QAT model: 43.7 s -> 4.2 s; float int8/fp32/fp16: 16-18 s -> 1.1 s).
The flatbuffers are op for op, tensor for tensor and weight for weight the same (checked in
``tests/unit/export/test_tflite_convert.py``); if freezing fails for some model, the SavedModel route is
used as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError, ConfigError, ExportError
from edgetl.core.metadata import EMBEDDED_METADATA_NAME, embedded_metadata
from edgetl.core.native_output import native_output_to_log
from edgetl.core.types import IODType
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.ml._keras import tf
from edgetl.runtime.tflite_file import add_tflite_metadata

log = logging.getLogger(__name__)

#: Target dtypes whose conversion calibrates activation ranges on representative images.
CALIBRATED_DTYPES = frozenset({"int8", "int16x8"})


def convert(
    model, target: str, *, representative: np.ndarray | None, contract: PreprocessContract, io_dtype: IODType = IODType.int8, route: str = "frozen"
) -> bytes:
    """Convert a Keras model (float or QAT) to TFLite bytes for ``target``.

    Args:
        model: tf_keras model whose input is the normalized float image.
        target: ``tflite-int8``, ``tflite-int16x8``, ``tflite-dynamic``, ``tflite-fp16`` or ``tflite-fp32``.
        representative: uint8 training images (N, H, W, C) for int8 and int16x8 calibration.
        contract: preprocessing applied to ``representative`` before calibration.
        io_dtype: int8 or uint8 input/output for ``tflite-int8``.
        route: ``"frozen"`` (one frozen inference function; the SavedModel route if that fails)
            or ``"savedmodel"`` (``from_keras_model`` only: the reference it is checked against).

    Raises:
        ConfigError: unknown target, or int8 without representative images.
        ExportError: the converter failed (first line of its message kept).
    """
    t = tf()
    spec = TARGETS.get(target)
    if spec.format != "tflite":
        raise ConfigError(f"target {target} is not a TFLite target")
    if spec.dtype in CALIBRATED_DTYPES and (representative is None or len(representative) == 0):
        raise ConfigError(f"{spec.dtype} export needs representative images: pass --data DIR (training images)")
    if route == "frozen":
        try:
            # a failure here is retried by the SavedModel route: its native output only at DEBUG
            return _convert(_frozen_converter(model), t, spec, representative, contract, io_dtype, target, native_error_level=logging.DEBUG)
        except Exception as exc:  # tracing/freezing errors come as many types; the SavedModel route decides
            log.info("converting the frozen inference function failed (%s); trying the SavedModel route", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    elif route != "savedmodel":
        raise ConfigError(f"unknown conversion route {route!r}: use 'frozen' or 'savedmodel'")
    return _convert(t.lite.TFLiteConverter.from_keras_model(model), t, spec, representative, contract, io_dtype, target)


def frozen_converter(model):
    """A ``TFLiteConverter`` over ``model(x, training=False)`` as one frozen concrete function (no SavedModel)."""
    return _frozen_converter(model)


def _frozen_converter(model):
    """A converter over ``model(x, training=False)`` as one concrete function, frozen (no SavedModel)."""
    t = tf()
    signature = [t.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs]
    function = t.function(lambda *inputs: model(inputs[0] if len(inputs) == 1 else list(inputs), training=False))
    converter = t.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function(*signature)], model)
    converter.experimental_lower_to_saved_model = False  # True would save ``model`` as a SavedModel again
    return converter


def representative_dataset(representative: np.ndarray, contract: PreprocessContract):
    """The converter's calibration generator: one normalized image at a time."""

    def gen():
        for i in range(len(representative)):
            yield [contract.normalize(representative[i : i + 1])]

    return gen


def _convert(converter, t, spec, representative, contract, io_dtype, target, native_error_level: int = logging.ERROR) -> bytes:
    if spec.dtype == "int8":
        converter.optimizations = [t.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(representative, contract)
        converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = t.int8 if IODType(io_dtype) is IODType.int8 else t.uint8
        converter.inference_input_type = io
        converter.inference_output_type = io
    elif spec.dtype == "int16x8":
        # int16 activations, int8 weights; the graph's input/output stay float32 (the ops set has no
        # int16 IO LiteRT's Python tools and apps expect, and `--io-dtype` speaks of int8/uint8 only)
        converter.optimizations = [t.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(representative, contract)
        converter.target_spec.supported_ops = [t.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif spec.dtype == "dynamic":
        # no representative dataset: with one, Optimize.DEFAULT would quantize activations too
        converter.optimizations = [t.lite.Optimize.DEFAULT]
    elif spec.dtype == "fp16":
        converter.optimizations = [t.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [t.float16]
    try:
        # the converter and its calibrator print from C++ ("fully_quantize: 0, inference_type: 6 ..."): to the log
        with native_output_to_log(f"TFLite conversion to {target}", level_on_error=native_error_level):
            return converter.convert()
    except Exception as exc:  # the converter raises ConverterError / RuntimeError / ValueError
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TFLite conversion to {target} failed: {first}") from None


def export_tflite(model, target: str, path: Path, *, class_names: list[str] | None = None, **kwargs) -> Path:
    """Convert and write atomically to ``path`` (a temp name until the bytes are complete).

    Args:
        class_names: the labels; when given, they and the preprocessing contract are embedded
            in the file (a ``Model.metadata`` entry named ``edgetl``), so the ``.tflite`` alone
            is enough for ``edgetl eval``/``predict`` and for apps.
        kwargs: passed to :func:`convert` (``representative``, ``contract``, ``io_dtype``).
    """
    data = convert(model, target, **kwargs)
    return write_tflite(data, path, target=target, class_names=class_names, contract=kwargs["contract"])


def write_tflite(data: bytes, path: Path, *, target: str, class_names: list[str] | None, contract: PreprocessContract) -> Path:
    """Write TFLite bytes atomically to ``path``, with the labels and ``contract`` embedded when
    ``class_names`` is given (see :func:`export_tflite`).

    Raises:
        ExportError: the metadata cannot be embedded.
    """
    if class_names is not None:
        payload = embedded_metadata(class_names, contract, target=target)
        try:
            data = add_tflite_metadata(data, EMBEDDED_METADATA_NAME, payload)
        except ArtifactError as exc:
            raise ExportError(f"cannot embed the labels and preprocessing contract in the {target} model: {exc}") from None
    _fs.write_bytes(Path(path), data)
    log.info("wrote %s (%d bytes, %s)", _fs.final_path(path), len(data), target)
    return Path(path)


def tflite_io_details(path: Path) -> dict[str, Any]:
    """Input/output tensor facts of a .tflite file for the metadata (LiteRT, no TF)."""
    from edgetl.runtime.litert import LiteRTModel, op_report  # [runtime]: LiteRT loads when a file is read

    model = LiteRTModel(path)
    graph = op_report(path)
    return {
        "inputs": [vars(t) | {"shape": list(t.shape)} for t in model.inputs],
        "outputs": [vars(t) | {"shape": list(t.shape)} for t in model.outputs],
        "graph": graph,
    }


def export_target(
    model, spec: TargetSpec, folder: Path, *, class_names: list[str], contract: PreprocessContract,
    representative: np.ndarray | None, io_dtype: IODType, opset: int,
) -> tuple[Path, dict[str, Any]]:
    """The exporter of every ``tflite-*`` target (see :class:`~edgetl.export.targets.TargetSpec`):
    ``<folder>/model.tflite`` and its tensor and op facts. ``opset`` is an ONNX option, unused here."""
    artifact = export_tflite(
        model, spec.name, Path(folder) / spec.filename, class_names=class_names,
        representative=representative, contract=contract, io_dtype=io_dtype,
    )
    return artifact, tflite_io_details(artifact)
