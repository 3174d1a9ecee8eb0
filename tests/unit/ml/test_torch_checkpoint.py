"""The restricted reader of legacy PyTorch checkpoints: files written here with plain pickle (no torch).

A hostile pickle must be refused before its callable runs (each one would create a marker file);
a well-formed file with a non-contiguous view and a shared storage must round-trip exactly.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import ConfigError
from edgetl.ml.backbones.torch_checkpoint import MAGIC_NUMBER, PROTOCOL_VERSION, read_legacy_checkpoint
from tests.helpers import assert_one_line_error, run_cli

SYS_INFO = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


@contextlib.contextmanager
def fake_torch():
    """Stand-in ``torch`` modules so that plain pickle writes the globals a real checkpoint names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: the reader resolves the name to its own function
        raise AssertionError("called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch, utils
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


class _Storage:
    def __init__(self, key: str, kind: str, data: np.ndarray) -> None:
        self.key, self.kind, self.data = key, kind, data


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", getattr(sys.modules["torch"], obj.kind), obj.key, "cpu", obj.data.size, None)
        return None


def write_legacy(path: Path, state, storages: list[_Storage], *, count_fix: int = 0) -> Path:
    """A legacy checkpoint as torch.save writes it: header pickles, the state pickle, keys, raw storages."""
    with fake_torch(), open(path, "wb") as out:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, SYS_INFO):
            pickle.dump(header, out, protocol=2)
        _Pickler(out, protocol=2).dump(state)
        pickle.dump([s.key for s in storages], out, protocol=2)
        for storage in storages:
            out.write(struct.pack("<q", storage.data.size + count_fix))
            out.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
    return path


@pytest.fixture
def good_file(tmp_path):
    floats = _Storage("s0", "FloatStorage", np.arange(24, dtype=np.float32))
    longs = _Storage("s1", "LongStorage", np.array([7], dtype=np.int64))
    state = collections.OrderedDict(
        [
            ("transposed", _Tensor(floats, 0, (3, 2), (1, 3))),  # non-contiguous: a (2,3) block read column-wise
            ("strided", _Tensor(floats, 6, (3, 2, 2), (2, 8, 1))),  # same storage, offset and odd strides
            ("counter", _Tensor(longs, 0, (), ())),
        ]
    )
    return write_legacy(tmp_path / "good.pth", state, [floats, longs])


def expected_view(storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    out = np.empty(size, dtype=storage.dtype)
    for index in np.ndindex(*size):
        out[index] = storage[offset + sum(i * s for i, s in zip(index, stride, strict=True))]
    return out


def test_round_trip_non_contiguous_and_shared_storage(good_file):
    tensors = read_legacy_checkpoint(good_file)
    storage = np.arange(24, dtype=np.float32)
    assert list(tensors) == ["transposed", "strided", "counter"]
    np.testing.assert_array_equal(tensors["transposed"], expected_view(storage, 0, (3, 2), (1, 3)))
    np.testing.assert_array_equal(tensors["transposed"], storage[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(tensors["strided"], expected_view(storage, 6, (3, 2, 2), (2, 8, 1)))
    assert tensors["counter"].dtype == np.int64 and tensors["counter"].shape == () and int(tensors["counter"]) == 7
    assert tensors["transposed"].flags.c_contiguous and tensors["transposed"].flags.writeable


class _Evil:
    def __init__(self, call, argument) -> None:
        self.call, self.argument = call, argument

    def __reduce__(self):
        return (self.call, (self.argument,))


def _evil_calls(marker: Path):
    return {
        "os.system": (os.system, f"touch {marker}"),
        "builtins.exec": (exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": (eval, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval"])
@pytest.mark.parametrize("where", ["state", "inside_state", "header"])
def test_code_running_pickle_is_refused_and_does_not_run(tmp_path, name, where):
    marker = tmp_path / "pwned"
    call, argument = _evil_calls(marker)[name]
    evil = _Evil(call, argument)
    path = tmp_path / "evil.pth"
    if where == "header":
        with open(path, "wb") as out:
            pickle.dump(MAGIC_NUMBER, out, protocol=2)
            pickle.dump(evil, out, protocol=2)
    else:
        floats = _Storage("s0", "FloatStorage", np.zeros(4, dtype=np.float32))
        state = evil if where == "state" else collections.OrderedDict([("w", _Tensor(floats, 0, (4,), (1,))), ("x", evil)])
        write_legacy(path, state, [floats])
    with pytest.raises(ConfigError) as info:
        read_legacy_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    # protocol 2 spells builtins as __builtin__ and os.system as posix.system: the message names what the file says
    modules = {"os.system": ("posix", "nt", "os"), "builtins.exec": ("builtins", "__builtin__"), "builtins.eval": ("builtins", "__builtin__")}[name]
    function = name.split(".")[1]
    assert any(f"it references {m}.{function}, which could run code; edgetl refuses it" in message for m in modules), message
    assert str(path) in message
    assert not marker.exists(), "the pickle's code ran"


def test_code_running_pth_is_refused_by_the_cli(tmp_path, shapes_dir):
    marker = tmp_path / "pwned"
    floats = _Storage("s0", "FloatStorage", np.zeros(4, dtype=np.float32))
    path = write_legacy(tmp_path / "evil.pth", collections.OrderedDict([("x", _Evil(os.system, f"touch {marker}"))]), [floats])
    result = run_cli(
        "train", "--data", shapes_dir, "--out", tmp_path / "out", "--model", "efficientnet_lite0",
        "--input-size", "32", "--weights", path,
    )
    assert_one_line_error(result, "which could run code; edgetl refuses it")
    assert not marker.exists()


def _one_line_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        read_legacy_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_truncated_files_are_one_line_errors(good_file, tmp_path):
    data = good_file.read_bytes()
    for cut in sorted({1, 5, 12, 40, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1}):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        _one_line_error(path)
    (tmp_path / "empty.pth").write_bytes(b"")
    _one_line_error(tmp_path / "empty.pth")
    (tmp_path / "extra.pth").write_bytes(data + b"\0\0\0")
    _one_line_error(tmp_path / "extra.pth", "bytes follow the last storage")


def test_out_of_bounds_view_and_wrong_counts_are_refused(tmp_path):
    floats = _Storage("s0", "FloatStorage", np.zeros(24, dtype=np.float32))
    too_big = write_legacy(tmp_path / "big.pth", collections.OrderedDict([("w", _Tensor(floats, 0, (5, 5), (1, 5)))]), [floats])
    _one_line_error(too_big, "reaches element 24", "holds 24")
    offset = write_legacy(tmp_path / "offset.pth", collections.OrderedDict([("w", _Tensor(floats, 20, (5,), (1,)))]), [floats])
    _one_line_error(offset, "reaches element 24")
    negative = write_legacy(tmp_path / "neg.pth", collections.OrderedDict([("w", _Tensor(floats, 0, (4,), (-1,)))]), [floats])
    _one_line_error(negative, "negative")
    count = write_legacy(tmp_path / "count.pth", collections.OrderedDict([("w", _Tensor(floats, 0, (4,), (1,)))]), [floats], count_fix=1)
    _one_line_error(count, "holds 25 elements")


def test_zip_and_foreign_files_are_refused(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(64))
    message = _one_line_error(zipped, "zip-format", "only the legacy")
    assert "_use_new_zipfile_serialization=False" in message
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    _one_line_error(plain, "magic number")
    with pytest.raises(ConfigError, match="cannot read"):
        read_legacy_checkpoint(tmp_path / "missing.pth")
