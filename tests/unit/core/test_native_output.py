"""native_output_to_log: what C code writes to fd 2 goes to the log, in a real child process (real fds)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import ctypes, logging, os, sys, threading
    logging.basicConfig(level=logging.DEBUG, format="LOG %(levelname)s %(name)s %(message)s", stream=sys.stdout)
    from edgetl.core.native_output import native_output_to_log

    libc = ctypes.CDLL(None)
    def native(text):  # write(2) from C, as TensorFlow's and LiteRT's C++ logging does
        data = text.encode()
        libc.write(2, data, len(data))

    native("before\\n")
    with native_output_to_log("first call"):
        native("I0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers\\n")
        with native_output_to_log("nested call"):  # shares the outer window
            native("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
        t = threading.Thread(target=native, args=("from a thread\\n",))
        t.start(); t.join()
    native("after\\n")
    try:
        with native_output_to_log("failing call", level_on_error=logging.WARNING):
            native("the converter's own diagnosis\\n")
            raise RuntimeError("conversion failed")
    except RuntimeError as exc:
        print("NOTES", exc.__notes__)
    os.fstat(2)  # fd 2 is open again
    print("THREADS", threading.active_count())
    """
)


def test_native_output_goes_to_the_log_and_fd2_comes_back():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    # Only what was written outside the windows reached the real stderr.
    assert proc.stderr.splitlines() == ["before", "after"]
    out = proc.stdout.splitlines()
    assert "LOG DEBUG edgetl.native first call: I0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers" in out
    assert "LOG DEBUG edgetl.native first call: INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in out
    assert "LOG DEBUG edgetl.native first call: from a thread" in out
    # A failing call: its native text at the caller's level, and on the exception.
    assert "LOG WARNING edgetl.native failing call: the converter's own diagnosis" in out
    assert any(line.startswith("NOTES") and "the converter's own diagnosis" in line for line in out)
    assert "THREADS 1" in out
