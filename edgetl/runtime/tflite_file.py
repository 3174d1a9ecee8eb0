"""The ``.tflite`` file itself, read without TensorFlow or an interpreter: verify, list operators, metadata.

A model file is checked by :func:`verify_tflite_file` before any interpreter sees it: a
bounds-checked walk over the flatbuffer (root table, vtables, every vector and string the
interpreter reads, buffer offsets, tensor/opcode/buffer indices). A truncated or corrupted
file then fails with a one-line :class:`~edgetl.core.errors.ArtifactError` instead of whatever
the native code would do with it. The generated ``ai_edge_litert.schema_py_generated``
reader is not used for that walk because its reads are unchecked: a corrupted signed
vtable offset becomes a negative index (which Python wraps to the end of the buffer) and
strings are sliced (which silently truncates); it supplies the tensor-type enum instead.

On the same checked reader: the operators a model holds (:func:`tflite_operator_counts`), its
``Model.metadata`` entries (:func:`tflite_metadata`) and a copy with one more entry
(:func:`add_tflite_metadata`, how edgetl embeds labels and preprocessing). The LiteRT runner that
loads a verified file is :mod:`edgetl.runtime.litert`.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from pathlib import Path

import numpy as np

from edgetl.core.errors import ArtifactError
from edgetl.runtime.flatbuffer import CorruptFlatbuffer, FlatbufferReader, Table

logger = logging.getLogger(__name__)

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
# A flatbuffer addresses at most 2 GiB; larger models keep weights after it (Buffer.offset).
_MAX_FLATBUFFER_BYTES = 2**31 - 1
_MIN_FILE_BYTES = 16


# --------------------------------------------------------------------------------------------
# Verification: a walk over everything the interpreter reads
# --------------------------------------------------------------------------------------------


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
        raise CorruptFlatbuffer(f"{what} refers to a tensor that does not exist")


#: TensorType -> bytes per element, for the types whose constant buffers are checked against their
#: shape (schema.fbs numbering); others (STRING, INT4, variants, resources) are not size-checked.
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 8, 15: 4, 16: 2}


#: TensorType -> (lowest, highest) zero point a quantized tensor of that type may have.
_ZERO_POINT_RANGE = {9: (-128, 127), 3: (0, 255), 7: (-32768, 32767), 16: (0, 65535), 2: (-(2**31), 2**31 - 1), 15: (0, 2**32 - 1)}


#: The most bytes any one tensor may declare (a corrupt dimension overflows allocations otherwise).
_MAX_TENSOR_BYTES = 2**34


def _check_quantization(reader: FlatbufferReader, quant: Table, shape: np.ndarray, tensor_type: int, what: str) -> None:
    """Scales finite and positive, zero points in the type's range, per-channel counts that fit the shape."""
    scales = reader.ints(quant, 8, "f4", f"{what}.quantization.scale")
    zero_points = reader.ints(quant, 10, "i8", f"{what}.quantization.zero_point")
    if scales.size and not (np.isfinite(scales).all() and (scales > 0).all()):
        bad = scales[~(np.isfinite(scales) & (scales > 0))][0]
        raise CorruptFlatbuffer(f"{what} has quantization scale {bad}; scales must be finite and positive")
    if zero_points.size and scales.size and zero_points.size != scales.size:
        raise CorruptFlatbuffer(f"{what} has {scales.size} quantization scales but {zero_points.size} zero points")
    low, high = _ZERO_POINT_RANGE.get(tensor_type, (-(2**63), 2**63 - 1))
    if zero_points.size and (zero_points.min() < low or zero_points.max() > high):
        raise CorruptFlatbuffer(f"{what} has a zero point outside [{low}, {high}] for its element type")
    if scales.size > 1:  # per-channel: one scale per slice along quantized_dimension
        axis = reader.scalar(quant, 16, "i", 0, f"{what}.quantization.quantized_dimension")
        if not 0 <= axis < shape.size or int(shape[axis]) != scales.size:
            raise CorruptFlatbuffer(f"{what} has {scales.size} per-channel scales along dimension {axis} of shape {shape.tolist()}")


def _walk_model(buf: bytes, file_size: int) -> dict[str, int]:
    """Check every part of the model the interpreter reads; return a few counts."""
    reader = FlatbufferReader(buf, min(file_size, _MAX_FLATBUFFER_BYTES))
    model = reader.table(reader.u32(0, "root offset"), "Model")
    version = reader.scalar(model, 4, "I", 0, "Model.version")
    if version != TFLITE_SCHEMA_VERSION:
        raise CorruptFlatbuffer(f"schema version is {version}, expected {TFLITE_SCHEMA_VERSION}")

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
            raise CorruptFlatbuffer(f"buffers[{i}] points at bytes {offset}..{offset + size} beyond the file end")

    tensor_types = _known_tensor_types()
    subgraphs = reader.tables(model, 8, "subgraphs")
    if not subgraphs:
        raise CorruptFlatbuffer("the model has no subgraph")
    for s, subgraph in enumerate(subgraphs):
        where = f"subgraphs[{s}]"
        tensors = reader.tables(subgraph, 4, f"{where}.tensors")
        constant: set[int] = set()  # tensors backed by weight data, which no operator may write
        readable: set[int] = set()  # variables; then graph inputs, constants and what earlier operators wrote
        for t, tensor in enumerate(tensors):
            what = f"{where}.tensors[{t}]"
            shape = reader.ints(tensor, 4, "i4", f"{what}.shape")
            if (shape < -1).any():
                raise CorruptFlatbuffer(f"{what} has a negative dimension")
            reader.ints(tensor, 18, "i4", f"{what}.shape_signature")
            tensor_type = reader.scalar(tensor, 6, "b", 0, f"{what}.type")
            if tensor_type not in tensor_types:
                raise CorruptFlatbuffer(f"{what} has an unknown element type")
            buffer_index = reader.scalar(tensor, 8, "I", 0, f"{what}.buffer")
            if buffer_index >= max(len(buffers), 1):
                raise CorruptFlatbuffer(f"{what} refers to a buffer that does not exist")
            elements = int(np.prod(np.maximum(shape.astype(np.int64), 1), dtype=np.float64)) if shape.size else 1
            if elements * _ELEMENT_BYTES.get(tensor_type, 1) > _MAX_TENSOR_BYTES:
                raise CorruptFlatbuffer(f"{what} declares shape {shape.tolist()}, more than {_MAX_TENSOR_BYTES} bytes")
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
                    raise CorruptFlatbuffer(
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
                raise CorruptFlatbuffer(f"{what} refers to an operator code that does not exist")
            for slot, name in ((6, "inputs"), (8, "outputs"), (20, "intermediates")):
                indices = reader.ints(operator, slot, "i4", f"{what}.{name}")
                _check_indices(indices, len(tensors), f"{what}.{name}", True)
                if name == "inputs":
                    unwritten = sorted(i for i in indices.tolist() if i >= 0 and i not in readable)
                    if unwritten:  # LiteRT: "Input tensor N lacks data" at invoke
                        raise CorruptFlatbuffer(f"{what} reads tensor {unwritten[0]}, which is no input or constant and no earlier operator writes")
                if name == "outputs" and constant.intersection(indices.tolist()):
                    raise CorruptFlatbuffer(f"{what} writes to constant tensor {sorted(constant.intersection(indices.tolist()))[0]}")
                if name == "outputs":
                    readable.update(indices.tolist())
            reader.union_table(operator, 10, 12, f"{what}.builtin_options")
            reader.vector(operator, 14, 1, f"{what}.custom_options")
            reader.ints(operator, 18, "u1", f"{what}.mutating_variable_inputs")
            reader.union_table(operator, 26, 28, f"{what}.builtin_options_2")

    for m, metadata in enumerate(reader.tables(model, 16, "metadata")):
        reader.string(metadata, 4, f"metadata[{m}].name")
        if reader.scalar(metadata, 6, "I", 0, f"metadata[{m}].buffer") >= len(buffers):
            raise CorruptFlatbuffer(f"metadata[{m}] refers to a buffer that does not exist")
    for g, signature in enumerate(reader.tables(model, 18, "signature_defs")):
        where = f"signature_defs[{g}]"
        for slot, name in ((4, "inputs"), (6, "outputs")):
            for k, tensor_map in enumerate(reader.tables(signature, slot, f"{where}.{name}")):
                reader.string(tensor_map, 4, f"{where}.{name}[{k}].name")
        reader.string(signature, 8, f"{where}.signature_key")
        if reader.scalar(signature, 12, "I", 0, f"{where}.subgraph_index") >= len(subgraphs):
            raise CorruptFlatbuffer(f"{where} refers to a subgraph that does not exist")
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
    except CorruptFlatbuffer as exc:
        raise ArtifactError(f"TFLite model {path} is corrupt or truncated ({exc}); re-export it") from None
    logger.debug("verified %s (%d bytes): %s", path, len(data), counts)
    return data


# --------------------------------------------------------------------------------------------
# Reading (and adding) model facts: operator codes, metadata entries
# --------------------------------------------------------------------------------------------

# Model table slots (schema.fbs): version, operator_codes, subgraphs, description, buffers,
# metadata_buffer, metadata, signature_defs.
_MODEL_SLOTS = (4, 6, 8, 10, 12, 14, 16, 18)


_BUILTIN_CUSTOM = 32  # BuiltinOperator.CUSTOM


def _checked_model(source: bytes | str | os.PathLike[str]) -> tuple[bytes, FlatbufferReader, Table]:
    """The model's bytes, verified (as :func:`verify_tflite_file` does), with a reader on its root table."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) < _MIN_FILE_BYTES or data[4:8] != TFLITE_IDENTIFIER:
            raise ArtifactError(f"the {len(data)} bytes given are not a TFLite model (no {TFLITE_IDENTIFIER!r} identifier)")
        try:
            _walk_model(data, len(data))
        except CorruptFlatbuffer as exc:
            raise ArtifactError(f"the TFLite model bytes are corrupt or truncated ({exc})") from None
    else:
        data = verify_tflite_file(source)
    reader = FlatbufferReader(data, min(len(data), _MAX_FLATBUFFER_BYTES))
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


def _buffer_bytes(reader: FlatbufferReader, buffer: Table, what: str) -> bytes:
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
