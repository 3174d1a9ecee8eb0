"""The measurement behind ``edgetl bench``, in one file that needs only Python, numpy and a runtime.

This is the single implementation of a benchmark measurement: ``edgetl bench`` runs it in a
fresh local process (:mod:`edgetl.bench.worker`), ``edgetl bench --remote`` copies this file
to a board over SSH and runs it there, and ``benchmarks/arm64_qemu.py`` runs it under an
emulated arm64 Python. So it imports nothing from edgetl, imports numpy and the runtime only
when it measures (``--check`` reports what is missing, with the ``pip install`` that fixes it),
and keeps to Python 3.8 and numpy 1.22 (what older boards ship).

One measurement, one (model, thread count), in this process: import the runtime; cold start
(session or interpreter creation plus the first run, timed with ``perf_counter_ns``); warm-up
runs; timed runs (a count, or a duration); peak RSS (``getrusage``) read after the timed runs;
then, for ONNX Runtime, a separate profiled session for the per-op-type kernel times. Inputs
are synthesised from the declared shapes and dtypes (seeded) or read from ``.npy`` files; the
first run's outputs can be saved (``.npz``) to compare runtimes or machines.

It also predicts (:func:`predict`, ``--predict``): the model run in batches on a ``.npy`` of ready
input tensors (preprocessed and quantized by edgetl on the host, so every machine is fed the same
integers), its raw outputs written to a ``.npy``. That is how ``edgetl eval --remote`` and
:mod:`edgetl.bench.boards` compute accuracy from outputs made on a board. Files are read with
``allow_pickle=False``.

Usage (on a board: ``pip install numpy onnxruntime`` or ``pip install numpy ai-edge-litert``)::

    python3 remote_runner.py MODEL [--threads 1] [--runs 200 | --duration 10] [--warmup 20]
                             [--input X.npy ...] [--save-outputs OUT.npz] [--result OUT.json]
    python3 remote_runner.py MODEL --predict INPUTS.npy OUTPUTS.npy [--batch-size 64] [--threads 1]
    python3 remote_runner.py --spec SPEC.json|- [--result OUT.json] [--progress]
    python3 remote_runner.py --check onnxruntime|litert ...

The outcome is one JSON object, ``{"ok": true, "result": ..., "machine": ..., "outputs": ...}``
or ``{"ok": false, "error": ..., "message": ...}``, written to ``--result`` or else as the last
line of stdout. ``--progress`` writes ``@edgetl-progress DONE TOTAL MESSAGE`` lines to stderr.
Exit codes: 0 measured, 2 usage, 3 the model or spec is bad, 4 numpy or the runtime is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time

#: Bumped when the spec or the outcome changes shape; the host checks it. 2: the predict mode.
RUNNER_VERSION = 2
#: Samples per invoke when a predict spec names none (what LiteRTModel/ORTModel.predict use).
DEFAULT_PREDICT_BATCH = 32
PROGRESS_PREFIX = "@edgetl-progress "
EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_MISSING = 0, 2, 3, 4
#: Duration mode stops collecting samples here, whatever the duration (bounds memory and JSON size).
MAX_SAMPLES = 1_000_000
TOP_OPS = 10
LITERT_PROVIDER = "CPU, XNNPACK delegate"
LITERT_OP_PROFILE_NOTE = "not offered by LiteRT's Python interpreter"
#: What ``pip install`` brings each runtime; the board's error names these.
PIP_NAMES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}
_ORT_DTYPES = {
    "float": "float32", "float16": "float16", "double": "float64", "int8": "int8", "uint8": "uint8",
    "int16": "int16", "uint16": "uint16", "int32": "int32", "uint32": "uint32", "int64": "int64",
    "uint64": "uint64", "bool": "bool",
}


class RunnerError(Exception):
    """A problem that is the user's to fix; ``kind`` names the edgetl error class the host raises."""

    def __init__(self, kind: str, message: str, **extra) -> None:
        super().__init__(message)
        self.kind = kind
        self.extra = extra


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300] + ("..." if len(text) > 300 else "")


# ----------------------------------------------------------------------------- where it runs
# ARM's CPU part numbers (implementer 0x41) for the cores boards use; /proc/cpuinfo on arm64 has
# no "model name", only these.
_ARM_PARTS = {
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72",
    0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77",
    0xD40: "Neoverse-V1", 0xD41: "Cortex-A78", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710",
    0xD48: "Cortex-X2", 0xD49: "Neoverse-N2", 0xD4B: "Cortex-A78C", 0xD4F: "Neoverse-V2", 0xD80: "Cortex-A520",
    0xD81: "Cortex-A720", 0xD82: "Cortex-X4",
}


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None, board_model: str | None = None) -> str:
    """The CPU as a person names it: x86's "model name", or the board and its ARM cores.

    Args:
        cpuinfo: ``/proc/cpuinfo`` text (read when None).
        board_model: the device-tree model, e.g. "Raspberry Pi 4 Model B Rev 1.4" (read when None).
    """
    cpuinfo = _read_text("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    if board_model is None:
        board_model = _read_text("/proc/device-tree/model") or _read_text("/sys/firmware/devicetree/base/model")
    board_model = board_model.replace("\x00", "").strip()
    fields: dict[str, str] = {}
    cores: list[str] = []
    implementer = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            continue
        fields.setdefault(key, value)
        if key == "cpu implementer":
            implementer = value
        elif key == "cpu part":
            try:
                part = int(value, 16)
            except ValueError:
                continue
            known = _ARM_PARTS.get(part) if implementer.lower() in ("0x41", "") else None
            cores.append(known or f"CPU part {value} (implementer {implementer or '?'})")
    if fields.get("model name"):
        return fields["model name"]
    board = board_model or fields.get("model", "") or fields.get("hardware", "")
    counted: list[str] = []
    for name in cores:
        if name not in counted:
            counted.append(name)
    core_text = " + ".join(f"{cores.count(name)}x {name}" for name in counted)
    if board and core_text:
        return f"{board} ({core_text})"
    return board or core_text or platform.processor() or platform.machine() or "unknown"


def _distro() -> str:
    for line in _read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def machine_info() -> dict:
    """Where a benchmark ran: CPU model, logical cores, OS (and distribution), machine, Python."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "distro": _distro(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def peak_rss_mib() -> float | None:
    """This process's peak resident set size in MiB, None where unavailable.

    On Linux ``VmHWM`` from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` survives
    ``execve``, so a worker started from a big parent (pytest holding TensorFlow: 2.7 GB) would
    report the parent's peak instead of its own. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------- imports
def _missing(runtimes) -> tuple[list[str], list[str]]:
    """(pip names of packages that are absent, one line per package that is present but fails to import).

    Presence is looked up without importing (a runtime cannot import without numpy); what is
    present is then imported, so a broken install (a wheel for another numpy, say) is named too.
    """
    import importlib
    import importlib.util

    wanted = [("numpy", ("numpy",))]
    for name in runtimes:
        if name == "onnxruntime":
            wanted.append(("onnxruntime", ("onnxruntime",)))
        elif name == "litert":  # tflite-runtime is the older package with the same interpreter
            wanted.append(("litert", ("ai_edge_litert", "tflite_runtime")))
        else:
            raise RunnerError("ConfigError", f"unknown runtime {name!r}; this runner knows litert, onnxruntime")
    missing, present = [], []
    for key, packages in wanted:
        found = [p for p in packages if importlib.util.find_spec(p) is not None]
        if found:
            present.append((key, found[0]))
        else:
            missing.append(PIP_NAMES[key])
    broken = []
    if "numpy" not in missing:
        for key, package in present:
            module = {"ai_edge_litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter"}.get(package, package)
            try:
                importlib.import_module(module)
            except ImportError as exc:
                broken.append(f"{PIP_NAMES[key]} is installed but does not import ({_one_line(exc)})")
    return missing, broken


def check_imports(runtimes) -> dict:
    """The ``--check`` outcome: versions and machine, or what to ``pip install``.

    Raises:
        RunnerError: ``MissingDependencyError`` with ``missing`` and ``pip`` (the command to run).
    """
    missing, broken = _missing(runtimes)
    if missing or broken:
        parts = []
        if missing:
            parts.append(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed for {sys.executable}")
        parts.extend(broken)
        pip = f"{sys.executable} -m pip install " + " ".join(missing or [PIP_NAMES[r] for r in runtimes])
        raise RunnerError("MissingDependencyError", "; ".join(parts), missing=missing, pip=pip, python=sys.executable)
    return {"ok": True, "versions": {name: _runtime(name).version for name in runtimes}, "machine": machine_info(),
            "python_executable": sys.executable, "runner_version": RUNNER_VERSION}


# ----------------------------------------------------------------------------- runtimes
class _OnnxRuntime:
    """ONNX Runtime's CPU provider, set up as :class:`edgetl.runtime.onnxruntime.ORTModel` is."""

    name = "onnxruntime"

    def __init__(self) -> None:
        import onnxruntime

        self.ort = onnxruntime
        self.version = str(onnxruntime.__version__)

    def open(self, path: str, threads: int | None, profile_dir: str | None = None) -> _OrtSession:
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # x86 CPUs without VNNI: ORT's U8S8 int8 kernels saturate (wrong top-1 on edgetl's int8 models);
        # this makes ORT use exact U8U8 kernels there and changes nothing on VNNI or ARM CPUs.
        options.add_session_config_entry("session.x64quantprecision", "1")
        if profile_dir:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(profile_dir, "profile")
        try:
            try:
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001
                if "replace the existing tensor" not in str(exc):  # shared weight zero points: no exact kernels
                    raise
                options.add_session_config_entry("session.x64quantprecision", "0")
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT's pybind errors share no public base class
            raise RunnerError("ArtifactError", f"ONNX Runtime cannot load {path}: {_one_line(exc)}") from None
        return _OrtSession(session, path)


class _OrtSession:
    def __init__(self, session, path: str) -> None:
        self.session, self.path = session, path
        self.provider = session.get_providers()[0]
        self.input_names = [a.name for a in session.get_inputs()]
        self._feed: dict = {}

    def declared_inputs(self) -> list[tuple[str, list, str]]:
        result = []
        for arg in self.session.get_inputs():
            inner = str(arg.type)[len("tensor("):-1] if str(arg.type).startswith("tensor(") else str(arg.type)
            dims = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
            result.append((arg.name, dims, _ORT_DTYPES.get(inner, inner)))
        return result

    def set_shapes(self, shapes) -> None:
        pass  # ONNX Runtime takes the shapes from the arrays of each run

    @property
    def output_count(self) -> int:
        return len(self.session.get_outputs())

    def predict_batch(self, n: int, batch_size: int) -> tuple[int, bool]:
        """(samples per run, pad the last chunk), as ``ORTModel.predict``: a fixed batch dimension is kept and padded to."""
        dims = self.declared_inputs()[0][1]
        fixed = dims[0] if dims and dims[0] > 0 else None
        return (fixed, True) if fixed else (min(n, batch_size), False)

    def bind(self, inputs) -> None:
        self._feed = dict(zip(self.input_names, inputs))

    def run(self) -> list:
        return self.session.run(None, self._feed)

    def top_ops(self, n: int) -> list[dict]:
        profile_file = self.session.end_profiling()
        with open(profile_file, encoding="utf-8") as fh:
            return top_ops_from_profile(json.load(fh), n)


class _LiteRT:
    """LiteRT's interpreter (``ai-edge-litert``, or the older ``tflite-runtime``) with its default XNNPACK delegate."""

    name = "litert"

    def __init__(self) -> None:
        try:
            from ai_edge_litert import interpreter as module

            package = "ai-edge-litert"
        except ImportError:
            from tflite_runtime import interpreter as module

            package = "tflite-runtime"
        self.module = module
        try:
            from importlib.metadata import version
            self.version = version(package)
        except Exception:  # noqa: BLE001 - a source build has no metadata
            self.version = str(getattr(module, "__version__", "unknown"))

    def open(self, path: str, threads: int | None, profile_dir: str | None = None) -> _LiteRTSession:
        module = self.module
        try:
            try:
                interpreter = module.Interpreter(
                    model_path=path, num_threads=threads, experimental_op_resolver_type=module.OpResolverType.AUTO
                )
            except (AttributeError, TypeError):  # interpreters older than the op resolver option
                interpreter = module.Interpreter(model_path=path, num_threads=threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RunnerError("ArtifactError", f"LiteRT cannot load {path}: {_one_line(exc)}") from None
        return _LiteRTSession(interpreter, path)


class _LiteRTSession:
    provider = LITERT_PROVIDER

    def __init__(self, interpreter, path: str) -> None:
        self.interpreter, self.path = interpreter, path
        self._refresh()
        self._inputs: list = []

    def _refresh(self) -> None:
        self.input_details = self.interpreter.get_input_details()
        self.output_indices = [d["index"] for d in self.interpreter.get_output_details()]

    def declared_inputs(self) -> list[tuple[str, list, str]]:
        import numpy as np

        result = []
        for d in self.input_details:
            signature = list(d.get("shape_signature", [])) or list(d["shape"])
            result.append((str(d["name"]), [int(s) if int(s) >= 0 else -1 for s in signature], np.dtype(d["dtype"]).name))
        return result

    def set_shapes(self, shapes) -> None:
        current = [tuple(int(s) for s in d["shape"]) for d in self.input_details]
        if [tuple(s) for s in shapes] == current:
            return
        try:
            for shape, detail in zip(shapes, self.input_details):
                self.interpreter.resize_tensor_input(detail["index"], [int(s) for s in shape])
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RunnerError("DataError", f"LiteRT cannot run {self.path} with input shapes {list(shapes)}: {_one_line(exc)}") from None
        self._refresh()

    @property
    def output_count(self) -> int:
        return len(self.output_indices)

    def predict_batch(self, n: int, batch_size: int) -> tuple[int, bool]:
        """(samples per invoke, pad the last chunk), as ``LiteRTModel.predict``: the input resized to
        ``min(n, batch_size)`` rows, or its own batch when the model refuses; the last chunk always padded."""
        detail = self.input_details[0]
        current = [int(s) for s in detail["shape"]]
        batch = min(n, batch_size)
        if current and current[0] == batch:
            return batch, True
        try:
            self.interpreter.resize_tensor_input(detail["index"], [batch, *current[1:]])
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            self.interpreter.resize_tensor_input(detail["index"], current)
            self.interpreter.allocate_tensors()
            batch = current[0]
        self._refresh()
        return batch, True

    def bind(self, inputs) -> None:
        self._inputs = [(d["index"], array) for d, array in zip(self.input_details, inputs)]

    def run(self) -> list:
        interpreter = self.interpreter
        for index, array in self._inputs:
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        return [interpreter.get_tensor(index) for index in self.output_indices]


_RUNTIMES = {"onnxruntime": _OnnxRuntime, "litert": _LiteRT}
_SUFFIXES = {".onnx": "onnxruntime", ".tflite": "litert"}


def _runtime(name: str):
    if name not in _RUNTIMES:
        raise RunnerError("ConfigError", f"unknown runtime {name!r}; this runner knows {', '.join(sorted(_RUNTIMES))}")
    missing, broken = _missing([name])
    if missing or broken:
        check_imports([name])  # raises with the pip command
    return _RUNTIMES[name]()


# ----------------------------------------------------------------------------- statistics
def top_ops_from_profile(events: list, n: int = TOP_OPS) -> list[dict]:
    """Operator types ranked by the kernel time an ONNX Runtime profile recorded for them.

    Events with ``cat == "Node"`` and an ``args.op_name`` are kernel executions (``dur`` in
    microseconds); fence events are skipped. Returns ``[{"op", "total_ms", "percent", "calls"}]``,
    most time first; ``percent`` is of all kernel time in the profile.
    """
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("cat") != "Node":
            continue
        op = (event.get("args") or {}).get("op_name")
        if not op or "fence" in str(event.get("name", "")):
            continue
        totals[op] = totals.get(op, 0.0) + float(event.get("dur", 0))
        calls[op] = calls.get(op, 0) + 1
    grand = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[: max(n, 0)]
    return [
        {"op": op, "total_ms": total / 1000.0, "percent": 100.0 * total / grand if grand > 0 else 0.0, "calls": calls[op]}
        for op, total in ranked
    ]


def latency_stats(samples_ms, warmup: int, batch: int = 1) -> dict:
    """Percentiles (numpy, linear interpolation), mean, population std, min, max and throughput.

    Throughput is ``batch / p50``: from the median, so one slow outlier (a page fault, a preempted
    thread) does not make a setting look several times slower than its typical call.

    Raises:
        ValueError: no samples, or a batch below 1.
    """
    import numpy as np

    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("latency_stats() needs at least one latency sample")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    try:
        p50, p90, p99 = np.percentile(samples, [50, 90, 99], method="linear")
    except TypeError:  # numpy < 1.22 names it interpolation=
        p50, p90, p99 = np.percentile(samples, [50, 90, 99], interpolation="linear")
    mean = float(samples.mean())
    return {
        "runs": int(samples.size), "warmup": int(warmup), "p50_ms": float(p50), "p90_ms": float(p90),
        "p99_ms": float(p99), "mean_ms": mean, "std_ms": float(samples.std()), "min_ms": float(samples.min()),
        "max_ms": float(samples.max()), "throughput_ips": batch * 1000.0 / float(p50) if p50 > 0 else float("inf"),
    }


def synthetic_input(shape, dtype, rng):
    """Random data of a tensor's shape and dtype: the full integer range, or standard normal floats."""
    import numpy as np

    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=tuple(shape), dtype=dtype, endpoint=True)
    if dtype == np.bool_:
        return rng.integers(0, 1, size=tuple(shape), endpoint=True).astype(np.bool_)
    return rng.standard_normal(size=tuple(shape)).astype(dtype)


def timed_loop(fn, *, runs: int | None = None, duration_s: float | None = None, report=None) -> list[float]:
    """Time ``fn`` ``runs`` times, or as often as fits in ``duration_s`` (at least once).

    Only the call is inside the timed interval (``perf_counter_ns``); ``report(done, elapsed_s)``
    is called about every 0.2 s between calls.

    Returns:
        latencies in milliseconds.
    """
    if (runs is None) == (duration_s is None):
        raise ValueError("pass exactly one of runs and duration_s")
    clock = time.perf_counter_ns
    limit = runs if runs is not None else MAX_SAMPLES
    deadline = None if duration_s is None else clock() + int(duration_s * 1e9)
    samples: list[float] = []
    begin = next_report = clock()
    while len(samples) < limit:
        start = clock()
        fn()
        end = clock()
        samples.append((end - start) / 1e6)
        if deadline is not None and end >= deadline:
            break
        if report is not None and end >= next_report:
            report(len(samples), (end - begin) / 1e9)
            next_report = end + 200_000_000
    return samples


# ----------------------------------------------------------------------------- one measurement
def _check_model_file(path: str) -> None:
    if not os.path.exists(path):
        raise RunnerError("ArtifactError", f"model file {path} does not exist")
    if not os.path.isfile(path):
        raise RunnerError("ArtifactError", f"model path {path} is not a regular file")


def _load_inputs(files, shapes, dtypes) -> list:
    import numpy as np

    if len(files) != len(shapes):
        raise RunnerError("DataError", f"Received {len(files)} input file(s); the model has {len(shapes)} input(s)")
    arrays = []
    for file, shape, dtype in zip(files, shapes, dtypes):
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RunnerError("DataError", f"cannot read input file {file}: {_one_line(exc)}") from None
        if list(array.shape) != list(shape) or array.dtype != np.dtype(dtype):
            raise RunnerError(
                "DataError", f"input file {file} holds {array.dtype} {list(array.shape)}; the input needs {dtype} {list(shape)}"
            )
        arrays.append(np.ascontiguousarray(array))
    return arrays


def output_digests(outputs) -> list[dict]:
    """dtype, shape and SHA-256 of each output array: equal digests mean bit-identical outputs."""
    import numpy as np

    result = []
    for array in outputs:
        array = np.ascontiguousarray(array)
        result.append({"dtype": array.dtype.name, "shape": list(array.shape), "sha256": hashlib.sha256(array.tobytes()).hexdigest()})
    return result


def _measure(spec: dict, report=None) -> tuple[dict, list[dict]]:
    """One (model, threads) measurement in this process; returns the result and the first run's output digests.

    Cold start is session creation plus the first run, with the runtime's Python package already
    imported; peak RSS is read after the timed runs, before the profiled pass.

    Args:
        spec: ``path``, ``runtime``, ``threads``, ``shapes``, ``dtypes``, ``warmup``, ``runs`` or
            ``duration_s``, ``profile_runs``, ``seed``; optional ``input_files`` (one ``.npy`` per
            input, instead of synthetic data) and ``outputs_file`` (the first run's outputs, ``.npz``).
        report: ``report(done, total, message)``: runs done of ``runs``, or seconds of ``duration_s``.

    Returns:
        ``threads``, ``stats``, ``cold_start_ms``, ``session_ms``, ``first_run_ms``, ``peak_rss_mib``,
        ``runtime_version``, ``provider``, ``op_profile``, ``samples_ms``.

    Raises:
        RunnerError: a missing package or file, a model the runtime cannot load, unusable inputs.
    """
    report = report or (lambda done, total, message: None)
    path, threads = str(spec["path"]), int(spec["threads"])
    runtime = _runtime(str(spec["runtime"]))
    _check_model_file(path)
    import numpy as np

    runs, duration_s, warmup = spec.get("runs"), spec.get("duration_s"), int(spec["warmup"])
    if (runs is None) == (duration_s is None):
        raise RunnerError("ConfigError", "the spec needs exactly one of runs and duration_s")
    total = int(runs) if runs else max(int(round(duration_s)), 1)
    shapes = [list(s) for s in spec["shapes"]]

    report(0, total, "cold start")
    start = time.perf_counter_ns()
    model = runtime.open(path, threads)
    model.set_shapes(shapes)
    session_ns = time.perf_counter_ns() - start
    if spec.get("input_files"):
        inputs = _load_inputs(spec["input_files"], shapes, spec["dtypes"])
    else:
        rng = np.random.default_rng(int(spec.get("seed", 0)))
        inputs = [synthetic_input(shape, dtype, rng) for shape, dtype in zip(shapes, spec["dtypes"])]
    model.bind(inputs)
    start = time.perf_counter_ns()
    try:
        outputs = model.run()
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types for bad inputs
        raise RunnerError("DataError", f"{path} rejected its inputs: {_one_line(exc)}") from None
    first_run_ns = time.perf_counter_ns() - start
    if spec.get("outputs_file"):
        np.savez(spec["outputs_file"], *outputs)
    digests = output_digests(outputs)
    del outputs

    report(0, total, "warm-up")
    for _ in range(warmup):
        model.run()

    def progress(done: int, elapsed_s: float) -> None:
        report(done if runs else min(int(elapsed_s), total), total, "timed runs" if runs else f"timed runs ({done} so far)")

    samples = timed_loop(model.run, runs=runs, duration_s=duration_s, report=progress)
    rss = peak_rss_mib()
    stats = latency_stats(samples, warmup, batch=max(int(shapes[0][0]), 1) if shapes and shapes[0] else 1)
    provider = model.provider
    del model

    op_profile: list | str
    if runtime.name == "litert":
        op_profile = LITERT_OP_PROFILE_NOTE
    elif int(spec.get("profile_runs", 0)) < 1:
        op_profile = "not measured (profile_runs=0)"
    else:  # a separate profiled session, so profiling never slows the timed runs
        report(total, total, "op profile")
        profile_dir = tempfile.mkdtemp(prefix="edgetl-ort-profile-")
        try:
            profiled = runtime.open(path, threads, profile_dir)
            profiled.set_shapes(shapes)
            profiled.bind(inputs)
            for _ in range(int(spec["profile_runs"])):
                profiled.run()
            op_profile = profiled.top_ops(TOP_OPS)
        finally:
            shutil.rmtree(profile_dir, ignore_errors=True)
    report(total, total, "done")
    result = {
        "threads": threads,
        "stats": stats,
        "cold_start_ms": (session_ns + first_run_ns) / 1e6,
        "session_ms": session_ns / 1e6,
        "first_run_ms": first_run_ns / 1e6,
        "peak_rss_mib": rss,
        "runtime_version": runtime.version,
        "provider": provider,
        "op_profile": op_profile,
        "samples_ms": [round(s, 5) for s in samples],
    }
    if spec.get("input_files"):
        result["input_source"] = "files"
    return result, digests


def measure(spec: dict, report=None) -> dict:
    """One (model, threads) measurement in this process; see :func:`_measure` (it returns the result only)."""
    return _measure(spec, report)[0]


def run_spec(spec: dict, report=None) -> dict:
    """:func:`measure` wrapped as the outcome JSON object, with the machine and the first run's output digests.

    Never raises a :class:`RunnerError`: ``{"ok": false, "error": kind, "message": ...}`` instead.
    """
    try:
        result, digests = _measure(spec, report)
    except RunnerError as exc:
        return {"ok": False, "error": exc.kind, "message": str(exc), **exc.extra}
    return {"ok": True, "result": result, "machine": machine_info(), "outputs": digests, "runner_version": RUNNER_VERSION}


# ----------------------------------------------------------------------------- prediction
def _predict(spec: dict) -> dict:
    """Run a single-input, single-output model over ready input tensors; write its raw outputs.

    Args:
        spec: ``path``, ``runtime`` (None: by suffix), ``inputs_file`` (a ``.npy`` of the model's input
            dtype, ``(N, ...)``), ``outputs_file`` (the ``.npy`` to write, ``(N, ...)`` in the output's
            own dtype), optional ``batch_size`` (samples per invoke) and ``threads``.

    Returns:
        ``rows``, ``batch``, ``invokes``, ``padded``, ``runtime``, ``runtime_version``, ``provider``,
        ``output_dtype``, ``output_shape``.

    Raises:
        RunnerError: a missing package or file, a model with several inputs or outputs, unusable inputs.
    """
    path = str(spec["path"])
    name = spec.get("runtime") or _SUFFIXES.get(os.path.splitext(path)[1].lower())
    if name is None:
        raise RunnerError("ConfigError", f"Received {path}: pass the runtime, or a .onnx or .tflite file")
    runtime = _runtime(str(name))
    _check_model_file(path)
    import numpy as np

    batch_size = int(spec.get("batch_size") or DEFAULT_PREDICT_BATCH)
    if batch_size < 1:
        raise RunnerError("ConfigError", f"Received batch_size={batch_size}; pass a positive integer")
    inputs_file, outputs_file = str(spec["inputs_file"]), str(spec["outputs_file"])
    try:
        x = np.load(inputs_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RunnerError("DataError", f"cannot read input file {inputs_file}: {_one_line(exc)}") from None
    threads = spec.get("threads")
    model = runtime.open(path, int(threads) if threads else None)
    declared = model.declared_inputs()
    if len(declared) != 1 or model.output_count != 1:
        raise RunnerError("DataError", f"predicting needs a model with one input and one output; {path} has "
                          f"{len(declared)} and {model.output_count}")
    input_name, dims, dtype = declared[0]
    if x.dtype != np.dtype(dtype) or x.ndim != len(dims) or x.ndim < 1 or any(
        want >= 0 and want != got for want, got in zip(dims[1:], x.shape[1:])
    ):
        wanted = ", ".join("?" if d < 0 else str(d) for d in dims[1:])
        raise RunnerError("DataError", f"input file {inputs_file} holds {x.dtype} {list(x.shape)}; input {input_name!r} "
                          f"of {path} needs {dtype} (N, {wanted})")
    n = int(x.shape[0])
    if n == 0:
        raise RunnerError("DataError", f"input file {inputs_file} holds no samples")
    batch, pad = model.predict_batch(n, batch_size)
    x = np.ascontiguousarray(x)
    results, invokes = [], 0
    for start in range(0, n, batch):
        chunk = x[start:start + batch]
        rows = int(chunk.shape[0])
        if pad and rows < batch:  # pad the last chunk rather than re-planning, as the host's predict does
            chunk = np.concatenate([chunk, np.zeros((batch - rows, *chunk.shape[1:]), dtype=chunk.dtype)])
        model.set_shapes([list(chunk.shape)])
        model.bind([chunk])
        try:
            (out,) = model.run()
        except Exception as exc:  # noqa: BLE001 - each runtime raises its own types
            raise RunnerError("ArtifactError", f"{path} failed to run: {_one_line(exc)}") from None
        results.append(np.array(out[:rows]))  # a copy: LiteRT reuses its output buffer
        invokes += 1
    outputs = np.concatenate(results)
    np.save(outputs_file, outputs, allow_pickle=False)
    return {"rows": n, "batch": int(batch), "invokes": invokes, "padded": bool(pad and n % batch != 0), "runtime": runtime.name,
            "runtime_version": runtime.version, "provider": model.provider, "output_dtype": outputs.dtype.name,
            "output_shape": list(outputs.shape)}


def predict(spec: dict) -> dict:
    """:func:`_predict` wrapped as the outcome JSON object; never raises a :class:`RunnerError`."""
    try:
        result = _predict(spec)
    except RunnerError as exc:
        return {"ok": False, "error": exc.kind, "message": str(exc), **exc.extra}
    return {"ok": True, "result": result, "machine": machine_info(), "runner_version": RUNNER_VERSION}


# ----------------------------------------------------------------------------- command line
def spec_for_model(path: str, runtime: str | None, threads: int, warmup: int, runs: int | None,
                   duration_s: float | None, seed: int = 0, profile_runs: int = 20) -> dict:
    """A spec for a model file as it declares itself (a dynamic first dimension becomes 1)."""
    _check_model_file(path)
    name = runtime or _SUFFIXES.get(os.path.splitext(path)[1].lower())
    if name is None:
        raise RunnerError("ConfigError", f"Received {path}: pass --runtime, or a .onnx or .tflite file")
    model = _runtime(name).open(path, None)
    shapes, dtypes = [], []
    for input_name, dims, dtype in model.declared_inputs():
        dims = list(dims)
        if dims and dims[0] < 0:
            dims[0] = 1
        if any(d < 0 for d in dims):
            raise RunnerError("ConfigError", f"input {input_name!r} of {path} has dynamic dimensions {dims}; "
                              "write a --spec with concrete shapes")
        shapes.append(dims)
        dtypes.append(dtype)
    return {"path": path, "runtime": name, "threads": threads, "shapes": shapes, "dtypes": dtypes, "warmup": warmup,
            "runs": runs if duration_s is None else None, "duration_s": duration_s, "profile_runs": profile_runs, "seed": seed}


def _write_outcome(outcome: dict, result_path: str | None) -> None:
    text = json.dumps(outcome)
    if result_path:
        partial = result_path + ".partial"
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(partial, result_path)
    else:
        sys.stdout.write("\n" + text + "\n")  # the last line of stdout, whatever a native library printed
        sys.stdout.flush()


def _progress_to_stderr(done: int, total: int, message: str) -> None:
    sys.stderr.write(f"{PROGRESS_PREFIX}{int(done)} {int(total)} {' '.join(message.split())}\n")
    sys.stderr.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="remote_runner.py", description="One edgetl benchmark measurement.")
    parser.add_argument("model", nargs="?", help=".onnx or .tflite file (or use --spec)")
    parser.add_argument("--spec", help="measurement spec JSON file, or - for stdin")
    parser.add_argument("--check", nargs="*", metavar="RUNTIME", help="only check that numpy and these runtimes import (none: numpy only)")
    parser.add_argument("--runtime", choices=sorted(_RUNTIMES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--duration", type=float, help="seconds of timed runs instead of --runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile-runs", type=int, default=20)
    parser.add_argument("--input", action="append", default=[], help=".npy file per input, in order (default: synthetic)")
    parser.add_argument("--save-outputs", help="write the first run's outputs to this .npz")
    parser.add_argument("--predict", nargs=2, metavar=("INPUTS.npy", "OUTPUTS.npy"),
                        help="run MODEL over these ready input tensors and write its raw outputs (no timing)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_PREDICT_BATCH, help="with --predict: samples per invoke")
    parser.add_argument("--result", help="write the outcome JSON here instead of stdout")
    parser.add_argument("--progress", action="store_true", help="progress lines on stderr")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 8):  # pragma: no cover
        _write_outcome({"ok": False, "error": "MissingDependencyError",
                        "message": f"Python {platform.python_version()} is too old; the runner needs 3.8 or later"}, args.result)
        return EXIT_MISSING
    try:
        if args.check is not None:
            _write_outcome(check_imports(args.check), args.result)
            return EXIT_OK
        if args.spec:
            text = sys.stdin.read() if args.spec == "-" else open(args.spec, encoding="utf-8").read()
            spec = json.loads(text)
        elif args.model and args.predict:
            spec = {"mode": "predict", "path": args.model, "runtime": args.runtime, "threads": args.threads,
                    "inputs_file": args.predict[0], "outputs_file": args.predict[1], "batch_size": args.batch_size}
        elif args.model:
            spec = spec_for_model(args.model, args.runtime, args.threads, args.warmup, args.runs, args.duration,
                                  args.seed, args.profile_runs)
        else:
            parser.error("pass a MODEL, --spec or --check")
        if args.input:
            spec["input_files"] = args.input
        if args.save_outputs:
            spec["outputs_file"] = args.save_outputs
    except RunnerError as exc:
        _write_outcome({"ok": False, "error": exc.kind, "message": str(exc), **exc.extra}, args.result)
        return EXIT_MISSING if exc.kind == "MissingDependencyError" else EXIT_FAILED
    except (OSError, ValueError) as exc:
        _write_outcome({"ok": False, "error": "ConfigError", "message": f"cannot read the spec: {_one_line(exc)}"}, args.result)
        return EXIT_FAILED
    if spec.get("mode") == "predict":
        outcome = predict(spec)
    else:
        outcome = run_spec(spec, _progress_to_stderr if args.progress else None)
    _write_outcome(outcome, args.result)
    if outcome["ok"]:
        return EXIT_OK
    return EXIT_MISSING if outcome["error"] == "MissingDependencyError" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
