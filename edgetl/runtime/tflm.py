"""Run ``.tflite`` models in TFLite Micro, through its Python interpreter (``tflite-micro`` on PyPI).

What a microcontroller build needs to know before it is flashed, measured here on the host:

* which operators the model uses, and the ``MicroMutableOpResolver`` call that registers each
  (:data:`TFLM_OP_RESOLVER_METHODS`);
* the smallest tensor arena the model allocates in (:func:`measure_arena`, a bisection over
  real allocations in 16-byte steps, the arena's own alignment);
* what the model computes there (:class:`TFLMModel`), to compare with LiteRT.

The interpreter is TFLite Micro's own C++ (reference kernels, ``RecordingMicroAllocator``)
built for the host. Two things differ on a device and are why a package adds a margin to the
measured arena: a 32-bit MCU has 4-byte pointers (its bookkeeping is smaller than on this
64-bit host), and optimized kernel libraries (CMSIS-NN, ESP-NN, Xtensa) may request scratch
buffers the reference kernels do not.

TFLite Micro reports errors by printing (C ``printf`` to stderr); they are captured here at the
file-descriptor level and turned into one-line :class:`~edgetl.core.errors.EdgetlError` messages.
No TensorFlow is imported.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, DataError, EdgetlError, MissingDependencyError
from edgetl.runtime import captured_native_output
from edgetl.runtime.isolation import mp_context
from edgetl.runtime.tflite_file import _builtin_names, _checked_model, tflite_operator_counts

logger = logging.getLogger(__name__)

#: Builtin operator (schema name) -> the ``tflite::MicroMutableOpResolver`` method that registers
#: its TFLite Micro kernel. Source: ``tensorflow/lite/micro/micro_mutable_op_resolver.h`` in
#: tensorflow/tflite-micro; the set is the builtin kernels the ``tflite-micro`` Python
#: interpreter (0.dev20261023182759) registers. An operator missing here has no TFLite Micro kernel.
TFLM_OP_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

#: Custom operators (``custom_code``) with a TFLite Micro kernel, and their resolver method.
TFLM_CUSTOM_OP_RESOLVER_METHODS: dict[str, str] = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
}

#: TFLite Micro aligns the arena and every buffer in it to 16 bytes, so arena sizes are
#: measured (and any arena that works can be rounded) in 16-byte steps.
ARENA_STEP = 16
#: The largest arena tried before a model that will not allocate is declared unloadable.
ARENA_LIMIT = 256 * 2**20
#: The smallest upper bound tried first (above the lower bound read from the model).
_FIRST_ARENA = 16 * 2**10

_MISSING_OP = re.compile(r"Didn't find op for (?:builtin opcode|custom opcode) '([^']+)'")


class UnsupportedOpsError(ArtifactError):
    """The model uses operators TFLite Micro has no kernel for (``ops`` names them)."""

    def __init__(self, ops: list[str], message: str) -> None:
        super().__init__(message)
        self.ops = ops


def tflm_version() -> str:
    """The installed ``tflite-micro`` package version (``"unknown"`` when it has none)."""
    try:
        return importlib.metadata.version("tflite-micro")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source builds
        return "unknown"


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise MissingDependencyError(
            f"TFLite Micro's Python interpreter is not installed ({exc}); it is needed to measure the tensor arena. "
            "PyPI has `tflite-micro` wheels for x86-64 Linux only: there, `pip install tflite-micro==0.dev20261023182759` "
            "(the version edgetl pins); elsewhere, package for C on an x86-64 Linux machine or container"
        ) from None
    return runtime


def unsupported_ops(op_names: Iterable[str]) -> list[str]:
    """The operators among ``op_names`` that TFLite Micro has no kernel for, sorted."""
    return sorted({op for op in op_names if op not in TFLM_OP_RESOLVER_METHODS and op not in TFLM_CUSTOM_OP_RESOLVER_METHODS})


def resolver_method(op_name: str) -> str:
    """The ``MicroMutableOpResolver`` method for an operator (builtin name or custom code).

    Raises:
        ArtifactError: TFLite Micro has no kernel for it.
    """
    method = TFLM_OP_RESOLVER_METHODS.get(op_name) or TFLM_CUSTOM_OP_RESOLVER_METHODS.get(op_name)
    if method is None:
        raise UnsupportedOpsError([op_name], f"TFLite Micro has no kernel for operator {op_name}")
    return method


def _log_summary(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-3:])[:300] or "no message"


def _tensor_details(detail: dict[str, Any]) -> dict[str, Any]:
    quant = detail.get("quantization_parameters") or {}
    scales = list(np.asarray(quant.get("scales", []), dtype=np.float64))
    zeros = list(np.asarray(quant.get("zero_points", []), dtype=np.int64))
    return {
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scales[0]) if len(scales) == 1 else 0.0,
        "zero_point": int(zeros[0]) if len(zeros) == 1 else 0,
    }


class TFLMModel:
    """A ``.tflite`` model in TFLite Micro's interpreter, with a tensor arena of ``arena_size`` bytes.

    Args:
        data: the model's bytes.
        arena_size: tensor arena in bytes.

    Raises:
        ArtifactError: the model does not allocate in that arena (the message names operators
            TFLite Micro lacks, else repeats TFLite Micro's last log lines).
        MissingDependencyError: ``tflite-micro`` is not installed.
    """

    runtime = "tflite-micro"

    def __init__(self, data: bytes, arena_size: int) -> None:
        runtime = _runtime()
        self.arena_size = int(arena_size)
        self.log = ""
        with captured_native_output() as out:
            try:
                self._interpreter = runtime.Interpreter.from_bytes(bytes(data), arena_size=self.arena_size)
                error = None
            except (RuntimeError, ValueError) as exc:
                error = " ".join(str(exc).split())
            else:  # asking past the last tensor is how the count is found; TFLM prints a line for it
                self.inputs = self._details(self._interpreter.get_input_details)
                self.outputs = self._details(self._interpreter.get_output_details)
        self.log = out.get("text", "")
        if error is not None:
            missing = sorted(set(_MISSING_OP.findall(self.log)))
            if missing:
                raise UnsupportedOpsError(missing, f"TFLite Micro has no kernel for operator(s) {', '.join(missing)}")
            raise ArtifactError(f"TFLite Micro cannot load the model with a {self.arena_size}-byte arena: {error} ({_log_summary(self.log)})")

    @staticmethod
    def _details(getter) -> list[dict[str, Any]]:
        details = []
        while True:
            try:
                details.append(_tensor_details(getter(len(details))))
            except IndexError:
                return details

    def invoke_raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Set raw input tensors (the model's own dtypes and shapes), invoke, return copies of the outputs.

        Raises:
            DataError: wrong number, dtype or shape of inputs.
            ArtifactError: TFLite Micro fails while invoking.
        """
        if len(inputs) != len(self.inputs):
            raise DataError(f"Received {len(inputs)} input arrays; the model has {len(self.inputs)} inputs")
        for index, (array, info) in enumerate(zip(inputs, self.inputs, strict=True)):
            if array.dtype.name != info["dtype"] or list(array.shape) != info["shape"]:
                raise DataError(f"input {index} must be {info['dtype']} of shape {info['shape']}, received {array.dtype.name} {list(array.shape)}")
        with captured_native_output() as out:
            try:
                for index, array in enumerate(inputs):
                    self._interpreter.set_input(np.ascontiguousarray(array), index)
                self._interpreter.invoke()
                error = None
            except (RuntimeError, ValueError) as exc:
                error = " ".join(str(exc).split())
        if error is not None:
            raise ArtifactError(f"TFLite Micro failed to run the model: {error} ({_log_summary(out.get('text', ''))})")
        return [np.array(self._interpreter.get_output(i)) for i in range(len(self.outputs))]

    def zero_inputs(self) -> list[np.ndarray]:
        """One input per model input, every element at its zero point (a mid-grey image for edgetl models)."""
        return [np.full(info["shape"], info["zero_point"], dtype=info["dtype"]) for info in self.inputs]


@dataclass(frozen=True)
class ArenaMeasurement:
    """The smallest tensor arena a model allocates in, found by bisection.

    Attributes:
        min_bytes: smallest arena (a multiple of ``step_bytes``) in which the model allocates.
        step_bytes: bisection granularity; ``min_bytes - step_bytes`` was tried (or is 0) and fails.
        probes: interpreters created during the search.
        invoked: the model was also invoked, once, in ``min_bytes``.
        allocator: how TFLite Micro allocated (see the module docstring for the device caveats).
        tflm_version: the ``tflite-micro`` package version.
    """

    min_bytes: int
    step_bytes: int
    probes: int
    invoked: bool
    allocator: str
    tflm_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def allocates(data: bytes, arena_size: int) -> bool:
    """True when TFLite Micro allocates the model's tensors in ``arena_size`` bytes.

    Raises:
        UnsupportedOpsError: the model needs an operator TFLite Micro lacks (no arena would help).
    """
    try:
        TFLMModel(data, arena_size)
    except UnsupportedOpsError:
        raise
    except ArtifactError:
        return False
    return True


#: Operators TFLite Micro may run in place (output sharing the input's memory): left out of the
#: "an operator's inputs and outputs are all live at once" lower bound.
_IN_PLACE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 15: 4, 16: 2}


def arena_lower_bound(data: bytes) -> int:
    """Bytes every arena for this model needs at least, read from its flatbuffer (no interpreter).

    The larger of: the biggest non-constant tensor of the main subgraph, and, over its operators
    (those that cannot run in place), the sum of the distinct non-constant tensors an operator
    reads and writes (all live while it runs). TFLite Micro adds bookkeeping and alignment on
    top, so a real arena is always larger.

    Raises:
        ArtifactError: not a valid TFLite model.
    """
    tflite_operator_counts(data)  # verifies the file, as every reader here does
    _, reader, model = _checked_model(data)
    buffers = reader.tables(model, 12, "buffers")
    subgraph = reader.tables(model, 8, "subgraphs")[0]
    sizes: dict[int, int] = {}
    for t, tensor in enumerate(reader.tables(subgraph, 4, "tensors")):
        buffer = reader.scalar(tensor, 8, "I", 0, "tensor.buffer")
        span = reader.vector(buffers[buffer], 4, 1, "buffer.data") if 0 < buffer < len(buffers) else None
        if span is not None and span[1]:
            continue  # constant: stays in flash
        shape = reader.ints(tensor, 4, "i4", "tensor.shape")
        elements = int(np.prod(np.maximum(shape.astype(np.int64), 1))) if shape.size else 1
        sizes[t] = elements * _ELEMENT_BYTES.get(reader.scalar(tensor, 6, "b", 0, "tensor.type"), 1)
    names = []
    for i, opcode in enumerate(reader.tables(model, 6, "operator_codes")):
        code = max(reader.scalar(opcode, 4, "b", 0, f"operator_codes[{i}]"), reader.scalar(opcode, 10, "i", 0, f"operator_codes[{i}]"))
        names.append(_builtin_name(code))
    bound = max(sizes.values(), default=0)
    for operator in reader.tables(subgraph, 10, "operators"):
        if names[reader.scalar(operator, 4, "I", 0, "operator.opcode_index")] in _IN_PLACE_OPS:
            continue
        live = {int(i) for slot in (6, 8) for i in reader.ints(operator, slot, "i4", "operator tensors") if int(i) in sizes}
        bound = max(bound, sum(sizes[i] for i in live))
    return bound


def _builtin_name(code: int) -> str:
    return _builtin_names().get(code, f"BUILTIN_{code}")


def _probe_child(data: bytes, arena_size: int, invoke: bool, conn) -> None:
    """In a child: does the model allocate (and, with ``invoke``, run) in ``arena_size`` bytes?"""
    try:
        model = TFLMModel(data, arena_size)
        if invoke:
            model.invoke_raw(model.zero_inputs())
        conn.send(("ok", None))
    except UnsupportedOpsError as exc:
        conn.send(("unsupported", (list(exc.ops), str(exc))))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as text
        conn.send(("fail", " ".join(str(exc).split())[:300]))


def probe_arena(data: bytes, arena_size: int, *, invoke: bool = False, timeout: float = 300.0) -> tuple[str, Any]:
    """One allocation (and, with ``invoke``, one inference) in a child process of its own.

    TFLite Micro's Python interpreter segfaults, instead of raising, when some arenas are too
    small ("Failed to allocate tail memory"); in a child that ends the probe, not the measurement.

    Returns:
        ``("ok", None)``, ``("fail", message)``, ``("crash", signal name)``, ``("hang", None)`` or
        ``("unsupported", (ops, message))``.
    """
    import signal

    _runtime()  # a missing package is reported here, and the child (forked) does not import it again
    context = mp_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_probe_child, args=(data, arena_size, invoke, send), daemon=True)
    process.start()
    send.close()
    try:
        if receive.poll(timeout):
            try:
                outcome = receive.recv()
            except EOFError:  # died before it could answer
                outcome = None
        else:
            outcome = ("hang", None) if process.is_alive() else None
    finally:
        receive.close()
        if process.is_alive() and outcome is not None and outcome[0] == "hang":
            process.kill()
        process.join()
    if outcome is None:
        code = process.exitcode or 0
        try:
            name = signal.Signals(-code).name if code < 0 else f"exit code {code}"
        except ValueError:
            name = f"signal {-code}"
        return "crash", name
    return outcome


def measure_arena(data: bytes, *, step: int = ARENA_STEP, limit: int = ARENA_LIMIT) -> ArenaMeasurement:
    """Bisect for the smallest tensor arena (in ``step``-byte steps) in which the model allocates.

    Every probe runs in a child process of its own, and a probe that crashes the interpreter
    counts as "does not fit" (TFLite Micro segfaults on some arenas that are too small). The
    search starts from :func:`arena_lower_bound` (checked to fail), grows an upper bound by
    doubling until the model allocates, then bisects the gap to ``step`` bytes. The result is
    invoked once (with every input at its zero point) to show the arena holds a whole inference.

    Raises:
        ArtifactError: an operator TFLite Micro lacks, the model does not allocate even in
            ``limit`` bytes, or it fails (or crashes) to invoke in the arena found.
        MissingDependencyError: ``tflite-micro`` is not installed.
    """
    data = bytes(data)
    probes = 0
    last_failure = ""

    def works(size: int) -> bool:
        nonlocal probes, last_failure
        probes += 1
        status, detail = probe_arena(data, size)
        if status == "unsupported":
            raise UnsupportedOpsError(*detail)
        if status != "ok":
            last_failure = f"{status}: {detail}" if detail else status
        logger.debug("arena %d bytes: %s", size, status)
        return status == "ok"

    bound = arena_lower_bound(data) // step * step
    low = 0  # invariant once found: `low` fails (or is 0), `high` works
    if bound >= step and not works(bound):
        low = bound
    high = _round_up(max(2 * bound, _FIRST_ARENA) if low else max(bound, step), step)
    while not works(high):
        if high >= limit:
            raise ArtifactError(f"the model does not allocate even in a {limit // 2**20} MiB arena in TFLite Micro ({last_failure})")
        low, high = high, min(high * 2, _round_up(limit, step))
    while high - low > step:
        middle = max(low + step, (low + high) // 2 // step * step)
        if works(middle):
            high = middle
        else:
            low = middle
    status, detail = probe_arena(data, high, invoke=True)
    if status == "unsupported":
        raise UnsupportedOpsError(*detail)
    if status != "ok":
        what = f"crashed ({detail})" if status == "crash" else f"failed ({detail})" if detail else status
        raise ArtifactError(f"TFLite Micro allocates the model in {high} bytes but {what} running it; it cannot run this model")
    logger.debug("tensor arena: %d bytes (%d probes, lower bound %d)", high, probes, bound)
    return ArenaMeasurement(
        min_bytes=high, step_bytes=step, probes=probes, invoked=True,
        allocator="Python interpreter, RecordingMicroAllocator, reference kernels, 64-bit host",
        tflm_version=tflm_version(),
    )


# ----------------------------------------------------------------------------------------------
# Crash isolation
# ----------------------------------------------------------------------------------------------


def _call_in_child(fn, args: tuple) -> tuple[str, Any]:
    """Run ``fn(*args)`` and return what happened as plain, picklable data."""
    try:
        return "ok", fn(*args)
    except UnsupportedOpsError as exc:
        return "unsupported", (list(exc.ops), str(exc))
    except EdgetlError as exc:
        return "error", (type(exc).__module__, type(exc).__name__, str(exc))


def isolated(fn, *args):
    """``fn(*args)`` in a child process: TFLite Micro's C++ aborts (``abort()`` on a model it
    cannot handle, e.g. the 224 px MobileNetV2 here) end the child, not edgetl, and become a
    one-line :class:`ArtifactError`. ``fn`` must be a module-level function; edgetl's own errors
    come back as themselves.
    """
    import importlib
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=mp_context()) as pool:
        try:
            status, value = pool.submit(_call_in_child, fn, args).result()
        except BrokenProcessPool:
            raise ArtifactError(
                "TFLite Micro's interpreter crashed (the process aborted) on this model; it cannot run it. "
                "Smaller models (a lower --input-size or --alpha) are what microcontrollers take"
            ) from None
    if status == "ok":
        return value
    if status == "unsupported":
        raise UnsupportedOpsError(*value)
    module, name, message = value
    raise getattr(importlib.import_module(module), name)(message)


def loads(data: bytes, arena_size: int) -> None:
    """Construct :class:`TFLMModel` (for :func:`isolated`); raises what it raises."""
    TFLMModel(data, arena_size)
