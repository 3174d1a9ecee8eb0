"""``edgetl inspect`` for a ``.tflite`` file: its graph, XNNPACK delegation and TFLite Micro support.

The file is read with the schema reader that ships with ai-edge-litert, after
:func:`edgetl.runtime.tflite_file.verify_tflite_file` has bounds-checked the whole flatbuffer and
:func:`edgetl.runtime.isolation.probe_model` has loaded it in a child process, so a corrupt file
fails with one line. Which operators LiteRT's XNNPACK delegate takes is measured by loading the
model (:func:`xnnpack_delegation`); TFLite Micro support is read from the kernel table in
:mod:`edgetl.runtime.tflm` and, when the ``tflite-micro`` package is installed, checked by loading
the model in its interpreter (:func:`tflm_interpreter_check`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, MissingDependencyError
from edgetl.runtime import captured_native_output, tflm
from edgetl.runtime.isolation import probe_model
from edgetl.runtime.litert import _litert_version
from edgetl.runtime.tflite_file import verify_tflite_file

logger = logging.getLogger(__name__)

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
