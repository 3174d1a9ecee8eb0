"""What a model file holds and where it can run: the data behind ``edgetl inspect``.

For any ``.tflite`` or ``.onnx`` file (edgetl's or anyone's; no ``edgetl.json`` needed):
inputs and outputs with dtypes, shapes and quantization, the operators and how many of each,
and the constant weight tensors (parameter count and bytes). Then, per format:

* ``.tflite``: which operators LiteRT's XNNPACK delegate takes and which run on LiteRT's own
  kernels (measured by loading the model, see :func:`xnnpack_delegation`), and whether every
  operator is one TFLite Micro has a kernel for (the table in :mod:`edgetl.runtime.tflm`,
  taken from TFLite Micro's sources; checked again by loading the model in TFLite Micro's Python
  interpreter when the ``tflite-micro`` package is installed, see :func:`tflm_interpreter_check`).
* ``.onnx``: opset, QuantizeLinear/DequantizeLinear counts and pairs, and which operators ONNX
  Runtime's CPU provider runs in int8 after its graph optimizations
  (:func:`edgetl.export.onnx.ort_fusion_report`).

``.tflite`` files are read with the schema reader that ships with ai-edge-litert, after
:func:`edgetl.runtime.litert.verify_tflite_file` has bounds-checked the whole flatbuffer, so a
corrupt file fails with one line. Nothing here imports TensorFlow; ``onnx`` and ONNX Runtime are
imported only when an ``.onnx`` file is inspected.

This module is not named ``inspect.py``: that would shadow the standard library's ``inspect``,
which TensorFlow imports.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, MissingDependencyError
from edgetl.core.registry import Registry
from edgetl.runtime import captured_native_output

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Native output and TFLite Micro
# ----------------------------------------------------------------------------------------------

#: Arena for the optional TFLite Micro load: generous, since only "does every op resolve" is asked.
_TFLM_CHECK_ARENA_MIN = 16 * 2**20


def tflm_interpreter_check(data: bytes) -> dict[str, Any] | None:
    """Load the model in TFLite Micro's Python interpreter, when ``tflite-micro`` is installed.

    The interpreter resolves every operator while it allocates tensors; an operator it lacks is
    named in its log (:class:`edgetl.runtime.tflm.TFLMModel` parses it). The arena is generous
    (``edgetl package`` measures the real one), so a failure here is about operators or the model.

    Returns:
        None without the package; else ``{"loads": bool, "missing_ops": [...], "error": str | None, "version": str}``.
    """
    from edgetl.runtime import tflm

    try:  # in a child process: TFLite Micro aborts or segfaults on some models instead of raising
        status, detail = tflm.probe_arena(bytes(data), max(_TFLM_CHECK_ARENA_MIN, 10 * len(data)))
    except MissingDependencyError:
        return None
    if status == "unsupported":
        ops, message = detail
        return {"loads": False, "missing_ops": list(ops), "error": message, "version": tflm.tflm_version()}
    if status != "ok":
        error = f"TFLite Micro's interpreter crashed ({detail}) on this model" if status == "crash" else str(detail or status)
        return {"loads": False, "missing_ops": [], "error": error, "version": tflm.tflm_version()}
    return {"loads": True, "missing_ops": [], "error": None, "version": tflm.tflm_version()}


# ----------------------------------------------------------------------------------------------
# TFLite
# ----------------------------------------------------------------------------------------------


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _tflite_op_names(model: Any) -> list[str]:
    """Operator name for each operator code, as LiteRT's ``_get_ops_details`` prints it."""
    schema = _schema()
    builtin = _enum_names(schema.BuiltinOperator)
    names = []
    for code in model.operatorCodes or []:
        # Codes above 127 live in builtinCode; older files only fill the int8 deprecated field.
        value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if value == schema.BuiltinOperator.CUSTOM:
            names.append(_text(code.customCode) or "CUSTOM")
        else:
            names.append(builtin.get(value, f"BUILTIN_{value}"))
    return names


def _quantization(tensor: Any) -> dict[str, Any] | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = [float(s) for s in np.asarray(q.scale).ravel()]
    zero = [int(z) for z in np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scale)).ravel()]
    if len(scale) == 1:
        return {"scale": scale[0], "zero_point": zero[0] if zero else 0}
    return {"scale": scale, "zero_point": zero, "axis": int(q.quantizedDimension)}


def _tflite_tensor(tensor: Any, dtypes: dict[int, str]) -> dict[str, Any]:
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    signature = [int(d) for d in tensor.shapeSignature] if tensor.shapeSignature is not None and len(tensor.shapeSignature) else shape
    return {
        "name": _text(tensor.name),
        "dtype": dtypes.get(int(tensor.type), f"type_{tensor.type}"),
        "shape": shape,
        "declared_shape": ["?" if d < 0 else d for d in signature],
        "quantization": _quantization(tensor),
    }


def _buffer_bytes(buffer: Any) -> int:
    if buffer is None:
        return 0
    if buffer.data is not None and len(buffer.data):
        return len(buffer.data)
    return int(buffer.size) if int(buffer.offset) > 1 else 0  # weights stored after the flatbuffer (>2 GiB models)


def _tflite_parameters(model: Any, dtypes: dict[int, str]) -> dict[str, Any]:
    """Constant tensors (those backed by a non-empty buffer), each buffer counted once."""
    buffers = model.buffers or []
    seen: set[int] = set()
    count = size = tensors = 0
    by_dtype: dict[str, dict[str, int]] = {}
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            index = int(tensor.buffer)
            if index <= 0 or index >= len(buffers) or index in seen or tensor.isVariable:
                continue
            nbytes = _buffer_bytes(buffers[index])
            if nbytes == 0:
                continue
            seen.add(index)
            elements = int(np.prod(tensor.shape)) if tensor.shape is not None and len(tensor.shape) else 1
            dtype = dtypes.get(int(tensor.type), f"type_{tensor.type}")
            entry = by_dtype.setdefault(dtype, {"count": 0, "bytes": 0, "tensors": 0})
            entry["count"] += elements
            entry["bytes"] += nbytes
            entry["tensors"] += 1
            count += elements
            size += nbytes
            tensors += 1
    return {"count": count, "bytes": size, "tensors": tensors, "by_dtype": dict(sorted(by_dtype.items()))}


def _float_ops(model: Any, op_names: list[str], dtypes: dict[int, str]) -> list[str]:
    floats = {"float32", "float16", "float64", "bfloat16"}
    found = []
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            indices = [int(i) for i in list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else []) if 0 <= int(i) < len(tensors)]
            if any(dtypes.get(int(tensors[i].type)) in floats for i in indices):
                found.append(op_names[int(op.opcodeIndex)])
    return found


def xnnpack_delegation(path: Path, graph_ops: list[str]) -> dict[str, Any]:
    """Which operators of the main subgraph LiteRT's default XNNPACK delegate runs.

    How it is measured (ai-edge-litert 2.3.0 has no public API for it): the model is loaded
    twice. Without default delegates (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``) the interpreter's
    node list (``Interpreter._get_ops_details()``) is exactly the graph's operators. With them
    (``AUTO``, LiteRT's default), XNNPACK is applied at ``allocate_tensors()`` and appends one
    ``DELEGATE`` node per partition it took, while the replaced nodes stay listed (they just
    leave the execution plan, which Python cannot see). A partition's ``DELEGATE`` node has the
    partition's boundary tensors as inputs and the tensors it hands on as outputs, so the
    operators it replaced are found by walking back from those outputs through the producing
    operators until the boundary. Every other operator falls back to LiteRT's builtin kernels.

    Returns:
        ``{"delegated": {op: n}, "fallback": {op: n}, "partitions": n, "delegated_nodes": n,
        "nodes": n, "method": ...}``, or ``{"error": ...}`` when LiteRT cannot load the model.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def nodes(resolver) -> list[dict[str, Any]]:
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        return interpreter._get_ops_details()  # noqa: SLF001 - the only node listing LiteRT's Python API has

    try:
        with captured_native_output() as log:  # LiteRT's "INFO: Created ... XNNPACK delegate" is noise here
            plain = nodes(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            delegated_run = nodes(OpResolverType.AUTO)
    except (ValueError, RuntimeError) as exc:
        return {"error": f"LiteRT cannot load the model: {' '.join(str(exc).split())[:300]}"}
    logger.debug("LiteRT while loading %s: %s", path, log.get("text", "").strip())
    count = len(plain)
    names = [str(n["op_name"]) for n in plain]
    if count != len(graph_ops) or [str(n["op_name"]) for n in delegated_run[:count]] != names:
        return {"error": "LiteRT's node list does not match the graph's operators; delegation not measured"}
    originals, partitions = delegated_run[:count], delegated_run[count:]
    producer = {int(t): i for i, node in enumerate(originals) for t in node["outputs"] if int(t) >= 0}
    taken: set[int] = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        stack = [int(t) for t in partition["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in taken:
                continue
            taken.add(producer[tensor])
            stack.extend(int(t) for t in originals[producer[tensor]]["inputs"] if int(t) >= 0)
    delegated = Counter(names[i] for i in taken)
    fallback = Counter(names[i] for i in range(count) if i not in taken)
    return {
        "delegated": dict(sorted(delegated.items())),
        "fallback": dict(sorted(fallback.items())),
        "partitions": len(partitions),
        "delegated_nodes": len(taken),
        "nodes": count,
        "method": "LiteRT default delegate (XNNPACK) applied at allocate_tensors(); DELEGATE nodes traced back to the operators they replaced",
    }


def inspect_tflite(path: Path) -> dict[str, Any]:
    """Inspect a ``.tflite`` file (see the module docstring).

    Raises:
        ArtifactError: missing, unreadable, corrupt or not a TFLite model.
    """
    from edgetl.runtime import tflm
    from edgetl.runtime.isolation import probe_model
    from edgetl.runtime.litert import _litert_version, verify_tflite_file

    path = Path(path)
    data = verify_tflite_file(path)
    probe_model(path, runtime="litert")  # a file that crashes LiteRT does so in a child, before xnnpack_delegation loads it here
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # the generated reader raises assorted types; verify_tflite_file checked bounds
        raise ArtifactError(f"cannot read TFLite model {path}: {type(exc).__name__}: {exc}") from None
    dtypes = {value: name.lower() for value, name in _enum_names(schema.TensorType).items()}
    op_names = _tflite_op_names(model)
    main = model.subgraphs[0]
    tensors = main.tensors or []
    all_ops = [op_names[int(op.opcodeIndex)] for sg in model.subgraphs for op in sg.operators or []]
    main_ops = [op_names[int(op.opcodeIndex)] for op in main.operators or []]
    float_ops = _float_ops(model, op_names, dtypes)
    unsupported = tflm.unsupported_ops(all_ops)
    return {
        "path": str(path),
        "format": "tflite",
        "size_bytes": len(data),
        "description": _text(model.description),
        "subgraphs": len(model.subgraphs),
        "metadata": [_text(m.name) for m in model.metadata or []],
        "inputs": [_tflite_tensor(tensors[int(i)], dtypes) for i in main.inputs if main.inputs is not None],
        "outputs": [_tflite_tensor(tensors[int(i)], dtypes) for i in main.outputs if main.outputs is not None],
        "ops": dict(sorted(Counter(all_ops).items())),
        "op_count": len(all_ops),
        "parameters": _tflite_parameters(model, dtypes),
        "full_integer": not float_ops,
        "float_ops": dict(sorted(Counter(float_ops).items())),
        "xnnpack": {**xnnpack_delegation(path, main_ops), "runtime": f"ai-edge-litert {_litert_version()}"},
        "tflm": {
            "all_supported": not unsupported,
            "unsupported": unsupported,
            "table": "edgetl.runtime.tflm.TFLM_OP_RESOLVER_METHODS (TFLite Micro's MicroMutableOpResolver kernels)",
            "interpreter": tflm_interpreter_check(data),
        },
    }


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------

#: ONNX Runtime CPU kernels that compute on 8-bit integers (contrib ops included).
_ORT_INT8_PREFIX = "QLinear"
_ORT_INT8_OPS = frozenset({"ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QAttention", "QEmbedLayerNormalization", "DynamicQuantizeLSTM"})
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


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
    from edgetl.runtime.onnxruntime import _one_line, _ort_errors, check_model_file

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

    from edgetl.export.onnx import ort_fusion_report
    from edgetl.runtime.isolation import probe_model

    probe_model(path, runtime="onnxruntime")  # a file that crashes ONNX Runtime does so in a child, not here
    try:
        fusion = ort_fusion_report(path)
    except (*_ort_errors(), UnicodeDecodeError) as exc:
        raise ArtifactError(f"ONNX Runtime cannot load {path}: {_one_line(exc)}") from None
    optimized = Counter({_text(op): n for op, n in fusion["ort_optimized_ops"].items()})
    int8_ops = {op: n for op, n in optimized.items() if op.startswith(_ORT_INT8_PREFIX) or op in _ORT_INT8_OPS}
    # Everything else: float compute, or data movement (Transpose, Reshape) on whatever dtype it is given.
    other_ops = {op: n for op, n in optimized.items() if op not in int8_ops and op not in _QDQ_OPS}
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
            "quantize_dequantize_left": {op: optimized[op] for op in sorted(_QDQ_OPS) if optimized.get(op)},
            "convs": fusion["convs"],
            "int8_convs": fusion["int8_convs"],
            "runtime": _ort_version_text(),
            "method": "ONNX Runtime CPUExecutionProvider, graph optimization ORT_ENABLE_ALL, optimized graph saved and counted",
        },
    }


def _ort_version_text() -> str:
    from edgetl.runtime.onnxruntime import ort_version

    return f"onnxruntime {ort_version()}"


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFormat:
    """A model file format ``inspect`` reads: its suffixes and its inspector."""

    name: str
    suffixes: tuple[str, ...]
    inspect: Callable[[Path], dict[str, Any]]


FORMATS: Registry[ModelFormat] = Registry("model format")
FORMATS.register("tflite", ModelFormat("tflite", (".tflite",), inspect_tflite))
FORMATS.register("onnx", ModelFormat("onnx", (".onnx",), inspect_onnx))


def inspect_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a ``.tflite`` or ``.onnx`` model file (see the module docstring).

    Returns:
        A JSON-able dict: ``inputs``, ``outputs``, ``ops``, ``parameters`` and the per-format sections.

    Raises:
        ArtifactError: missing file, a folder, an unknown suffix, or a corrupt model.
        MissingDependencyError: ``.onnx`` without the ``onnx`` package.
    """
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder without a model.tflite or model.onnx; pass a model file")
    suffix = path.suffix.lower()
    for _, fmt in FORMATS.items():
        if suffix in fmt.suffixes:
            return fmt.inspect(path)
    known = ", ".join(s for _, fmt in FORMATS.items() for s in fmt.suffixes)
    raise ArtifactError(f"Received {path}: edgetl inspect reads {known} files, not {suffix or 'files without a suffix'}")


# ----------------------------------------------------------------------------------------------
# Tables for the CLI
# ----------------------------------------------------------------------------------------------


def _shape_text(shape: list[int | str]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _quant_text(q: dict[str, Any] | None) -> str:
    if not q:
        return "-"
    scale, zero = q.get("scale"), q.get("zero_point")
    if isinstance(scale, list):
        return f"per-channel ({len(scale)} scales, axis {q.get('axis')})"
    where = f" ({q['in_graph']})" if q.get("in_graph") else ""
    return f"scale {scale:.6g}, zero point {zero}{where}" if isinstance(scale, float) else f"scale {scale}, zero point {zero}{where}"


def _size_text(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    return f"{nbytes / 2**20:.2f} MiB" if nbytes >= 2**20 else f"{nbytes / 1024:.1f} KiB"


def render(report: dict[str, Any]) -> list[Any]:
    """Rich renderables (tables and lines) for an :func:`inspect_artifact` report.

    Names come from the model file (anyone's): every one is shown through :func:`edgetl.core.text.display_safe`
    (control and bidi characters escaped; rich markup escaped in table cells, which rich parses).
    """
    from rich.table import Table
    from rich.text import Text as RichText

    from edgetl.core.text import display_safe

    def Text(text: str) -> RichText:  # noqa: N802 - a line of plain text (no markup), control and bidi characters escaped
        return RichText(display_safe(text, markup=False))

    items: list[Any] = []
    params = report["parameters"]
    head = (
        f"{report['path']} ({report['format']}, {_size_text(report['size_bytes'])}): {report['op_count']} ops, "
        f"{params['count']:,} parameters in {params['tensors']} constant tensors ({_size_text(params['bytes'])}: "
        + ", ".join(f"{d} {v['count']:,}" for d, v in params["by_dtype"].items()) + ")"
    )
    if report["format"] == "onnx":
        head += f"; opset {report['opset']}"
    items.append(Text(head))

    io = Table(title="inputs and outputs")
    for col in ("", "name", "dtype", "shape", "quantization"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            shape = t.get("declared_shape", t["shape"])
            io.add_row(kind[:-1], display_safe(t["name"]), display_safe(t["dtype"]), display_safe(_shape_text(shape)), display_safe(_quant_text(t["quantization"])))
    items.append(io)

    ops = Table(title="operators")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    if report["format"] == "tflite":
        xnn, tflm = report["xnnpack"], report["tflm"]
        ops.add_column("XNNPACK")
        ops.add_column("TFLite Micro")
        for op, n in report["ops"].items():
            delegated, fallback = xnn.get("delegated", {}).get(op, 0), xnn.get("fallback", {}).get(op, 0)
            where = "n/a" if "error" in xnn else "delegated" if not fallback else "fallback" if not delegated else f"{delegated} delegated, {fallback} fallback"
            ops.add_row(display_safe(op), str(n), where, "[red]not supported[/]" if op in tflm["unsupported"] else "yes")
        items.append(ops)
        if "error" in xnn:
            items.append(Text(f"XNNPACK: not measured ({xnn['error']})"))
        else:
            items.append(Text(
                f"XNNPACK ({xnn['runtime']}): {xnn['delegated_nodes']} of {xnn['nodes']} ops delegated in {xnn['partitions']} partition(s)"
                + (f"; falling back to LiteRT kernels: {', '.join(f'{op} x{n}' for op, n in xnn['fallback'].items())}" if xnn["fallback"] else "")
            ))
        if tflm["all_supported"]:
            verdict = "every op has a TFLite Micro kernel"
        else:
            verdict = f"ops TFLite Micro lacks: {', '.join(tflm['unsupported'])}"
        if not report["full_integer"]:
            verdict += "; the model computes in float (TFLite Micro targets want int8: export tflite-int8)"
        checked = tflm["interpreter"]
        if checked is not None:
            if checked["loads"]:
                verdict += f"; tflite-micro {checked['version']} loads it"
            elif checked["missing_ops"]:
                verdict += f"; tflite-micro {checked['version']} confirms: no kernel for {', '.join(checked['missing_ops'])}"
            else:
                verdict += f"; tflite-micro {checked['version']} does not load it ({checked['error']})"
        items.append(Text(f"TFLite Micro: {verdict}"))
        return items

    ort = report["ort_cpu"]
    for op, n in report["ops"].items():
        ops.add_row(display_safe(op), str(n))
    items.append(ops)
    qdq = report["qdq"]
    items.append(Text(
        f"QDQ: {qdq['quantize_linear']} QuantizeLinear, {qdq['dequantize_linear']} DequantizeLinear "
        f"({qdq['weight_dequantizers']} on weights), {qdq['pairs']} Q->DQ pairs"
    ))
    items.append(Text(f"{ort['runtime']}, CPU provider, after graph optimization: {ort['int8_convs']} of {ort['convs']} Conv run in int8"))
    kernels = Table(title="ONNX Runtime CPU kernels")
    kernels.add_column("kernel")
    kernels.add_column("count", justify="right")
    kernels.add_column("computes in")
    for op, n in ort["int8_ops"].items():
        kernels.add_row(display_safe(op), str(n), "int8")
    for op, n in {**ort["quantize_dequantize_left"], **ort["other_ops"]}.items():
        kernels.add_row(display_safe(op), str(n), "(de)quantize" if op in _QDQ_OPS else "float / data movement")
    items.append(kernels)
    return items
