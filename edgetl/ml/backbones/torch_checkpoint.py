"""Read the tensors of a legacy (non-zip) PyTorch checkpoint into numpy, without PyTorch and without running its code.

A PyTorch checkpoint is a pickle, and an unrestricted unpickler runs whatever callable the file names
(``os.system``, ``builtins.exec``): loading one is executing it. This reader accepts the handful of
globals a plain state dict needs and refuses every other one before it is called, so a hostile file
ends in a one-line :class:`ConfigError`, and nothing from it ran.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the default before torch
1.6) is a sequence of pickles followed by raw data:

1. the magic number ``0x1950a86a20f9469cfc6c``, 2. the protocol version ``1001``, 3. a ``sys_info``
dict (byte order, type sizes), 4. the object itself (here an ``OrderedDict`` of tensors, each
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``, whose
storages are persistent ids ``('storage', torch.FloatStorage, key, location, numel, view_metadata)``),
5. the list of storage keys, 6. for each key in that order: a little-endian 8-byte element count
followed by the raw little-endian elements.

Tensors are views (offset, size, stride) into storages, which may be shared and are not always
contiguous; every view is checked to lie inside its storage before it is read.

This module needs numpy only (no TensorFlow, no PyTorch).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ConfigError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: A checkpoint larger than this is refused before it is read (edge backbones are tens of MB).
MAX_FILE_BYTES = 2 * 1024**3
#: The storage classes a state dict may name, and their numpy element types (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_RESAVE = "torch.save(torch.load(old), new, _use_new_zipfile_serialization=False)"


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` etc. unpickle to: a name and a dtype, not callable."""

    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    """A persistent id: the storage ``key`` holding ``numel`` elements of ``dtype`` (data read later)."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor to cut from a storage once the storages' data has been read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _StateDict(collections.OrderedDict):
    """What ``collections.OrderedDict`` unpickles to: a plain ordered dict that ignores pickled attributes.

    A saved state dict carries a ``_metadata`` attribute (module versions) in its pickled state;
    dropping it keeps the unpickler from setting attributes that the file chose.
    """

    def __setstate__(self, state: Any) -> None:
        return None


class _Refused(Exception):
    """A global outside the allow-list (turned into ConfigError with the file's name)."""

    def __init__(self, qualified: str) -> None:
        super().__init__(qualified)
        self.qualified = qualified


class _Malformed(Exception):
    """The file's structure is not a legacy state dict (turned into ConfigError with the file's name)."""


def _int(value: Any, what: str) -> int:
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise _Malformed(f"{what} is {type(value).__name__}, not an integer")
    return value


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest: Any) -> _TensorRef:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records the view, checks its numbers."""
    if not isinstance(storage, _StorageRef):
        raise _Malformed("a tensor's storage is not a storage reference")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise _Malformed("a tensor's size and stride are not tuples of the same length")
    offset = _int(storage_offset, "a tensor's storage offset")
    dims = tuple(_int(s, "a tensor dimension") for s in size)
    steps = tuple(_int(s, "a tensor stride") for s in stride)
    if len(dims) > 16:
        raise _Malformed(f"a tensor has {len(dims)} dimensions")
    if offset < 0 or any(d < 0 for d in dims) or any(s < 0 for s in steps):
        raise _Malformed(f"a tensor has a negative offset, size or stride (offset {offset}, size {dims}, stride {steps})")
    if all(d > 0 for d in dims):
        last = offset + sum((d - 1) * s for d, s in zip(dims, steps, strict=True))
        if last >= storage.numel:
            raise _Malformed(
                f"a tensor of size {dims} (offset {offset}, stride {steps}) reaches element {last} "
                f"of storage {storage.key!r}, which holds {storage.numel}"
            )
    return _TensorRef(storage, offset, dims, steps)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; every other one is refused before it can be called."""

    def __init__(self, file: io.BytesIO, storages: dict[str, _StorageRef] | None) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise _Malformed("a header pickle references a storage")
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise _Malformed(f"unknown persistent id {str(pid)[:60]!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise _Malformed("a storage reference names no storage type or key")
        if view_metadata is not None:
            raise _Malformed("a storage view (pre-1.0 PyTorch) is not supported")
        numel = _int(numel, "a storage size")
        if numel < 0:
            raise _Malformed(f"storage {key!r} has a negative size")
        known = self._storages.get(key)
        if known is None:
            known = self._storages[key] = _StorageRef(key, storage_type.dtype, numel)
        elif (known.dtype, known.numel) != (storage_type.dtype, numel):
            raise _Malformed(f"storage {key!r} is referenced with two types or sizes")
        return known


def _load(stream: io.BytesIO, storages: dict[str, _StorageRef] | None) -> Any:
    return _RestrictedUnpickler(stream, storages).load()


def read_legacy_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy PyTorch state dict, by name, as contiguous numpy arrays (own memory).

    Args:
        path: a ``.pth``/``.pt`` file written by ``torch.save(state_dict)`` in the legacy format.

    Returns:
        ``{name: array}`` in the file's order.

    Raises:
        ConfigError: the file is missing, too large, a zip checkpoint, truncated or malformed, or
            references any global besides ``OrderedDict``, ``_rebuild_tensor_v2`` and the storage
            types (a pickle that could run code). The message is one line and names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path} is {size / 1024**3:.1f} GiB; edgetl reads PyTorch weights files up to {MAX_FILE_BYTES // 1024**3} GiB")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read PyTorch weights file {path}: {exc.strerror or exc}") from None
    if data[:4] == _ZIP_MAGIC:
        raise ConfigError(
            f"{path} is a zip-format PyTorch checkpoint; edgetl reads only the legacy (non-zip) format: "
            f"re-save it with {_LEGACY_RESAVE}"
        )
    try:
        return _parse(data)
    except _Refused as exc:
        raise ConfigError(
            f"{path} is not a plain PyTorch weights file: it references {exc.qualified}, which could run code; edgetl refuses it"
        ) from None
    except _Malformed as exc:
        raise ConfigError(f"{path} is not a readable legacy PyTorch state dict: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError, RecursionError, struct.error) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise ConfigError(f"{path} is truncated or not a legacy PyTorch checkpoint ({type(exc).__name__}: {reason})") from None


def _parse(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    if _load(stream, None) != MAGIC_NUMBER:
        raise _Malformed("it does not start with the PyTorch magic number")
    protocol = _load(stream, None)
    if protocol != PROTOCOL_VERSION:
        raise _Malformed(f"protocol version {protocol!r}, expected {PROTOCOL_VERSION}")
    sys_info = _load(stream, None)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _Malformed("it was saved on a big-endian machine or has no byte-order record")
    storages: dict[str, _StorageRef] = {}
    state = _load(stream, storages)
    if not isinstance(state, dict):
        raise _Malformed(f"it holds a {type(state).__name__}, not a state dict")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise _Malformed(f"entry {str(name)[:60]!r} is not a named tensor")
    keys = _load(stream, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise _Malformed("the storage key list is not a list of distinct names")
    if set(keys) != set(storages):
        raise _Malformed(f"the storage key list ({len(keys)}) does not match the storages the tensors use ({len(storages)})")
    view = memoryview(data)
    position = stream.tell()
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages[key]
        if position + 8 > len(data):
            raise _Malformed(f"the file ends before storage {key!r}")
        (count,) = struct.unpack_from("<q", data, position)
        if count != ref.numel:
            raise _Malformed(f"storage {key!r} holds {count} elements, its reference says {ref.numel}")
        nbytes = count * ref.dtype.itemsize
        start = position + 8
        if start + nbytes > len(data):
            raise _Malformed(f"the file ends inside storage {key!r} ({len(data) - start} of {nbytes} bytes)")
        arrays[key] = np.frombuffer(view[start : start + nbytes], dtype=ref.dtype)
        position = start + nbytes
    if position != len(data):
        raise _Malformed(f"{len(data) - position} bytes follow the last storage")
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        storage = arrays[tensor.storage.key]
        itemsize = storage.itemsize
        if any(d == 0 for d in tensor.size):
            out[name] = np.zeros(tensor.size, dtype=storage.dtype)
            continue
        # bounds checked in _rebuild_tensor_v2: the view stays inside the storage
        strided = np.lib.stride_tricks.as_strided(
            storage[tensor.offset :], shape=tensor.size, strides=tuple(s * itemsize for s in tensor.stride), writeable=False
        )
        out[name] = np.array(strided, copy=True, order="C")
    return out
