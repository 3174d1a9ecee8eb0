"""Run ``.tflite`` models with LiteRT (``ai_edge_litert``), without TensorFlow.

This module must import on a device that has only numpy and ai-edge-litert, so it never
imports TensorFlow (``tf.lite.Interpreter`` is deprecated anyway; STACK.md).

Every model file is first verified by :func:`edgetl.runtime.tflite_file.verify_tflite_file` (a
bounds-checked walk of the flatbuffer) and then probed in a child process
(:func:`edgetl.runtime.isolation.probe_model`), so a corrupt or hostile file fails with one line
instead of crashing this process. :class:`LiteRTModel` satisfies
:class:`edgetl.runtime.model.LoadedModel`; :func:`op_report` lists the operators the interpreter
runs and which of them touch float tensors.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.core.native_output import native_output_to_log
from edgetl.runtime.isolation import probe_model
from edgetl.runtime.model import TensorInfo
from edgetl.runtime.tflite_file import verify_tflite_file

logger = logging.getLogger(__name__)

_DEFAULT_PREDICT_BATCH = 32


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _litert_version() -> str:
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source builds
        return "unknown"


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
        index=int(detail["index"]),
    )


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float model input -> the tensor's integer dtype with its own scale and zero point."""
    dtype = np.dtype(info.dtype)
    limits = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(info.scale)) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(dtype)


def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Integer tensor -> float32 with the tensor's scale and zero point."""
    return ((q.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)).astype(np.float32)


class LiteRTModel:
    """A ``.tflite`` model loaded into a reusable LiteRT interpreter.

    Args:
        path: the ``.tflite`` file; verified before loading.
        num_threads: interpreter threads; None: LiteRT's default (1).
        use_xnnpack: apply the default XNNPACK delegate (LiteRT's default).
        reference_kernels: run LiteRT's reference kernels (no delegate, no optimized kernels):
            the arithmetic TFLite Micro's kernels share, for bit-exact comparisons with it.

    Raises:
        ArtifactError: the file is not a valid model, or the interpreter cannot load it.
        ConfigError: ``num_threads`` is not a positive integer.
    """

    runtime = "litert"

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int | None = None, use_xnnpack: bool = True, reference_kernels: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = Path(path)
        self.size_bytes = len(verify_tflite_file(self.path))
        # a model that crashes LiteRT does so in a child, not here
        probe_model(self.path, runtime="litert", kernels="reference" if reference_kernels else "default")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"Received num_threads={num_threads!r}; pass a positive integer or None")
        self.num_threads = num_threads
        self.use_xnnpack = use_xnnpack
        resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if reference_kernels:
            resolver, self.use_xnnpack = OpResolverType.BUILTIN_REF, False
        try:
            # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ at the first
            # allocation: to the log. A load failure is reported in one line below; its native text at DEBUG.
            with native_output_to_log(f"LiteRT loading {self.path.name}", level_on_error=logging.DEBUG):
                self._interpreter = Interpreter(
                    model_path=str(self.path), num_threads=num_threads, experimental_op_resolver_type=resolver
                )
                self._interpreter.allocate_tensors()
            self._refresh_details()
        except (ValueError, RuntimeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"LiteRT cannot load {self.path}: {_one_line(exc)}") from None
        logger.debug("loaded %s: inputs %s, outputs %s", self.path, self.inputs, self.outputs)

    def _refresh_details(self) -> None:
        details = self._interpreter.get_input_details()
        self.inputs: list[TensorInfo] = [_tensor_info(d) for d in details]
        self.outputs: list[TensorInfo] = [_tensor_info(d) for d in self._interpreter.get_output_details()]
        # shape_signature marks dynamic dimensions with -1 (empty when the converter wrote none).
        self.declared_shapes: list[tuple[int | str, ...]] = [
            tuple("?" if int(s) < 0 else int(s) for s in d.get("shape_signature", ())) if len(d.get("shape_signature", ())) else tuple(int(s) for s in d["shape"])
            for d in details
        ]

    def resize_inputs(self, shapes: list[tuple[int, ...]]) -> None:
        """Give every input a concrete shape (one per input, in order) and re-plan the interpreter.

        Raises:
            DataError: wrong number of shapes, or LiteRT refuses a shape.
        """
        if len(shapes) != len(self.inputs):
            raise DataError(f"Received {len(shapes)} input shapes; {self.path} has {len(self.inputs)} inputs")
        if all(tuple(shape) == info.shape for shape, info in zip(shapes, self.inputs, strict=True)):
            return
        try:
            for shape, info in zip(shapes, self.inputs, strict=True):
                if tuple(shape) != info.shape:
                    self._interpreter.resize_tensor_input(info.index, [int(d) for d in shape])
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            wanted = ", ".join(f"{info.name}={'x'.join(map(str, shape))}" for shape, info in zip(shapes, self.inputs, strict=True))
            raise DataError(f"LiteRT cannot run {self.path} with input shapes {wanted}: {_one_line(exc)}") from None
        self._refresh_details()

    def _resize_batch(self, batch: int) -> bool:
        """Set the single input's batch dimension; False when the model refuses."""
        info = self.inputs[0]
        if info.shape[0] == batch:
            return True
        try:
            self._interpreter.resize_tensor_input(info.index, [batch, *info.shape[1:]])
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            logger.debug("cannot resize %s to batch %d (%s); running one sample at a time", self.path, batch, exc)
            self._interpreter.resize_tensor_input(info.index, list(info.shape))
            self._interpreter.allocate_tensors()
            return False
        self._refresh_details()
        return True

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Run a float batch through a single-input classifier.

        Args:
            x: float32 model input ``(N, H, W, C)``, already normalized per the preprocessing
                contract; quantized here when the input tensor is integer.
            batch_size: samples per invoke; None: ``min(N, 32)``.

        Returns:
            float32 ``(N, ...)`` outputs, dequantized when the output tensor is integer.

        Raises:
            DataError: ``x`` does not fit the model's input.
        """
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise DataError(
                f"predict() needs a model with one input and one output, {self.path} has "
                f"{len(self.inputs)} and {len(self.outputs)}; use invoke_raw()"
            )
        x = np.asarray(x)
        expected = self.inputs[0].shape[1:]
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise DataError(
                f"Received input of shape {tuple(x.shape)}; {self.path} expects (N, {', '.join(map(str, expected))})"
            )
        n = x.shape[0]
        if n == 0:
            return np.empty((0, *self.outputs[0].shape[1:]), dtype=np.float32)
        if batch_size is not None and batch_size < 1:
            raise DataError(f"Received batch_size={batch_size}; pass a positive integer or None")
        batch = min(n, batch_size or _DEFAULT_PREDICT_BATCH)
        if not self._resize_batch(batch):
            batch = self.inputs[0].shape[0]
        in_info = self.inputs[0]
        x = self.to_input(x)

        results = []
        for start in range(0, n, batch):
            chunk = x[start : start + batch]
            rows = chunk.shape[0]
            if rows < batch:  # pad the last chunk rather than re-planning the interpreter
                pad = np.zeros((batch - rows, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            try:
                self._interpreter.set_tensor(in_info.index, chunk)
                self._interpreter.invoke()
                results.append(self._interpreter.get_tensor(self.outputs[0].index)[:rows])
            except (ValueError, RuntimeError) as exc:
                raise ArtifactError(f"LiteRT failed to run {self.path}: {_one_line(exc)}; the file is malformed or not supported") from None
        return self.from_output(np.concatenate(results))

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """Float model input -> the first input tensor's dtype: quantized with its scale and zero point
        when it is integer (what :meth:`predict` feeds the interpreter; a board gets the same tensors)."""
        info = self.inputs[0]
        return quantize(x, info) if info.quantized else np.asarray(x).astype(np.dtype(info.dtype), copy=False)

    def from_output(self, out: np.ndarray) -> np.ndarray:
        """The first output tensor's raw values -> float32, dequantized when it is integer (as :meth:`predict` returns them)."""
        info = self.outputs[0]
        return dequantize(out, info) if info.quantized else np.asarray(out).astype(np.float32, copy=False)

    def invoke_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Set raw input tensors (the model's own dtypes and shapes), invoke, return raw outputs.

        Raises:
            DataError: wrong number, dtype or shape of inputs.
            ArtifactError: LiteRT fails while invoking (e.g. an operator reads a tensor nothing wrote).
        """
        if len(inputs) != len(self.inputs):
            raise DataError(f"Received {len(inputs)} input arrays; {self.path} has {len(self.inputs)} inputs")
        try:
            for array, info in zip(inputs, self.inputs, strict=True):
                self._interpreter.set_tensor(info.index, array)
        except ValueError as exc:
            raise DataError(f"{self.path} rejected the raw inputs: {_one_line(exc)}") from None
        try:
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(info.index) for info in self.outputs]
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"LiteRT failed to run {self.path}: {_one_line(exc)}; the file is malformed or not supported") from None

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "runtime": self.runtime,
            "runtime_version": _litert_version(),
            "num_threads": self.num_threads,
            "use_xnnpack": self.use_xnnpack,
            "inputs": [info.to_dict() for info in self.inputs],
            "outputs": [info.to_dict() for info in self.outputs],
        }


_FLOAT_DTYPES = (np.float32, np.float16, np.float64)


def op_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Which operators a ``.tflite`` graph holds, and which of them touch float tensors.

    Read with the builtin kernels only (no delegate), so the graph's own operators are listed
    rather than the delegate's partitions.

    Returns:
        ``{"ops": {op name: count}, "float_ops": [{"op", "index", "float_tensors"}], "full_integer": bool}``;
        ``full_integer`` is True when no operator reads or writes a float tensor.

    Raises:
        ArtifactError: the file is not a valid model.
    """
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    verify_tflite_file(path)
    probe_model(path, runtime="litert")
    try:
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the only op listing LiteRT's Python API offers
    except (ValueError, RuntimeError, AttributeError) as exc:
        raise ArtifactError(f"LiteRT cannot list the operators of {path}: {_one_line(exc)}") from None
    float_ops = []
    for op in ops:
        indices = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) >= 0 and int(i) in tensors]
        floats = [tensors[i]["name"] for i in indices if np.dtype(tensors[i]["dtype"]) in _FLOAT_DTYPES]
        if floats:
            float_ops.append({"op": op["op_name"], "index": int(op["index"]), "float_tensors": floats[:4]})
    counts = Counter(op["op_name"] for op in ops)
    return {"ops": dict(sorted(counts.items())), "float_ops": float_ops, "full_integer": not float_ops}
