"""``edgetl inspect`` for an ``.onnx`` file: its graph (read with ``onnx``) and how ONNX Runtime runs it.

Inputs and outputs (with the QuantizeLinear/DequantizeLinear that quantize them inside the graph),
operators, constant tensors, opsets, QDQ counts and pairs; then the graph ONNX Runtime's CPU
provider runs after its optimizations (:func:`edgetl.runtime.onnxruntime.ort_fusion_report`) and
which of its kernels compute in int8. The model is probed in a child process first
(:func:`edgetl.runtime.isolation.probe_model`), so a file that crashes ONNX Runtime fails with one line.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, MissingDependencyError
from edgetl.runtime.isolation import probe_model
from edgetl.runtime.onnxruntime import _one_line, _ort_errors, check_model_file, ort_fusion_report, ort_version

#: ONNX Runtime CPU kernels that compute on 8-bit integers (contrib ops included).
_ORT_INT8_PREFIX = "QLinear"
_ORT_INT8_OPS = frozenset({"ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QAttention", "QEmbedLayerNormalization", "DynamicQuantizeLSTM"})
#: The (de)quantizing operators, neither int8 nor float compute.
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("inspecting .onnx files needs the onnx package: pip install 'onnx==1.23.2'") from None
    return onnx


def _onnx_shape(value_info: Any) -> list[int | str]:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return []
    return [int(d.dim_value) if d.HasField("dim_value") else (_text(d.dim_param) or "?") for d in tensor_type.shape.dim]


def _onnx_dtype(onnx: Any, elem_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type in onnx.TensorProto.DataType.values() else f"type_{elem_type}"


def _scalar_init(arrays: dict[str, np.ndarray], name: str) -> float | int | list | None:
    value = arrays.get(name)
    if value is None:
        return None
    flat = value.ravel().tolist()
    return flat[0] if len(flat) == 1 else flat


def inspect_onnx(path: Path) -> dict[str, Any]:
    """Inspect an ``.onnx`` file (see the module docstring).

    Raises:
        ArtifactError: missing, corrupt or not an ONNX model, or one ONNX Runtime cannot load.
        MissingDependencyError: the ``onnx`` package is not installed.
    """
    path = Path(path)
    size = check_model_file(path)
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not an ONNX model, or it is corrupt or truncated ({' '.join(str(exc).split())[:200]})") from None
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.node:
        raise ArtifactError(f"{path} is not an ONNX model (no IR version or no graph nodes); pass an .onnx file")
    graph = model.graph
    numpy_helper = onnx.numpy_helper

    constants: dict[str, Any] = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    constants[node.output[0]] = attr.t
    by_dtype: dict[str, dict[str, int]] = {}
    count = nbytes = 0
    small: dict[str, np.ndarray] = {}  # scalars and short vectors: scales and zero points
    for name, tensor in constants.items():
        elements = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        dtype = _onnx_dtype(onnx, tensor.data_type)
        try:
            itemsize = np.dtype(dtype).itemsize if dtype != "object" else 0
        except TypeError:  # bfloat16, float8 and other types numpy lacks
            itemsize = 0
        entry = by_dtype.setdefault(dtype, {"count": 0, "bytes": 0, "tensors": 0})
        entry["count"] += elements
        entry["bytes"] += elements * itemsize
        entry["tensors"] += 1
        count += elements
        nbytes += elements * itemsize
        if elements <= 16 and tensor.data_location != onnx.TensorProto.EXTERNAL:
            with contextlib.suppress(ValueError, TypeError):
                small[name] = numpy_helper.to_array(tensor)

    consumers: dict[str, list[Any]] = {}
    producers: dict[str, Any] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node

    def io_entry(value_info: Any, quantizer: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": _text(value_info.name),
            "dtype": _onnx_dtype(onnx, value_info.type.tensor_type.elem_type),
            "shape": _onnx_shape(value_info),
            "quantization": None,
        }
        if quantizer is not None:
            entry["quantization"] = {
                "scale": _scalar_init(small, quantizer.input[1]) if len(quantizer.input) > 1 else None,
                "zero_point": _scalar_init(small, quantizer.input[2]) if len(quantizer.input) > 2 else None,
                "in_graph": quantizer.op_type,
            }
        return entry

    inputs = []
    for value in graph.input:
        if value.name in constants:  # IR < 4 lists initializers among the inputs
            continue
        q = next((n for n in consumers.get(value.name, []) if n.op_type == "QuantizeLinear"), None)
        inputs.append(io_entry(value, q))
    outputs = []
    for value in graph.output:
        producer = producers.get(value.name)
        outputs.append(io_entry(value, producer if producer is not None and producer.op_type == "DequantizeLinear" else None))

    ops = Counter(_text(node.op_type) for node in graph.node)
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    pairs = sum(1 for q in quantizers if any(c.op_type == "DequantizeLinear" for c in consumers.get(q.output[0], [])))
    weight_dq = sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants)

    probe_model(path, runtime="onnxruntime")  # a file that crashes ONNX Runtime does so in a child, not here
    try:
        fusion = ort_fusion_report(path)
    except (*_ort_errors(), UnicodeDecodeError) as exc:
        raise ArtifactError(f"ONNX Runtime cannot load {path}: {_one_line(exc)}") from None
    optimized = Counter({_text(op): n for op, n in fusion["ort_optimized_ops"].items()})
    int8_ops = {op: n for op, n in optimized.items() if op.startswith(_ORT_INT8_PREFIX) or op in _ORT_INT8_OPS}
    # Everything else: float compute, or data movement (Transpose, Reshape) on whatever dtype it is given.
    other_ops = {op: n for op, n in optimized.items() if op not in int8_ops and op not in QDQ_OPS}
    opsets = {(_text(entry.domain) or "ai.onnx"): int(entry.version) for entry in model.opset_import}
    return {
        "path": str(path),
        "format": "onnx",
        "size_bytes": size,
        "ir_version": int(model.ir_version),
        "producer": f"{_text(model.producer_name)} {_text(model.producer_version)}".strip(),
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "metadata": [_text(p.key) for p in model.metadata_props],
        "inputs": inputs,
        "outputs": outputs,
        "ops": dict(sorted(ops.items())),
        "op_count": int(sum(ops.values())),
        "parameters": {"count": count, "bytes": nbytes, "tensors": len(constants), "by_dtype": dict(sorted(by_dtype.items()))},
        "qdq": {
            "quantize_linear": ops.get("QuantizeLinear", 0),
            "dequantize_linear": ops.get("DequantizeLinear", 0),
            "pairs": pairs,
            "weight_dequantizers": weight_dq,
        },
        "ort_cpu": {
            "optimized_ops": dict(sorted(optimized.items())),
            "int8_ops": dict(sorted(int8_ops.items())),
            "other_ops": dict(sorted(other_ops.items())),
            "quantize_dequantize_left": {op: optimized[op] for op in sorted(QDQ_OPS) if optimized.get(op)},
            "convs": fusion["convs"],
            "int8_convs": fusion["int8_convs"],
            "runtime": _ort_version_text(),
            "method": "ONNX Runtime CPUExecutionProvider, graph optimization ORT_ENABLE_ALL, optimized graph saved and counted",
        },
    }


def _ort_version_text() -> str:
    return f"onnxruntime {ort_version()}"
