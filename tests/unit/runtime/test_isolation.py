"""A native runtime that aborts (TFLite Micro calls abort() on models it cannot handle) ends a
child process, never edgetl: the caller gets a one-line ArtifactError; edgetl errors pass through."""

from __future__ import annotations

import os

import pytest

from edgetl.core.errors import ArtifactError, DataError
from edgetl.runtime import tflm


def _abort() -> None:
    os.abort()


def _data_error(name: str) -> None:
    raise DataError(f"bad {name}")


def _unsupported() -> None:
    raise tflm.UnsupportedOpsError(["SIGN"], "TFLite Micro has no kernel for operator(s) SIGN")


def _add(a: int, b: int) -> int:
    return a + b


def test_an_abort_in_the_child_becomes_a_one_line_error():
    with pytest.raises(ArtifactError, match="crashed") as info:
        tflm.isolated(_abort)
    assert "\n" not in str(info.value)


def test_results_and_edgetl_errors_come_back_as_themselves():
    assert tflm.isolated(_add, 2, 3) == 5
    with pytest.raises(DataError, match="bad input"):
        tflm.isolated(_data_error, "input")
    with pytest.raises(tflm.UnsupportedOpsError) as info:
        tflm.isolated(_unsupported)
    assert info.value.ops == ["SIGN"]
