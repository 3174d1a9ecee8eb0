"""Runtimes that run edgetl's artifacts: LiteRT, ONNX Runtime, TFLite Micro. No TensorFlow here.

* :mod:`~edgetl.runtime.formats`: the one registry of artifact formats (suffix -> open, runtime,
  version, metadata, inspector); start here.
* :mod:`~edgetl.runtime.model`: :class:`~edgetl.runtime.model.LoadedModel`, what every loaded model offers.
* :mod:`~edgetl.runtime.litert` (``.tflite`` in LiteRT), :mod:`~edgetl.runtime.tflite_file` (the
  flatbuffer: verify, operators, metadata; on :mod:`~edgetl.runtime.flatbuffer`).
* :mod:`~edgetl.runtime.onnxruntime` (``.onnx`` in ONNX Runtime), :mod:`~edgetl.runtime.ort_session`
  (the session every caller opens).
* :mod:`~edgetl.runtime.isolation` (first load of an untrusted model in a child process),
  :mod:`~edgetl.runtime.tflm` (TFLite Micro).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from typing import Any


@contextlib.contextmanager
def captured_native_output() -> Any:
    """Capture what native code writes to file descriptors 1 and 2 (LiteRT and TFLM log with printf).

    Yields a dict whose ``"text"`` is filled when the block ends.
    """
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stdout.flush()  # what Python buffered so far belongs to the real streams
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        captured: dict[str, str] = {}
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            with contextlib.suppress(Exception):  # C stdio may still hold buffered text: flush it into the sink
                ctypes.CDLL(None).fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured["text"] = sink.read().decode("utf-8", "replace")
