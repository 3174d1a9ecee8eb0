"""What native (C/C++) libraries write to file descriptor 2, captured and handed to :mod:`logging`.

TensorFlow, its converter and LiteRT log from C++ straight to fd 2: absl's "All log messages
before absl::InitializeLog()" and cudart lines at import, ``failed call to cuInit`` on a machine
without a GPU, the calibrator's ``fully_quantize: 0, inference_type: 6 ...``, LiteRT's
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``. ``TF_CPP_MIN_LOG_LEVEL`` does not
reach most of them, and a Python-level redirect of ``sys.stderr`` does not either.
:func:`native_output_to_log` points fd 2 at a temporary file for the duration of one noisy call,
then logs what was written, line by line, at DEBUG on the ``edgetl.native`` logger (the CLI shows
that logger from ``-v`` on). If the call raises, the text is logged at ``level_on_error`` and
added to the exception as a note, so a converter's own diagnostics are never lost.

The window is process-wide (fd 2 is), so keep it around the native call only. Anything else that
writes to fd 2 meanwhile lands in the log too: the CLI's console writes to its own duplicate of
the original fd 2 (``edgetl.cli.console``), so progress bars and errors are not caught. Nested or
concurrent windows share the outermost one. No TensorFlow here: the runtime layer uses it too.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The logger the captured lines go to; ``edgetl -v`` enables its DEBUG records.
NATIVE_LOGGER = "edgetl.native"

log = logging.getLogger(NATIVE_LOGGER)

_lock = threading.Lock()
_depth = 0
_MAX_NOTE_LINES = 40


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # a closed or replaced sys.stderr: nothing of ours is buffered there
        pass


@contextmanager
def native_output_to_log(what: str, *, level_on_error: int = logging.ERROR) -> Iterator[None]:
    """Capture fd 2 while the block runs; log what native code wrote there.

    Args:
        what: names the call in each logged line (``"TensorFlow import"``, ``"TFLite conversion"``).
        level_on_error: level for the captured text when the block raises (DEBUG where the caller
            turns the failure into a one-line error that says enough, e.g. a malformed model file).

    Without a usable fd 2 (closed, or a platform without ``dup``) the block runs uncaptured.
    """
    global _depth
    with _lock:
        outer = _depth == 0
        _depth += 1
    try:
        if not outer:  # the outer window captures this one's output too
            yield
            return
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        with tempfile.TemporaryFile(prefix="edgetl-native-") as capture:
            _flush_python_stderr()
            os.dup2(capture.fileno(), 2)
            failure: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _flush_python_stderr()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
                _report(what, text, failure, level_on_error)
    finally:
        with _lock:
            _depth -= 1


def _report(what: str, text: str, failure: BaseException | None, level_on_error: int) -> None:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return
    if failure is None:
        for line in lines:
            log.debug("%s: %s", what, line)
        return
    shown = lines[-_MAX_NOTE_LINES:]
    log.log(level_on_error, "%s failed; it wrote %d line(s) to stderr%s:", what, len(lines), ", the last ones" if len(shown) < len(lines) else "")
    for line in shown:  # one record a line: the CLI's log handler shows a message on one line
        log.log(level_on_error, "%s: %s", what, line)
    if isinstance(failure, Exception):
        failure.add_note(f"native output of {what}:\n" + "\n".join(lines[-_MAX_NOTE_LINES:]))
