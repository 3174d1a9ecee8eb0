"""Run ``.tflite`` models with LiteRT (``ai_edge_litert``), without TensorFlow.

This module must import on a device that has only numpy and ai-edge-litert, so it never
imports TensorFlow (``tf.lite.Interpreter`` is deprecated anyway; STACK.md).

A model file is checked by :func:`verify_tflite_file` before the interpreter sees it: a
bounds-checked walk over the flatbuffer (root table, vtables, every vector and string the
interpreter reads, buffer offsets, tensor/opcode/buffer indices). A truncated or corrupted
file then fails with a one-line :class:`~edgetl.core.errors.ArtifactError` instead of whatever
the native code would do with it. The generated ``ai_edge_litert.schema_py_generated``
reader is not used for that walk because its reads are unchecked: a corrupted signed
vtable offset becomes a negative index (which Python wraps to the end of the buffer) and
strings are sliced (which silently truncates); it supplies the tensor-type enum instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.runtime.isolation import probe_model

logger = logging.getLogger(__name__)

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
# A flatbuffer addresses at most 2 GiB; larger models keep weights after it (Buffer.offset).
_MAX_FLATBUFFER_BYTES = 2**31 - 1
_MIN_FILE_BYTES = 16
_DEFAULT_PREDICT_BATCH = 32


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


# --------------------------------------------------------------------------------------------
# Flatbuffer verification
# --------------------------------------------------------------------------------------------


class _CorruptModel(Exception):
    """Internal: the flatbuffer walk found an inconsistency (turned into ArtifactError)."""


class _Table:
    __slots__ = ("pos", "vtable", "vtable_len", "table_len")

    def __init__(self, pos: int, vtable: int, vtable_len: int, table_len: int) -> None:
        self.pos = pos
        self.vtable = vtable
        self.vtable_len = vtable_len
        self.table_len = table_len


class _FlatbufferReader:
    """Bounds-checked flatbuffer primitives, after ``flatbuffers::Verifier`` (C++)."""

    _U8 = struct.Struct("<B")
    _U16 = struct.Struct("<H")
    _U32 = struct.Struct("<I")
    _I32 = struct.Struct("<i")
    _U64 = struct.Struct("<Q")

    def __init__(self, buf: bytes, limit: int) -> None:
        self.buf = buf
        self.limit = limit  # end of the flatbuffer part (trailing weight data may follow)

    def _read(self, fmt: struct.Struct, pos: int, what: str) -> int:
        if pos < 0 or pos + fmt.size > self.limit:
            raise _CorruptModel(f"{what} at byte {pos} lies outside the {self.limit}-byte flatbuffer")
        return fmt.unpack_from(self.buf, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        return self._read(self._U32, pos, what)

    def table(self, pos: int, what: str) -> _Table:
        if pos % 4:
            raise _CorruptModel(f"{what} table at byte {pos} is misaligned")
        vtable = pos - self._read(self._I32, pos, what)
        if vtable % 2:
            raise _CorruptModel(f"{what} vtable at byte {vtable} is misaligned")
        vtable_len = self._read(self._U16, vtable, f"{what} vtable")
        table_len = self._read(self._U16, vtable + 2, f"{what} vtable")
        if vtable_len < 4 or vtable_len % 2 or vtable + vtable_len > self.limit:
            raise _CorruptModel(f"{what} vtable at byte {vtable} has an invalid size {vtable_len}")
        if table_len < 4 or pos + table_len > self.limit:
            raise _CorruptModel(f"{what} table at byte {pos} has an invalid size {table_len}")
        return _Table(pos, vtable, vtable_len, table_len)

    def field(self, table: _Table, slot: int, size: int, what: str) -> int | None:
        """Absolute position of a field's inline value, or None when the field is absent."""
        if slot >= table.vtable_len:
            return None
        offset = self._read(self._U16, table.vtable + slot, what)
        if offset == 0:
            return None
        if offset + size > table.table_len:
            raise _CorruptModel(f"{what} field runs past the end of its table")
        return table.pos + offset

    def scalar(self, table: _Table, slot: int, fmt: str, default: int, what: str) -> int:
        packer = struct.Struct("<" + fmt)
        pos = self.field(table, slot, packer.size, what)
        return default if pos is None else self._read(packer, pos, what)

    def ref(self, table: _Table, slot: int, what: str) -> int | None:
        pos = self.field(table, slot, 4, what)
        if pos is None:
            return None
        return pos + self.u32(pos, what)

    def vector(self, table: _Table, slot: int, elem_size: int, what: str) -> tuple[int, int] | None:
        """``(start, length)`` of a vector field, checked to lie inside the buffer."""
        pos = self.ref(table, slot, what)
        if pos is None:
            return None
        if pos % 4:
            raise _CorruptModel(f"{what} vector at byte {pos} is misaligned")
        length = self.u32(pos, what)
        start = pos + 4
        if start + length * elem_size > self.limit:
            raise _CorruptModel(f"{what} vector of {length} elements at byte {pos} runs past the end of the file")
        return start, length

    def string(self, table: _Table, slot: int, what: str) -> None:
        span = self.vector(table, slot, 1, what)
        if span is not None:
            start, length = span
            if start + length >= self.limit or self.buf[start + length] != 0:
                raise _CorruptModel(f"{what} string at byte {start} is not terminated")
            try:
                self.buf[start : start + length].decode("utf-8")
            except UnicodeDecodeError:
                raise _CorruptModel(f"{what} string at byte {start} is not UTF-8") from None

    def text(self, table: _Table, slot: int, what: str) -> str | None:
        """A string field's value (checked as :meth:`string` does), or None when absent."""
        self.string(table, slot, what)
        span = self.vector(table, slot, 1, what)
        if span is None:
            return None
        start, length = span
        return self.buf[start : start + length].decode("utf-8")

    def ints(self, table: _Table, slot: int, fmt: str, what: str) -> np.ndarray:
        dtype = np.dtype("<" + fmt)
        span = self.vector(table, slot, dtype.itemsize, what)
        if span is None:
            return np.empty(0, dtype)
        start, length = span
        return np.frombuffer(self.buf, dtype=dtype, count=length, offset=start)

    def tables(self, table: _Table, slot: int, what: str) -> list[_Table]:
        span = self.vector(table, slot, 4, what)
        if span is None:
            return []
        start, length = span
        result = []
        for i in range(length):
            elem = start + 4 * i
            result.append(self.table(elem + self.u32(elem, what), f"{what}[{i}]"))
        return result

    def union_table(self, table: _Table, type_slot: int, value_slot: int, what: str) -> None:
        """A union's value, checked as a table (its fields are scalars for nearly all options)."""
        union_type = self.scalar(table, type_slot, "B", 0, what)
        pos = self.ref(table, value_slot, what)
        if union_type != 0 and pos is not None:
            self.table(pos, what)


@functools.cache
def _known_tensor_types() -> frozenset[int]:
    try:  # ships with ai-edge-litert; needs only the flatbuffers package
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - other LiteRT builds
        return frozenset(range(32))
    return frozenset(v for k, v in vars(schema.TensorType).items() if not k.startswith("_") and isinstance(v, int))


def _check_indices(values: np.ndarray, count: int, what: str, allow_optional: bool) -> None:
    low = -1 if allow_optional else 0  # -1 marks an omitted optional operator input
    if values.size and (values.min() < low or values.max() >= count):
        raise _CorruptModel(f"{what} refers to a tensor that does not exist")


#: TensorType -> bytes per element, for the types whose constant buffers are checked against their
#: shape (schema.fbs numbering); others (STRING, INT4, variants, resources) are not size-checked.
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 8, 15: 4, 16: 2}
#: TensorType -> (lowest, highest) zero point a quantized tensor of that type may have.
_ZERO_POINT_RANGE = {9: (-128, 127), 3: (0, 255), 7: (-32768, 32767), 16: (0, 65535), 2: (-(2**31), 2**31 - 1), 15: (0, 2**32 - 1)}
#: The most bytes any one tensor may declare (a corrupt dimension overflows allocations otherwise).
_MAX_TENSOR_BYTES = 2**34


def _check_quantization(reader: _FlatbufferReader, quant: _Table, shape: np.ndarray, tensor_type: int, what: str) -> None:
    """Scales finite and positive, zero points in the type's range, per-channel counts that fit the shape."""
    scales = reader.ints(quant, 8, "f4", f"{what}.quantization.scale")
    zero_points = reader.ints(quant, 10, "i8", f"{what}.quantization.zero_point")
    if scales.size and not (np.isfinite(scales).all() and (scales > 0).all()):
        bad = scales[~(np.isfinite(scales) & (scales > 0))][0]
        raise _CorruptModel(f"{what} has quantization scale {bad}; scales must be finite and positive")
    if zero_points.size and scales.size and zero_points.size != scales.size:
        raise _CorruptModel(f"{what} has {scales.size} quantization scales but {zero_points.size} zero points")
    low, high = _ZERO_POINT_RANGE.get(tensor_type, (-(2**63), 2**63 - 1))
    if zero_points.size and (zero_points.min() < low or zero_points.max() > high):
        raise _CorruptModel(f"{what} has a zero point outside [{low}, {high}] for its element type")
    if scales.size > 1:  # per-channel: one scale per slice along quantized_dimension
        axis = reader.scalar(quant, 16, "i", 0, f"{what}.quantization.quantized_dimension")
        if not 0 <= axis < shape.size or int(shape[axis]) != scales.size:
            raise _CorruptModel(f"{what} has {scales.size} per-channel scales along dimension {axis} of shape {shape.tolist()}")


def _walk_model(buf: bytes, file_size: int) -> dict[str, int]:
    """Check every part of the model the interpreter reads; return a few counts."""
    reader = _FlatbufferReader(buf, min(file_size, _MAX_FLATBUFFER_BYTES))
    model = reader.table(reader.u32(0, "root offset"), "Model")
    version = reader.scalar(model, 4, "I", 0, "Model.version")
    if version != TFLITE_SCHEMA_VERSION:
        raise _CorruptModel(f"schema version is {version}, expected {TFLITE_SCHEMA_VERSION}")

    reader.string(model, 10, "Model.description")
    reader.ints(model, 14, "i4", "Model.metadata_buffer")
    opcodes = reader.tables(model, 6, "operator_codes")
    for i, opcode in enumerate(opcodes):
        reader.string(opcode, 6, f"operator_codes[{i}].custom_code")

    buffers = reader.tables(model, 12, "buffers")
    for i, buffer in enumerate(buffers):
        reader.vector(buffer, 4, 1, f"buffers[{i}].data")
        offset = reader.scalar(buffer, 6, "Q", 0, f"buffers[{i}].offset")
        size = reader.scalar(buffer, 8, "Q", 0, f"buffers[{i}].size")
        if offset > 1 and offset + size > file_size:  # offset 0/1: no data outside the flatbuffer
            raise _CorruptModel(f"buffers[{i}] points at bytes {offset}..{offset + size} beyond the file end")

    tensor_types = _known_tensor_types()
    subgraphs = reader.tables(model, 8, "subgraphs")
    if not subgraphs:
        raise _CorruptModel("the model has no subgraph")
    for s, subgraph in enumerate(subgraphs):
        where = f"subgraphs[{s}]"
        tensors = reader.tables(subgraph, 4, f"{where}.tensors")
        constant: set[int] = set()  # tensors backed by weight data, which no operator may write
        readable: set[int] = set()  # variables; then graph inputs, constants and what earlier operators wrote
        for t, tensor in enumerate(tensors):
            what = f"{where}.tensors[{t}]"
            shape = reader.ints(tensor, 4, "i4", f"{what}.shape")
            if (shape < -1).any():
                raise _CorruptModel(f"{what} has a negative dimension")
            reader.ints(tensor, 18, "i4", f"{what}.shape_signature")
            tensor_type = reader.scalar(tensor, 6, "b", 0, f"{what}.type")
            if tensor_type not in tensor_types:
                raise _CorruptModel(f"{what} has an unknown element type")
            buffer_index = reader.scalar(tensor, 8, "I", 0, f"{what}.buffer")
            if buffer_index >= max(len(buffers), 1):
                raise _CorruptModel(f"{what} refers to a buffer that does not exist")
            elements = int(np.prod(np.maximum(shape.astype(np.int64), 1), dtype=np.float64)) if shape.size else 1
            if elements * _ELEMENT_BYTES.get(tensor_type, 1) > _MAX_TENSOR_BYTES:
                raise _CorruptModel(f"{what} declares shape {shape.tolist()}, more than {_MAX_TENSOR_BYTES} bytes")
            sparse = reader.ref(tensor, 16, f"{what}.sparsity") is not None
            variable = reader.scalar(tensor, 14, "B", 0, f"{what}.is_variable")
            if variable:
                readable.add(t)
            elif 0 < buffer_index < len(buffers):
                data_span = reader.vector(buffers[buffer_index], 4, 1, f"buffers[{buffer_index}].data")
                if (data_span is not None and data_span[1]) or reader.scalar(buffers[buffer_index], 6, "Q", 0, "buffer.offset") > 1:
                    constant.add(t)
            if 0 < buffer_index < len(buffers) and tensor_type in _ELEMENT_BYTES and not sparse and (shape >= 0).all():
                span = reader.vector(buffers[buffer_index], 4, 1, f"buffers[{buffer_index}].data")
                if span is not None and span[1] and span[1] != elements * _ELEMENT_BYTES[tensor_type]:
                    raise _CorruptModel(
                        f"{what} of shape {shape.tolist()} needs {elements * _ELEMENT_BYTES[tensor_type]} bytes, its buffer holds {span[1]}"
                    )
            reader.string(tensor, 10, f"{what}.name")
            quant_pos = reader.ref(tensor, 12, f"{what}.quantization")
            if quant_pos is not None:
                quant = reader.table(quant_pos, f"{what}.quantization")
                _check_quantization(reader, quant, shape, tensor_type, what)
                for slot, fmt, name in (
                    (4, "f4", "min"),
                    (6, "f4", "max"),
                    (8, "f4", "scale"),
                    (10, "i8", "zero_point"),
                ):
                    reader.ints(quant, slot, fmt, f"{what}.quantization.{name}")
                reader.union_table(quant, 12, 14, f"{what}.quantization.details")
            sparsity_pos = reader.ref(tensor, 16, f"{what}.sparsity")
            if sparsity_pos is not None:
                reader.table(sparsity_pos, f"{what}.sparsity")

        graph_inputs = reader.ints(subgraph, 6, "i4", f"{where}.inputs")
        _check_indices(graph_inputs, len(tensors), f"{where}.inputs", False)
        readable |= constant | set(graph_inputs.tolist())
        _check_indices(reader.ints(subgraph, 8, "i4", f"{where}.outputs"), len(tensors), f"{where}.outputs", False)
        reader.string(subgraph, 12, f"{where}.name")
        for o, operator in enumerate(reader.tables(subgraph, 10, f"{where}.operators")):
            what = f"{where}.operators[{o}]"
            if reader.scalar(operator, 4, "I", 0, f"{what}.opcode_index") >= len(opcodes):
                raise _CorruptModel(f"{what} refers to an operator code that does not exist")
            for slot, name in ((6, "inputs"), (8, "outputs"), (20, "intermediates")):
                indices = reader.ints(operator, slot, "i4", f"{what}.{name}")
                _check_indices(indices, len(tensors), f"{what}.{name}", True)
                if name == "inputs":
                    unwritten = sorted(i for i in indices.tolist() if i >= 0 and i not in readable)
                    if unwritten:  # LiteRT: "Input tensor N lacks data" at invoke
                        raise _CorruptModel(f"{what} reads tensor {unwritten[0]}, which is no input or constant and no earlier operator writes")
                if name == "outputs" and constant.intersection(indices.tolist()):
                    raise _CorruptModel(f"{what} writes to constant tensor {sorted(constant.intersection(indices.tolist()))[0]}")
                if name == "outputs":
                    readable.update(indices.tolist())
            reader.union_table(operator, 10, 12, f"{what}.builtin_options")
            reader.vector(operator, 14, 1, f"{what}.custom_options")
            reader.ints(operator, 18, "u1", f"{what}.mutating_variable_inputs")
            reader.union_table(operator, 26, 28, f"{what}.builtin_options_2")

    for m, metadata in enumerate(reader.tables(model, 16, "metadata")):
        reader.string(metadata, 4, f"metadata[{m}].name")
        if reader.scalar(metadata, 6, "I", 0, f"metadata[{m}].buffer") >= len(buffers):
            raise _CorruptModel(f"metadata[{m}] refers to a buffer that does not exist")
    for g, signature in enumerate(reader.tables(model, 18, "signature_defs")):
        where = f"signature_defs[{g}]"
        for slot, name in ((4, "inputs"), (6, "outputs")):
            for k, tensor_map in enumerate(reader.tables(signature, slot, f"{where}.{name}")):
                reader.string(tensor_map, 4, f"{where}.{name}[{k}].name")
        reader.string(signature, 8, f"{where}.signature_key")
        if reader.scalar(signature, 12, "I", 0, f"{where}.subgraph_index") >= len(subgraphs):
            raise _CorruptModel(f"{where} refers to a subgraph that does not exist")
    return {"subgraphs": len(subgraphs), "buffers": len(buffers), "operator_codes": len(opcodes)}


def verify_tflite_file(path: str | os.PathLike[str]) -> bytes:
    """Check that ``path`` holds a structurally valid TFLite flatbuffer and return its bytes.

    Cheap checks first (exists, regular file, size, ``TFL3`` identifier), then a bounds-checked
    walk of the flatbuffer (see the module docstring), all in-process.

    Args:
        path: the ``.tflite`` file.

    Returns:
        The file's content.

    Raises:
        ArtifactError: the file is missing, unreadable, or not a valid TFLite model.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"TFLite model {path} does not exist; pass the path of an exported .tflite file")
    if not path.is_file():
        raise ArtifactError(f"TFLite model {path} is not a regular file; pass the path of a .tflite file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read TFLite model {path}: {exc.strerror or exc}") from None
    if not data:
        raise ArtifactError(f"TFLite model {path} is empty (0 bytes); re-export it")
    if len(data) < _MIN_FILE_BYTES:
        raise ArtifactError(f"TFLite model {path} is only {len(data)} bytes, too small to be a model; re-export it")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ArtifactError(
            f"{path} is not a TFLite model: file identifier is {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r}; "
            "pass a .tflite file"
        )
    try:
        counts = _walk_model(data, len(data))
    except _CorruptModel as exc:
        raise ArtifactError(f"TFLite model {path} is corrupt or truncated ({exc}); re-export it") from None
    logger.debug("verified %s (%d bytes): %s", path, len(data), counts)
    return data


# --------------------------------------------------------------------------------------------
# Reading (and adding) model facts without TensorFlow: operator codes, metadata entries
# --------------------------------------------------------------------------------------------

# Model table slots (schema.fbs): version, operator_codes, subgraphs, description, buffers,
# metadata_buffer, metadata, signature_defs.
_MODEL_SLOTS = (4, 6, 8, 10, 12, 14, 16, 18)
_BUILTIN_CUSTOM = 32  # BuiltinOperator.CUSTOM


def _checked_model(source: bytes | str | os.PathLike[str]) -> tuple[bytes, _FlatbufferReader, _Table]:
    """The model's bytes, verified (as :func:`verify_tflite_file` does), with a reader on its root table."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) < _MIN_FILE_BYTES or data[4:8] != TFLITE_IDENTIFIER:
            raise ArtifactError(f"the {len(data)} bytes given are not a TFLite model (no {TFLITE_IDENTIFIER!r} identifier)")
        try:
            _walk_model(data, len(data))
        except _CorruptModel as exc:
            raise ArtifactError(f"the TFLite model bytes are corrupt or truncated ({exc})") from None
    else:
        data = verify_tflite_file(source)
    reader = _FlatbufferReader(data, min(len(data), _MAX_FLATBUFFER_BYTES))
    return data, reader, reader.table(reader.u32(0, "root offset"), "Model")


@functools.cache
def _builtin_names() -> dict[int, str]:
    try:  # ships with ai-edge-litert; needs only the flatbuffers package
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - other LiteRT builds
        return {}
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def tflite_operator_counts(source: bytes | str | os.PathLike[str]) -> dict[str, int]:
    """How many operators of each kind the model's subgraphs hold, read from the flatbuffer.

    Names are the schema's ``BuiltinOperator`` names (``CONV_2D``), or a custom operator's
    ``custom_code``; only operator codes some operator uses are counted.

    Raises:
        ArtifactError: not a valid TFLite model.
    """
    _, reader, model = _checked_model(source)
    names = []
    for i, opcode in enumerate(reader.tables(model, 6, "operator_codes")):
        # Codes above 127 live in builtin_code; older files fill only the int8 deprecated field.
        code = max(reader.scalar(opcode, 4, "b", 0, f"operator_codes[{i}]"), reader.scalar(opcode, 10, "i", 0, f"operator_codes[{i}]"))
        if code == _BUILTIN_CUSTOM:
            names.append(reader.text(opcode, 6, f"operator_codes[{i}].custom_code") or "CUSTOM")
        else:
            names.append(_builtin_names().get(code, f"BUILTIN_{code}"))
    counts: dict[str, int] = {}
    for g, subgraph in enumerate(reader.tables(model, 8, "subgraphs")):
        for o, operator in enumerate(reader.tables(subgraph, 10, f"subgraphs[{g}].operators")):
            name = names[reader.scalar(operator, 4, "I", 0, f"subgraphs[{g}].operators[{o}]")]
            counts[name] = counts.get(name, 0) + 1
    return counts


def _buffer_bytes(reader: _FlatbufferReader, buffer: _Table, what: str) -> bytes:
    span = reader.vector(buffer, 4, 1, what)
    if span is not None:
        start, length = span
        return bytes(reader.buf[start : start + length])
    offset = reader.scalar(buffer, 6, "Q", 0, what)
    size = reader.scalar(buffer, 8, "Q", 0, what)
    return bytes(reader.buf[offset : offset + size]) if offset > 1 else b""


def tflite_metadata(source: bytes | str | os.PathLike[str]) -> dict[str, bytes]:
    """The model's ``Model.metadata`` entries: name -> the bytes of the buffer each points at.

    Converters write a few (``min_runtime_version``, ``CONVERSION_METADATA``); edgetl adds
    ``edgetl`` (labels and preprocessing contract as JSON, see :mod:`edgetl.core.metadata`).

    Raises:
        ArtifactError: not a valid TFLite model.
    """
    _, reader, model = _checked_model(source)
    buffers = reader.tables(model, 12, "buffers")
    entries = {}
    for m, metadata in enumerate(reader.tables(model, 16, "metadata")):
        name = reader.text(metadata, 4, f"metadata[{m}].name") or ""
        index = reader.scalar(metadata, 6, "I", 0, f"metadata[{m}].buffer")
        entries[name] = _buffer_bytes(reader, buffers[index], f"metadata[{m}] buffer")
    return entries


def add_tflite_metadata(source: bytes | str | os.PathLike[str], name: str, payload: bytes) -> bytes:
    """A copy of the model with a ``Model.metadata`` entry ``name`` holding ``payload``.

    The original flatbuffer is kept byte for byte and a new root ``Model`` table is put in
    front of it (a multiple of 16 bytes, so every weight buffer keeps its alignment): flatbuffer
    offsets are relative and point forward, so the new table can reuse the old operator codes,
    subgraphs, buffers and signatures as they are, and list one more buffer (the payload) and one
    more metadata entry. Nothing is unpacked and re-serialised, so fields this code does not know
    cannot be dropped. An existing entry of the same name is replaced (its old bytes stay,
    unreferenced).

    Raises:
        ArtifactError: not a valid TFLite model, or one this cannot extend (weights stored past
            the 2 GiB flatbuffer limit, or a Model table with fields newer than the schema known here).
    """
    data, reader, model = _checked_model(source)
    if model.vtable_len > 4 + 2 * len(_MODEL_SLOTS):
        raise ArtifactError("the TFLite model has Model fields newer than this edgetl knows; cannot add metadata to it")
    buffers = reader.tables(model, 12, "buffers")
    if any(reader.scalar(b, 6, "Q", 0, "buffer") > 1 for b in buffers):
        raise ArtifactError("the TFLite model keeps weights outside its flatbuffer (>2 GiB); cannot add metadata to it")
    kept_metadata = [t.pos for m, t in enumerate(reader.tables(model, 16, "metadata")) if reader.text(t, 4, f"metadata[{m}].name") != name]
    targets = {slot: reader.ref(model, slot, "Model") for slot in _MODEL_SLOTS[1:]}
    version = reader.scalar(model, 4, "I", TFLITE_SCHEMA_VERSION, "Model.version")

    out = bytearray(b"\0\0\0\0" + TFLITE_IDENTIFIER)  # root offset, filled in below

    def align(n: int, extra: int = 0) -> None:
        out.extend(b"\0" * ((-(len(out) + extra)) % n))

    # new Model table: vtable (one u16 per slot), then soffset + one u32 per slot
    model_vtable = len(out)
    out.extend(struct.pack("<HH", 4 + 2 * len(_MODEL_SLOTS), 4 + 4 * len(_MODEL_SLOTS)))
    out.extend(b"\0" * (2 * len(_MODEL_SLOTS)))
    align(4)
    model_table = len(out)
    out.extend(struct.pack("<i", model_table - model_vtable) + b"\0" * (4 * len(_MODEL_SLOTS)))
    buffers_vector = len(out)
    out.extend(struct.pack("<I", len(buffers) + 1) + b"\0" * (4 * (len(buffers) + 1)))
    metadata_vector = len(out)
    out.extend(struct.pack("<I", len(kept_metadata) + 1) + b"\0" * (4 * (len(kept_metadata) + 1)))
    # new Metadata table {name, buffer}, its name, new Buffer table {data}, the payload (16-aligned)
    metadata_vtable = len(out)
    out.extend(struct.pack("<HHHH", 8, 12, 4, 8))
    metadata_table = len(out)
    out.extend(struct.pack("<iII", metadata_table - metadata_vtable, 0, len(buffers)))
    name_string = len(out)
    encoded = name.encode("utf-8")
    out.extend(struct.pack("<I", len(encoded)) + encoded + b"\0")
    align(4)
    buffer_vtable = len(out)
    out.extend(struct.pack("<HHH", 6, 8, 4) + b"\0\0")
    buffer_table = len(out)
    out.extend(struct.pack("<iI", buffer_table - buffer_vtable, 0))
    align(16, extra=4)
    payload_vector = len(out)
    out.extend(struct.pack("<I", len(payload)) + bytes(payload))
    align(16)
    shift = len(out)  # the original file starts here; its positions move by `shift`

    def point(field: int, target: int) -> None:
        if target <= field:  # flatbuffer offsets are unsigned: a target must lie after its field
            raise AssertionError(f"offset at {field} would point backwards to {target}")
        struct.pack_into("<I", out, field, target - field)

    point(0, model_table)
    values = {4: None, 12: buffers_vector, 16: metadata_vector}
    for k, slot in enumerate(_MODEL_SLOTS):
        field = model_table + 4 + 4 * k
        if slot == 4:
            struct.pack_into("<I", out, field, version)
        else:
            target = values.get(slot) or (targets[slot] + shift if targets[slot] is not None else None)
            if target is None:
                continue
            point(field, target)
        struct.pack_into("<H", out, model_vtable + 4 + 2 * k, 4 + 4 * k)
    for i, buffer in enumerate(buffers):
        point(buffers_vector + 4 + 4 * i, buffer.pos + shift)
    point(buffers_vector + 4 + 4 * len(buffers), buffer_table)
    for i, pos in enumerate(kept_metadata):
        point(metadata_vector + 4 + 4 * i, pos + shift)
    point(metadata_vector + 4 + 4 * len(kept_metadata), metadata_table)
    point(metadata_table + 4, name_string)
    point(buffer_table + 4, payload_vector)
    result = bytes(out) + data
    _checked_model(result)  # the walk every loader does, on what was just written
    return result


# --------------------------------------------------------------------------------------------
# Running models
# --------------------------------------------------------------------------------------------


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
        x = quantize(x, in_info) if in_info.quantized else x.astype(np.dtype(in_info.dtype), copy=False)

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
        out = np.concatenate(results)
        out_info = self.outputs[0]
        return dequantize(out, out_info) if out_info.quantized else out.astype(np.float32, copy=False)

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
