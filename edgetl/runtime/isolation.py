"""Load and first-run an untrusted model in a child process before this process touches it.

LiteRT and ONNX Runtime are C++: a corrupt or hostile model file (an operator whose output
index points at the wrong tensor, a NaN quantization scale, a shape that overflows) can make
them ``abort()`` or segfault instead of raising, which would end edgetl with no message.
:func:`probe_model` opens the model in a child process, allocates, and invokes it once on zeros
of its declared input shapes, in each configuration edgetl later uses in-process; a child that
dies by a signal or hangs becomes one :class:`~edgetl.core.errors.ArtifactError` line, and only a
model that survived is then loaded here. Python-level errors in the child are not reported by
the probe: the same error happens in-process, where the runtime wrappers turn it into their own
one-line message.

The child is forked when TensorFlow is not imported here (cheap: the runtime module is imported
first, so the child only loads the model), else started fresh as ``python -m
edgetl.runtime.isolation``: forking a process that holds TensorFlow's threads is not safe, and
multiprocessing's spawn/forkserver would re-run a user's unguarded script in the child. Outcomes are cached per (file, size, mtime, runtime)
for the life of the process, so a command that opens one model several times probes it once.
"""

from __future__ import annotations

import logging
import operator
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgetl.core.errors import ArtifactError
from edgetl.runtime.ort_session import _dtype_name, create_session

logger = logging.getLogger(__name__)

#: Seconds a probe may take before the model is declared to hang the runtime.
DEFAULT_TIMEOUT_S = 120.0
#: The largest single dimension and element count edgetl allocates for an input tensor.
MAX_DIM = 2**20
MAX_ELEMENTS = 2**31

_RUNTIME_LABELS = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
_cache: dict[tuple[str, int, int, str], str | None] = {}


def check_input_shape(shape: Any, what: str) -> None:
    """Refuse an absurd tensor shape before anything is allocated for it.

    Raises:
        ArtifactError: a dimension above :data:`MAX_DIM` (or negative), or more than :data:`MAX_ELEMENTS` elements.
    """
    dims = [operator.index(d) for d in shape if hasattr(d, "__index__")]
    total = 1
    for d in dims:
        total *= max(d, 1)
    if any(d > MAX_DIM or d < -1 for d in dims) or total > MAX_ELEMENTS:
        raise ArtifactError(
            f"{what} has shape {list(dims)}: beyond what edgetl allocates (each dimension at most {MAX_DIM}, "
            f"at most {MAX_ELEMENTS} elements); the file is corrupt or not an image model"
        )


def mp_context():
    """``fork`` when TensorFlow is not loaded in this process (cheap), else ``forkserver``."""
    import multiprocessing

    if "tensorflow" in sys.modules or sys.platform != "linux":
        return multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
    return multiprocessing.get_context("fork")


def _zeros(shape: Any, dtype: Any):
    import numpy as np

    dims = []
    for d in shape:  # numpy integers (LiteRT) and ints; dynamic dimensions (None, symbols, -1) become 1
        try:
            dims.append(max(operator.index(d), 1) if operator.index(d) >= 0 else 1)
        except TypeError:
            dims.append(1)
    check_input_shape(dims, "an input")
    return np.zeros(dims, dtype=dtype)


def _probe_litert(path: str, kernels: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # AUTO (XNNPACK) is what predict/eval/apps run; without default delegates is what inspect and
    # the TFLite Micro checks run: each can crash on its own. Reference kernels only when asked.
    resolvers = [OpResolverType.BUILTIN_REF] if kernels == "reference" else [OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES]
    for resolver in resolvers:
        try:
            interpreter = Interpreter(model_path=path, experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
            interpreter._get_ops_details()  # noqa: SLF001 - inspect reads it
            interpreter.get_tensor_details()
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], _zeros(detail["shape"], detail["dtype"]))
            interpreter.invoke()
            for detail in interpreter.get_output_details():
                interpreter.get_tensor(detail["index"])
        except Exception:  # noqa: BLE001, S112 - Python errors are reported in-process, by the caller's own load
            continue


def _probe_onnxruntime(path: str, kernels: str) -> None:  # noqa: ARG001 - one signature for every probe
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = create_session(ort, path, options)
        session.get_modelmeta()
        feed = {}
        for arg in session.get_inputs():
            dtype = np.dtype(_dtype_name(str(arg.type)))
            feed[arg.name] = _zeros(arg.shape or [], dtype)
        session.run(None, feed)
    except Exception:  # noqa: BLE001, S110 - Python errors are reported in-process, by the caller's own load
        pass


_PROBES = {"litert": _probe_litert, "onnxruntime": _probe_onnxruntime}


def _child(runtime: str, path: str, kernels: str, log_path: str) -> None:
    """The child's body: native output to a file (its last line goes into the parent's message)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    _PROBES[runtime](path, kernels)


def _start_child(runtime: str, path: str, kernels: str, log_path: str, timeout: float) -> int | None:
    """Run :func:`_child` in a child process; its exit code (negative: the signal), None if it hung.

    Forked when TensorFlow is not loaded here. Otherwise a fresh interpreter runs this module
    (``python -m edgetl.runtime.isolation``): multiprocessing's spawn and forkserver re-import the
    caller's main module in the child, which re-runs a user's script that has no
    ``if __name__ == "__main__"`` guard.
    """
    if "tensorflow" not in sys.modules and sys.platform == "linux":
        import multiprocessing

        process = multiprocessing.get_context("fork").Process(target=_child, args=(runtime, path, kernels, log_path), daemon=True)
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            return None
        return process.exitcode
    import subprocess

    command = [sys.executable, "-m", "edgetl.runtime.isolation", runtime, path, kernels, log_path]
    try:
        return subprocess.run(command, timeout=timeout, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode
    except subprocess.TimeoutExpired:
        return None


def _runtime_for(path: Path) -> str:
    return "onnxruntime" if path.suffix.lower() == ".onnx" else "litert"


def _preload(runtime: str) -> None:
    """Import the runtime here, so a forked child does not import it again for every probe."""
    try:
        if runtime == "litert":
            import ai_edge_litert.interpreter  # noqa: F401
        else:
            import onnxruntime  # noqa: F401
    except ImportError:  # the caller's own load reports the missing runtime
        pass


def _last_line(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("INFO:")]
    return lines[-1][:200] if lines else ""


def probe_model(
    path: str | os.PathLike[str], *, runtime: str | None = None, kernels: str = "default", timeout: float = DEFAULT_TIMEOUT_S
) -> None:
    """Open ``path`` in ``runtime`` (by suffix when None), allocate and invoke it once, in a child process.

    Args:
        path: a ``.tflite`` (LiteRT) or ``.onnx`` (ONNX Runtime) file, already through the cheap checks.
        runtime: ``"litert"`` or ``"onnxruntime"``.
        kernels: ``"default"``; ``"reference"`` probes LiteRT's reference kernels instead (what a
            reference-kernel :class:`~edgetl.runtime.litert.LiteRTModel` runs).
        timeout: seconds before the model is declared to hang the runtime.

    Raises:
        ArtifactError: the runtime crashed (died by a signal) or hung on the model.
    """
    path = Path(path)
    runtime = runtime or _runtime_for(path)
    try:
        stat = path.stat()
    except OSError:
        return  # the caller's own checks report a missing file
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, f"{runtime}/{kernels}")
    if key not in _cache:
        _cache[key] = _run_probe(path, runtime, kernels, timeout)
    if _cache[key] is not None:
        raise ArtifactError(_cache[key])


def _run_probe(path: Path, runtime: str, kernels: str, timeout: float) -> str | None:
    label = _RUNTIME_LABELS.get(runtime, runtime)
    _preload(runtime)
    with tempfile.TemporaryDirectory(prefix="edgetl-probe-") as tmp:
        log_path = str(Path(tmp) / "native.log")
        sys.stdout.flush()
        sys.stderr.flush()
        code = _start_child(runtime, str(path), kernels, log_path, timeout)
        if code is None:
            return f"the {label} runtime did not finish loading and running {path} within {timeout:g} s; the file is malformed or not supported"
        try:
            log_text = Path(log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            log_text = ""
    if code == 0:
        logger.debug("probe of %s in %s: ok", path, label)
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = f"signal {name}"
    else:
        what = f"exit code {code}"
    detail = _last_line(log_text)
    return (
        f"the {label} runtime crashed ({what}) loading/running {path}; the file is malformed or not supported"
        + (f" (last runtime message: {detail})" if detail else "")
    )


if __name__ == "__main__":  # the child of _start_child when TensorFlow is loaded in the parent
    _child(*sys.argv[1:5])
