"""Export targets, registered by name. Each declares its format, dtype and runtime as data;
the converter module is imported only when a target is used."""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.core.registry import Registry


@dataclass(frozen=True)
class TargetSpec:
    """An export target.

    Attributes:
        name: ``tflite-int8`` etc.
        format: file family (``tflite``, ``onnx``).
        dtype: numeric type of weights/compute (``int8``, ``fp16``, ``fp32``).
        runtime: runtime that runs and verifies it (``litert``, ``onnxruntime``).
        filename: file name inside the target's output folder.
        needs_quantized_model: True when the QAT model (or PTQ calibration) feeds it.
        note: what users should know (speed caveats, for instance).
    """

    name: str
    format: str
    dtype: str
    runtime: str
    filename: str
    needs_quantized_model: bool = False
    note: str = ""


TARGETS: Registry[TargetSpec] = Registry("target")

for _spec in (
    TargetSpec("tflite-int8", "tflite", "int8", "litert", "model.tflite", True,
               "full-integer int8 (int8 or uint8 input/output); fastest on CPUs, NPUs and microcontrollers"),
    TargetSpec("tflite-fp16", "tflite", "fp16", "litert", "model.tflite", False,
               "fp16 weights (half the size); on x86 CPUs it runs at fp32 speed"),
    TargetSpec("tflite-fp32", "tflite", "fp32", "litert", "model.tflite", False,
               "float32 reference"),
    TargetSpec("onnx-int8", "onnx", "int8", "onnxruntime", "model.onnx", True,
               "QDQ int8 with the int8 TFLite model's (QAT) scales, rewritten so ONNX Runtime fuses int8 kernels"),
    TargetSpec("onnx-fp32", "onnx", "fp32", "onnxruntime", "model.onnx", False,
               "float32 ONNX for ONNX Runtime and other ONNX tools"),
):
    TARGETS.register(_spec.name, _spec)
