"""Bounds-checked reads of a flatbuffer, after ``flatbuffers::Verifier`` (C++).

Every read checks that it lies inside the buffer, that tables and vectors are aligned and that
vtables have a sane size, and raises :class:`CorruptFlatbuffer` otherwise; nothing here knows the
TFLite schema (:mod:`edgetl.runtime.tflite_file` walks it with these primitives).
"""

from __future__ import annotations

import struct

import numpy as np


class CorruptFlatbuffer(Exception):
    """The flatbuffer walk found an inconsistency (callers turn it into a one-line ArtifactError)."""


class Table:
    """A table's position and its vtable's, with both sizes (checked to lie in the buffer)."""

    __slots__ = ("pos", "vtable", "vtable_len", "table_len")

    def __init__(self, pos: int, vtable: int, vtable_len: int, table_len: int) -> None:
        self.pos = pos
        self.vtable = vtable
        self.vtable_len = vtable_len
        self.table_len = table_len


class FlatbufferReader:
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
            raise CorruptFlatbuffer(f"{what} at byte {pos} lies outside the {self.limit}-byte flatbuffer")
        return fmt.unpack_from(self.buf, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        return self._read(self._U32, pos, what)

    def table(self, pos: int, what: str) -> Table:
        if pos % 4:
            raise CorruptFlatbuffer(f"{what} table at byte {pos} is misaligned")
        vtable = pos - self._read(self._I32, pos, what)
        if vtable % 2:
            raise CorruptFlatbuffer(f"{what} vtable at byte {vtable} is misaligned")
        vtable_len = self._read(self._U16, vtable, f"{what} vtable")
        table_len = self._read(self._U16, vtable + 2, f"{what} vtable")
        if vtable_len < 4 or vtable_len % 2 or vtable + vtable_len > self.limit:
            raise CorruptFlatbuffer(f"{what} vtable at byte {vtable} has an invalid size {vtable_len}")
        if table_len < 4 or pos + table_len > self.limit:
            raise CorruptFlatbuffer(f"{what} table at byte {pos} has an invalid size {table_len}")
        return Table(pos, vtable, vtable_len, table_len)

    def field(self, table: Table, slot: int, size: int, what: str) -> int | None:
        """Absolute position of a field's inline value, or None when the field is absent."""
        if slot >= table.vtable_len:
            return None
        offset = self._read(self._U16, table.vtable + slot, what)
        if offset == 0:
            return None
        if offset + size > table.table_len:
            raise CorruptFlatbuffer(f"{what} field runs past the end of its table")
        return table.pos + offset

    def scalar(self, table: Table, slot: int, fmt: str, default: int, what: str) -> int:
        packer = struct.Struct("<" + fmt)
        pos = self.field(table, slot, packer.size, what)
        return default if pos is None else self._read(packer, pos, what)

    def ref(self, table: Table, slot: int, what: str) -> int | None:
        pos = self.field(table, slot, 4, what)
        if pos is None:
            return None
        return pos + self.u32(pos, what)

    def vector(self, table: Table, slot: int, elem_size: int, what: str) -> tuple[int, int] | None:
        """``(start, length)`` of a vector field, checked to lie inside the buffer."""
        pos = self.ref(table, slot, what)
        if pos is None:
            return None
        if pos % 4:
            raise CorruptFlatbuffer(f"{what} vector at byte {pos} is misaligned")
        length = self.u32(pos, what)
        start = pos + 4
        if start + length * elem_size > self.limit:
            raise CorruptFlatbuffer(f"{what} vector of {length} elements at byte {pos} runs past the end of the file")
        return start, length

    def string(self, table: Table, slot: int, what: str) -> None:
        span = self.vector(table, slot, 1, what)
        if span is not None:
            start, length = span
            if start + length >= self.limit or self.buf[start + length] != 0:
                raise CorruptFlatbuffer(f"{what} string at byte {start} is not terminated")
            try:
                self.buf[start : start + length].decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptFlatbuffer(f"{what} string at byte {start} is not UTF-8") from None

    def text(self, table: Table, slot: int, what: str) -> str | None:
        """A string field's value (checked as :meth:`string` does), or None when absent."""
        self.string(table, slot, what)
        span = self.vector(table, slot, 1, what)
        if span is None:
            return None
        start, length = span
        return self.buf[start : start + length].decode("utf-8")

    def ints(self, table: Table, slot: int, fmt: str, what: str) -> np.ndarray:
        dtype = np.dtype("<" + fmt)
        span = self.vector(table, slot, dtype.itemsize, what)
        if span is None:
            return np.empty(0, dtype)
        start, length = span
        return np.frombuffer(self.buf, dtype=dtype, count=length, offset=start)

    def tables(self, table: Table, slot: int, what: str) -> list[Table]:
        span = self.vector(table, slot, 4, what)
        if span is None:
            return []
        start, length = span
        result = []
        for i in range(length):
            elem = start + 4 * i
            result.append(self.table(elem + self.u32(elem, what), f"{what}[{i}]"))
        return result

    def union_table(self, table: Table, type_slot: int, value_slot: int, what: str) -> None:
        """A union's value, checked as a table (its fields are scalars for nearly all options)."""
        union_type = self.scalar(table, type_slot, "B", 0, what)
        pos = self.ref(table, value_slot, what)
        if union_type != 0 and pos is not None:
            self.table(pos, what)
