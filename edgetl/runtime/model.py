"""What every loaded model offers, whichever runtime runs it: :class:`TensorInfo` and :class:`LoadedModel`.

:class:`~edgetl.runtime.litert.LiteRTModel` (``.tflite``) and :class:`~edgetl.runtime.onnxruntime.ORTModel`
(``.onnx``) both satisfy :class:`LoadedModel`, so evaluation, prediction, benchmarking and packaging
work on either without asking which it is (:func:`edgetl.runtime.formats.open_model` opens the right one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor as the interpreter declares it.

    Attributes:
        name: tensor name in the model.
        shape: current shape (batch first).
        dtype: numpy dtype name: ``"float32"``, ``"int8"``, ``"uint8"``, ...
        scale: quantization scale; ``0.0`` when the tensor is not quantized.
        zero_point: quantization zero point; ``0`` when not quantized.
        index: the interpreter's tensor index.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    index: int = -1

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(np.dtype(self.dtype), np.integer)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data


@runtime_checkable
class LoadedModel(Protocol):
    """A model file loaded into a runtime, ready to run.

    Attributes:
        path: the model file.
        runtime: the runtime's registry name (``"litert"``, ``"onnxruntime"``).
        size_bytes: the file's size.
        num_threads: threads asked for; None: the runtime's default.
        inputs: the input tensors, in order (dynamic dimensions as ``-1``).
        outputs: the output tensors, in order.
        declared_shapes: each input's shape as the file declares it (dynamic dimensions by name or ``"?"``).
    """

    path: Path
    runtime: str
    size_bytes: int
    num_threads: int | None
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    declared_shapes: list[tuple[int | str, ...]]

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Float32 outputs of a single-input, single-output model for a preprocessed batch of any size."""
        ...

    def invoke_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Raw outputs for raw inputs (the model's own dtypes and shapes)."""
        ...

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """A preprocessed float batch -> the single input tensor's raw values (quantized or cast), as :meth:`predict` feeds them."""
        ...

    def from_output(self, out: np.ndarray) -> np.ndarray:
        """The single output tensor's raw values -> float32 (dequantized), as :meth:`predict` returns them."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: path, size, runtime and its version, inputs, outputs."""
        ...
