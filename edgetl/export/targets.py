"""Export targets, registered by name: each entry says everything dispatch needs (its format,
dtype and runtime, the exporter that writes it, and how the artifact is verified), so adding a
format is one entry here plus its exporter. The exporter's module is imported only when the
target is used (TensorFlow and tf2onnx load then, not at ``edgetl --help``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from edgetl.core.errors import ConfigError
from edgetl.core.registry import Registry

#: fp32 artifacts must reproduce Keras to this max |diff|; anything more is a converter bug.
FP32_TOLERANCE = 1e-4
#: Below this top-1 agreement with the model it came from, a quantized artifact gets a warning.
INT8_AGREEMENT_WARN = 0.9

#: ``verify`` kinds: the artifact must match within ``tolerance`` (a :class:`VerificationError` otherwise),
#: or it should agree on top-1 at least ``tolerance`` of the time (a warning otherwise).
MAX_ABS_DIFF = "max_abs_diff"
AGREEMENT = "agreement"


@dataclass(frozen=True)
class TargetSpec:
    """An export target.

    Attributes:
        name: ``tflite-int8`` etc.
        format: file family (``tflite``, ``onnx``).
        dtype: numeric type of weights/compute (``int8``, ``int16x8``, ``dynamic``, ``fp16``, ``fp32``).
        runtime: runtime that runs and verifies it (``litert``, ``onnxruntime``).
        filename: file name inside the target's output folder.
        needs_quantized_model: True when the QAT model (or PTQ calibration) feeds it.
        note: what users should know (speed caveats, for instance).
        exporter: ``"module:function"`` (or the function) that writes it:
            ``exporter(model, spec, folder, *, class_names, contract, representative, io_dtype, opset)``
            returns the artifact's path and its tensor/graph facts for ``edgetl.json``.
        verify: :data:`MAX_ABS_DIFF` (fp32: must match the Keras model) or :data:`AGREEMENT`
            (quantized: top-1 agreement reported, a warning below ``tolerance``).
        tolerance: the max |diff| allowed, or the agreement below which it warns.
    """

    name: str
    format: str
    dtype: str
    runtime: str
    filename: str
    needs_quantized_model: bool = False
    note: str = ""
    exporter: str | Callable = ""
    verify: str = AGREEMENT
    tolerance: float = INT8_AGREEMENT_WARN

    def export_function(self) -> Callable:
        """The exporter, its module imported now."""
        if callable(self.exporter):
            return self.exporter
        module, _, name = self.exporter.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"target {self.name}: exporter {self.exporter!r} cannot be loaded ({exc})") from None


TARGETS: Registry[TargetSpec] = Registry("target")

_TFLITE = "edgetl.export.tflite:export_target"
_ONNX = "edgetl.export.onnx:export_target"

for _spec in (
    TargetSpec("tflite-int8", "tflite", "int8", "litert", "model.tflite", True,
               "full-integer int8 (int8 or uint8 input/output); fastest on CPUs, NPUs and microcontrollers",
               exporter=_TFLITE, verify=AGREEMENT, tolerance=INT8_AGREEMENT_WARN),
    TargetSpec("tflite-int16x8", "tflite", "int16x8", "litert", "model.tflite", False,
               "int16 activations, int8 weights, calibrated on training images (float32 input/output); "
               "closer to float than int8 where activations have outliers, but LiteRT has no fast kernels for it (x86: ~20x slower than fp32)",
               exporter=_TFLITE, verify=AGREEMENT, tolerance=INT8_AGREEMENT_WARN),
    TargetSpec("tflite-dynamic", "tflite", "dynamic", "litert", "model.tflite", False,
               "dynamic-range quantization: int8 weights (a quarter of fp32's size), float activations, float32 input/output; "
               "on x86 CPUs (XNNPACK) it ran up to 4.6x slower than fp32",
               exporter=_TFLITE, verify=AGREEMENT, tolerance=INT8_AGREEMENT_WARN),
    TargetSpec("tflite-fp16", "tflite", "fp16", "litert", "model.tflite", False,
               "fp16 weights (half the size); on x86 CPUs it runs at fp32 speed",
               exporter=_TFLITE, verify=AGREEMENT, tolerance=INT8_AGREEMENT_WARN),
    TargetSpec("tflite-fp32", "tflite", "fp32", "litert", "model.tflite", False,
               "float32 reference",
               exporter=_TFLITE, verify=MAX_ABS_DIFF, tolerance=FP32_TOLERANCE),
    TargetSpec("onnx-int8", "onnx", "int8", "onnxruntime", "model.onnx", True,
               "QDQ int8 with the int8 TFLite model's (QAT) scales, rewritten so ONNX Runtime fuses int8 kernels",
               exporter=_ONNX, verify=AGREEMENT, tolerance=INT8_AGREEMENT_WARN),
    TargetSpec("onnx-fp32", "onnx", "fp32", "onnxruntime", "model.onnx", False,
               "float32 ONNX for ONNX Runtime and other ONNX tools",
               exporter=_ONNX, verify=MAX_ABS_DIFF, tolerance=FP32_TOLERANCE),
):
    TARGETS.register(_spec.name, _spec)
