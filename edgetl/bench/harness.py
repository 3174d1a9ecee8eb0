"""Latency harness: time any callable, summarize, and benchmark model files per runtime.

Runtime-agnostic by construction: :func:`time_calls` and :func:`summarize` know nothing about
models; one ``bench_<runtime>`` function per runtime builds the callable. No TensorFlow here.
Every result carries how it was measured (warm-up, runs, threads, runtime version), and
:func:`machine_info` describes where.

:func:`run_bench` is the harness behind ``edgetl bench``: any ``.onnx`` or ``.tflite`` file,
inputs synthesised from its declared types and shapes, each (artifact, thread count) measured
in a fresh process (honest cold start and peak RSS), raw samples kept for
:func:`compare_benches` (``edgetl compare``), all in one ``bench.json`` document.

The measurement itself (cold start, warm-up, timed loop, peak RSS, op profile, statistics,
synthetic inputs, machine description) lives in :mod:`edgetl.bench.board_runner`, a stand-alone file
that needs only numpy and the runtime, so a board measured over SSH (``edgetl.bench.remote``) runs the
very same code as this machine. The runtime registry here plans the artifacts (checks and loads
them once in this process) and describes the method in the report.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import edgetl
from edgetl.bench import board_runner as _runner
from edgetl.bench.board_runner import (  # noqa: F401 - one implementation of the measurement, re-exported
    LITERT_OP_PROFILE_NOTE,
    MAX_SAMPLES,
    TOP_OPS,
    machine_info,
    peak_rss_mib,
    synthetic_input,
    timed_loop,
)
from edgetl.core import errors
from edgetl.core import fs as _fs
from edgetl.core.errors import ArtifactError, ConfigError, OutputExistsError
from edgetl.core.progress import Progress, log_progress
from edgetl.core.registry import Registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds (warm-up calls excluded)."""

    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float  # inferences per second: batch / mean latency

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ms: Sequence[float], warmup: int, batch: int = 1) -> LatencyStats:
    """Summarize timed calls.

    Percentiles are ``numpy.percentile`` with linear interpolation between closest ranks
    (numpy's default ``method="linear"``); ``std_ms`` is the population standard deviation (ddof=0).

    Args:
        samples_ms: one latency per timed call, in milliseconds.
        warmup: warm-up calls that ran before (recorded for the report only).
        batch: inferences per call, for ``throughput_ips``.

    Raises:
        ValueError: no samples, or a batch below 1.
    """
    if len(samples_ms) == 0:
        raise ValueError("summarize() needs at least one latency sample")
    return LatencyStats(**_runner.latency_stats(samples_ms, warmup, batch))  # the runner's statistics: one implementation


def time_calls(fn: Callable[[], object], *, warmup: int, runs: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times, each timed with ``perf_counter_ns``.

    Returns:
        ``runs`` latencies in milliseconds.
    """
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        fn()
        samples.append((clock() - start) / 1e6)
    return samples


@dataclass(frozen=True)
class BenchResult:
    """One artifact measured on one runtime at one thread count."""

    artifact: str
    runtime: str
    threads: int
    stats: LatencyStats
    input_shapes: list[list[int]]
    model_size_bytes: int
    runtime_version: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = self.stats.to_dict()
        return data


def bench_tflite(
    path: str | os.PathLike[str], *, threads: Sequence[int], warmup: int = 10, runs: int = 50, seed: int = 0
) -> list[BenchResult]:
    """Time a ``.tflite`` file with LiteRT, once per thread count.

    Inputs are synthesised from the model's declared input shapes and dtypes (the same data
    for every thread count); the timed call is ``invoke_raw`` alone.

    Raises:
        ArtifactError: the file is not a valid model.
    """
    from edgetl.runtime.litert import LiteRTModel, _litert_version

    results = []
    for count in threads:
        model = LiteRTModel(path, num_threads=int(count))
        rng = np.random.default_rng(seed)
        inputs = [synthetic_input(info.shape, info.dtype, rng) for info in model.inputs]
        samples = time_calls(lambda m=model, x=inputs: m.invoke_raw(x), warmup=warmup, runs=runs)
        batch = max(int(model.inputs[0].shape[0]), 1) if model.inputs else 1
        stats = summarize(samples, warmup, batch=batch)
        logger.info("%s litert threads=%d: p50 %.3f ms", Path(path).name, count, stats.p50_ms)
        results.append(
            BenchResult(
                artifact=str(path),
                runtime=model.runtime,
                threads=int(count),
                stats=stats,
                input_shapes=[list(info.shape) for info in model.inputs],
                model_size_bytes=model.size_bytes,
                runtime_version=_litert_version(),
            )
        )
    return results


# ============================================================================================
# The benchmark harness behind ``edgetl bench``: any .onnx/.tflite file, one fresh process per
# (artifact, thread count), results and how they were measured in one JSON document.
# ============================================================================================

#: Version of the ``bench.json`` layout; ``edgetl compare`` refuses files of another version.
SCHEMA_VERSION = 1
#: The ``kind`` field that marks a JSON file as an edgetl benchmark.
BENCH_KIND = "edgetl.bench.harness"
DEFAULT_RUNS = 200
#: Upper bounds of the options, so that a typo (--runs 10**12) fails at once instead of running for ever.
MAX_RUNS = 1_000_000
MAX_WARMUP = 100_000
MAX_DURATION_S = 3600.0
MAX_THREADS = 1024
MAX_PROFILE_RUNS = 10_000
_PROGRESS_PREFIX = _runner.PROGRESS_PREFIX


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime the harness can drive: capabilities as data, behaviour as functions.

    Attributes:
        name: registry name (``--runtime``).
        label: how reports name it.
        suffixes: model file suffixes it runs; the first runtime listing a suffix is its default.
        open: ``open(path, threads, profile)`` -> a loaded model (``LiteRTModel``, ``ORTModel``).
        version: imports the runtime's package (kept out of cold start) and returns its version.
        set_shapes: gives a loaded model concrete input shapes (None: the runtime takes them per run).
        top_ops: ``top_ops(model, n)`` of a model opened with ``profile=True``; None: no per-op profile.
        no_profile_note: what the report says when ``top_ops`` is None.
        provider: the execution provider or delegate, for models that do not report one.
    """

    name: str
    label: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, int | None, bool], Any]
    version: Callable[[], str]
    set_shapes: Callable[[Any, list[tuple[int, ...]]], None] | None = None
    top_ops: Callable[[Any, int], list[dict[str, Any]]] | None = None
    no_profile_note: str = ""
    provider: str = ""


def _open_ort(path: Path, threads: int | None, profile: bool):
    from edgetl.runtime.onnxruntime import ORTModel

    return ORTModel(path, num_threads=threads, profile=profile)


def _ort_version() -> str:
    from edgetl.runtime.onnxruntime import ort_version

    return ort_version()


def _open_litert(path: Path, threads: int | None, profile: bool):
    from edgetl.runtime.litert import LiteRTModel

    return LiteRTModel(path, num_threads=threads)


def _litert_package_version() -> str:
    import ai_edge_litert.interpreter  # noqa: F401 - imported here so cold start excludes it

    from edgetl.runtime.litert import _litert_version

    return _litert_version()


def _register_runtimes():
    registry: Registry[RuntimeSpec] = Registry("runtime")
    registry.register("onnxruntime", RuntimeSpec(
        "onnxruntime", "ONNX Runtime", (".onnx",), open=_open_ort, version=_ort_version,
        top_ops=lambda model, n: model.top_ops(n),
    ))
    registry.register("litert", RuntimeSpec(
        "litert", "LiteRT", (".tflite",), open=_open_litert, version=_litert_package_version,
        set_shapes=lambda model, shapes: model.resize_inputs(shapes),
        no_profile_note=LITERT_OP_PROFILE_NOTE, provider="CPU, XNNPACK delegate",
    ))
    return registry


RUNTIMES = _register_runtimes()


def default_runtime(path: Path) -> RuntimeSpec:
    """The runtime a model file's suffix calls for.

    Raises:
        ConfigError: no registered runtime runs files with this suffix.
    """
    suffix = path.suffix.lower()
    for _, spec in RUNTIMES.items():
        if suffix in spec.suffixes:
            return spec
    known = ", ".join(sorted({s for _, spec in RUNTIMES.items() for s in spec.suffixes}))
    raise ConfigError(f"Received {path}: edgetl bench runs {known} files, not {suffix or 'files without a suffix'}")


# ----------------------------------------------------------------------------- options
def parse_threads(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)`` (order kept, repeats dropped).

    Raises:
        ConfigError: anything but positive integers separated by commas.
    """
    counts: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 6 or not 1 <= int(part) <= MAX_THREADS:
            raise ConfigError(f"Received --threads {text!r}; pass integers from 1 to {MAX_THREADS} separated by commas, e.g. 1,2,4")
        if int(part) not in counts:
            counts.append(int(part))
    return tuple(counts)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_duration(text: str) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"`` (a bare number is seconds) -> seconds.

    Raises:
        ConfigError: not a positive duration in one of those forms.
    """
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"Received --duration {text!r}; pass a positive duration such as 10s, 500ms or 2m")
    return seconds


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"input=1x224x224x3"`` -> ``("input", (1, 224, 224, 3))``; the name may itself hold ``=``.

    Raises:
        ConfigError: no name, or a dimension that is not a positive integer.
    """
    name, sep, dims = str(text).rpartition("=")
    parts = dims.lower().split("x")
    if not sep or not name or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"Received --shape {text!r}; pass NAME=DIMS with positive sizes joined by x, e.g. input=1x224x224x3")
    return name, tuple(int(p) for p in parts)


@dataclass(frozen=True)
class BenchOptions:
    """How ``edgetl bench`` measures (a dataclass, not pydantic: it must import on a device).

    Attributes:
        threads: thread counts; each is measured in its own process.
        warmup: untimed runs after the cold-start run.
        runs: timed runs (default 200 when ``duration_s`` is not set).
        duration_s: time runs for this long instead of a fixed count.
        batch: size of dynamic batch dimensions; None: 1.
        shapes: concrete shapes for inputs by name (for dynamic dimensions other than batch).
        runtime: ``onnxruntime`` or ``litert``; None: by file suffix.
        profile_runs: runs of the separate profiled session (0: no op profile).
        seed: seed of the synthetic input data.

    Raises:
        ConfigError: a value out of range, or both ``runs`` and ``duration_s``.
    """

    threads: tuple[int, ...] = (1,)
    warmup: int = 20
    runs: int | None = None
    duration_s: float | None = None
    batch: int | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    runtime: str | None = None
    profile_runs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runs is not None and self.duration_s is not None:
            raise ConfigError("Received both --runs and --duration; pass one of them")
        if not self.threads or any(not isinstance(t, int) or not 1 <= t <= MAX_THREADS for t in self.threads):
            raise ConfigError(f"Received threads={list(self.threads)}; pass integers from 1 to {MAX_THREADS}, e.g. 1,2,4")
        if not 0 <= self.warmup <= MAX_WARMUP:
            raise ConfigError(f"Received --warmup {self.warmup}; pass 0 to {MAX_WARMUP:,}")
        if self.runs is not None and not 1 <= self.runs <= MAX_RUNS:
            raise ConfigError(f"Received --runs {self.runs}; pass 1 to {MAX_RUNS:,} (or --duration for a time budget)")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise ConfigError(f"Received a duration of {self.duration_s} s; pass a positive duration of at most {MAX_DURATION_S:.0f} s (1 hour)")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"Received --batch {self.batch}; pass 1 or more")
        if not 0 <= self.profile_runs <= MAX_PROFILE_RUNS:
            raise ConfigError(f"Received profile_runs={self.profile_runs}; pass 0 to {MAX_PROFILE_RUNS:,}")
        if self.runtime is not None:
            RUNTIMES.get(self.runtime)
        object.__setattr__(self, "threads", tuple(self.threads))
        object.__setattr__(self, "shapes", {str(k): tuple(int(d) for d in v) for k, v in dict(self.shapes).items()})

    @property
    def timed_runs(self) -> int | None:
        """Runs to time; None in duration mode."""
        return None if self.duration_s is not None else (self.runs or DEFAULT_RUNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": list(self.threads),
            "warmup": self.warmup,
            "runs": self.timed_runs,
            "duration_s": self.duration_s,
            "batch": self.batch,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "runtime": self.runtime,
            "profile_runs": self.profile_runs,
            "seed": self.seed,
        }


# ----------------------------------------------------------------------------- input shapes
def _shape_text(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def resolve_input_shapes(
    names: Sequence[str],
    declared: Sequence[Sequence[int | str]],
    *,
    shapes: dict[str, tuple[int, ...]],
    batch: int | None,
    artifact: str,
) -> list[tuple[int, ...]]:
    """Concrete shapes for every input: declared fixed sizes, ``--shape`` values, and ``--batch``.

    A dynamic dimension (a symbol, ``"?"``) is taken from ``shapes[name]`` when given; otherwise
    a dynamic first dimension is the batch (``batch``, default 1); any other dynamic dimension
    is an error that names the input and its declared shape.

    Raises:
        ConfigError: an unknown input name in ``shapes``, a shape that contradicts the declared
            one, a fixed batch dimension that differs from ``batch``, or an unresolved dimension.
        ArtifactError: an absurd shape (a dimension above 2^20 or more than 2^31 elements).
    """
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ConfigError(
            f"--shape names input {unknown[0]!r}, but {artifact} has input(s) {', '.join(repr(n) for n in names) or 'none'}"
        )
    resolved = []
    for name, dims in zip(names, declared, strict=True):
        dims = tuple(dims)
        if name in shapes:
            given = shapes[name]
            given_text = "x".join(map(str, given))
            if len(given) != len(dims):
                raise ConfigError(
                    f"--shape {name}={given_text} has {len(given)} dimensions; input {name!r} of {artifact} "
                    f"is declared {_shape_text(dims)} ({len(dims)} dimensions)"
                )
            for i, (want, got) in enumerate(zip(dims, given, strict=True)):
                if isinstance(want, int) and want != got:
                    raise ConfigError(
                        f"--shape {name}={given_text} does not fit input {name!r} of {artifact}: "
                        f"it is declared {_shape_text(dims)}, dimension {i} is fixed at {want}"
                    )
            resolved.append(tuple(given))
            continue
        shape = list(dims)
        if shape and not isinstance(shape[0], int):
            shape[0] = batch or 1
        elif shape and batch is not None and shape[0] != batch:
            raise ConfigError(
                f"--batch {batch} does not fit input {name!r} of {artifact}: it is declared {_shape_text(dims)}, "
                f"with a fixed batch of {shape[0]}"
            )
        open_dims = [str(d) for d in shape if not isinstance(d, int)]
        if open_dims:
            example = "x".join(str(d) if isinstance(d, int) else f"<{d}>" for d in shape)
            raise ConfigError(
                f"input {name!r} of {artifact} is declared {_shape_text(dims)}: dynamic dimension(s) "
                f"{', '.join(open_dims)} need a size; pass --shape {name}={example} with numbers"
            )
        resolved.append(tuple(int(d) for d in shape))
    from edgetl.runtime.isolation import check_input_shape

    for name, shape in zip(names, resolved, strict=True):  # before anything is allocated for them
        check_input_shape(shape, f"input {name!r} of {artifact}")
    return resolved


_SYNTHESISABLE = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool")


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class ArtifactPlan:
    """One artifact, checked and loaded once in this process, ready to measure."""

    path: Path
    label: str
    runtime: RuntimeSpec
    size_bytes: int
    inputs: list[dict[str, Any]]  # name, dtype, declared_shape, shape (resolved)
    outputs: list[dict[str, Any]]
    metadata: dict[str, str]

    @property
    def shapes(self) -> list[list[int]]:
        return [list(i["shape"]) for i in self.inputs]

    @property
    def batch(self) -> int:
        """Inferences per call, for throughput: the first dimension of the first input."""
        first = self.inputs[0]["shape"] if self.inputs else []
        return max(int(first[0]), 1) if first else 1


def artifact_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the file name, with as many parent folders as it takes to tell them apart."""
    parts = [Path(p).parts for p in paths]
    depth = {i: 1 for i in range(len(paths))}
    while True:
        labels = ["/".join(p[-depth[i] :]) for i, p in enumerate(parts)]
        clashes = {i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])}
        if not clashes:
            return labels
        for i in clashes:
            depth[i] += 1


def plan_artifact(path: Path, label: str, options: BenchOptions, *, multi: bool = False) -> ArtifactPlan:
    """Cheap checks, then load the model once here and run it once with its synthetic inputs.

    Everything that can be wrong with an artifact (missing, wrong suffix, corrupt, unresolved
    shapes, unsupported input types) fails here, before any measurement starts.

    Args:
        multi: one of several artifacts: ``options.shapes`` entries naming none of this
            artifact's inputs are skipped instead of refused.

    Raises:
        ArtifactError, ConfigError, DataError.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"model file {path} does not exist")
    if not path.is_file():
        raise ArtifactError(f"model path {path} is not a regular file")
    by_suffix = default_runtime(path)
    runtime = RUNTIMES.get(options.runtime) if options.runtime else by_suffix
    if path.suffix.lower() not in runtime.suffixes:
        raise ConfigError(
            f"--runtime {runtime.name} cannot run {path}: it runs {', '.join(runtime.suffixes)} files; "
            f"{path.suffix} files run in {by_suffix.name}"
        )
    model = runtime.open(path, None, False)
    declared = list(model.declared_shapes)
    names = [info.name for info in model.inputs]
    # With several artifacts a --shape may name an input of only some of them; run_bench checks
    # that each names an input of at least one.
    given = {name: shape for name, shape in options.shapes.items() if name in names} if multi else options.shapes
    shapes = resolve_input_shapes(names, declared, shapes=given, batch=options.batch, artifact=str(path))
    for info, decl in zip(model.inputs, declared, strict=True):
        if info.dtype not in _SYNTHESISABLE:
            raise ConfigError(
                f"input {info.name!r} of {path} has type {info.dtype} (declared {_shape_text(decl)}); "
                "edgetl bench synthesises numeric and boolean inputs only"
            )
    if runtime.set_shapes is not None:
        runtime.set_shapes(model, shapes)
    rng = np.random.default_rng(options.seed)
    data = [synthetic_input(shape, info.dtype, rng) for shape, info in zip(shapes, model.inputs, strict=True)]
    model.invoke_raw(data)  # fail here, not in the middle of a run of measurements
    return ArtifactPlan(
        path=path,
        label=label,
        runtime=runtime,
        size_bytes=int(path.stat().st_size),
        inputs=[
            {"name": info.name, "dtype": info.dtype, "declared_shape": list(decl), "shape": list(shape)}
            for info, decl, shape in zip(model.inputs, declared, shapes, strict=True)
        ],
        outputs=[{"name": info.name, "dtype": info.dtype, "shape": list(info.shape)} for info in model.outputs],
        metadata=dict(getattr(model, "metadata", {}) or {}),
    )


# ----------------------------------------------------------------------------- one measurement
def measure(spec: dict[str, Any], report: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """One (artifact, threads) measurement in this process; meant for a fresh one (``edgetl.bench.worker``).

    The measurement itself is :func:`edgetl.bench.board_runner.measure`, the same code that
    ``edgetl bench --remote`` runs on a board; this wrapper only turns its errors into edgetl's.

    Args:
        spec: see :func:`measurement_spec`.
        report: ``report(done, total, message)``: runs done of ``runs``, or seconds of ``duration_s``.

    Returns:
        ``threads``, ``stats``, ``cold_start_ms``, ``session_ms``, ``first_run_ms``, ``peak_rss_mib``,
        ``runtime_version``, ``provider``, ``op_profile``, ``samples_ms``.

    Raises:
        EdgetlError: the subclass the runner names (ArtifactError, DataError, ConfigError, MissingDependencyError).
    """
    try:
        return _runner.measure(spec, report)
    except _runner.RunnerError as exc:
        raise error_class(exc.kind)(str(exc)) from None


def error_class(name: str | None) -> type[errors.EdgetlError]:
    """The :class:`~edgetl.core.errors.EdgetlError` subclass a runner or worker named; EdgetlError when unknown."""
    cls = getattr(errors, str(name), errors.EdgetlError)
    return cls if isinstance(cls, type) and issubclass(cls, errors.EdgetlError) else errors.EdgetlError


def measurement_spec(plan: ArtifactPlan, threads: int, options: BenchOptions) -> dict[str, Any]:
    """The runner's spec for one (artifact, threads) measurement: shapes, dtypes and settings from the plan."""
    return {
        "path": str(plan.path.resolve()),
        "runtime": plan.runtime.name,
        "threads": int(threads),
        "shapes": plan.shapes,
        "dtypes": [i["dtype"] for i in plan.inputs],
        "warmup": options.warmup,
        "runs": options.timed_runs,
        "duration_s": options.duration_s,
        "profile_runs": options.profile_runs,
        "seed": options.seed,
    }


def _worker_env() -> dict[str, str]:
    root = str(Path(edgetl.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def measure_in_subprocess(
    plan: ArtifactPlan, threads: int, options: BenchOptions, report: Callable[[int, int, str], None] | None = None
) -> dict[str, Any]:
    """Run :func:`measure` in a fresh ``python -m edgetl.bench.worker`` process and return its result.

    Raises:
        EdgetlError: the subclass the worker raised (same message).
        ArtifactError: the runtime crashed the worker (a signal), e.g. on a model it cannot handle.
        RuntimeError: the worker failed otherwise (a bug; its stderr is attached).
    """
    spec = measurement_spec(plan, threads, options)
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as tmp:
        spec_path, result_path, err_path = Path(tmp, "spec.json"), Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        spec["result_path"] = str(result_path)
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with open(err_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgetl.bench.worker", str(spec_path)],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, env=_worker_env(),
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:  # progress lines; anything else a native library prints is dropped
                    if report is not None and line.startswith(_PROGRESS_PREFIX):
                        done, total, *message = line[len(_PROGRESS_PREFIX) :].split(maxsplit=2)
                        report(int(done), int(total), " ".join(message))
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if result_path.is_file():
            outcome = json.loads(result_path.read_text(encoding="utf-8"))
            if outcome.get("ok"):
                return outcome["result"]
            raise error_class(outcome.get("error"))(outcome.get("message", "the benchmark worker failed"))
        stderr_tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise errors.ArtifactError(
            f"{plan.runtime.label} crashed ({name}) while benchmarking {plan.path} with {threads} thread(s); "
            "the model may be corrupt or use something the runtime cannot run"
        )
    raise RuntimeError(f"benchmark worker for {plan.path} exited with code {code}:\n{stderr_tail}")


# ----------------------------------------------------------------------------- the whole run
def _plan_fields(path: Path, label: str, options: BenchOptions, multi: bool) -> dict[str, Any]:
    """:func:`plan_artifact` in a worker process, returned as plain data (the runtime by name)."""
    plan = plan_artifact(path, label, options, multi=multi)
    fields = {name: getattr(plan, name) for name in ("path", "label", "size_bytes", "inputs", "outputs", "metadata")}
    return fields | {"runtime": plan.runtime.name}


def plan_isolated(path: Path, label: str, options: BenchOptions, *, multi: bool = False) -> ArtifactPlan:
    """:func:`plan_artifact`, run in a child process: a model that crashes the runtime (a
    segfault in its loader or kernels) ends that child, not the CLI, and becomes a one-line error.
    Errors edgetl raises there (bad file, shapes) come back as themselves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            fields = pool.submit(_plan_fields, Path(path), label, options, multi).result()
        except BrokenProcessPool:
            raise ArtifactError(
                f"the runtime crashed while loading or running {path} (the process died); the file is corrupt or "
                "uses something this runtime version cannot run: check it with `edgetl inspect`, or try the other runtime"
            ) from None
    runtime = RUNTIMES.get(fields.pop("runtime"))
    return ArtifactPlan(runtime=runtime, **fields)


def plan_bench(artifacts: Sequence[str | os.PathLike[str]], options: BenchOptions) -> list[ArtifactPlan]:
    """Check and load every artifact once, each in a child process (see :func:`plan_isolated`).

    Raises:
        ConfigError, ArtifactError, DataError: no artifacts, a bad file, or a ``--shape`` that
            names no input of any artifact.
    """
    if not artifacts:
        raise ConfigError("Received no artifacts; pass one or more .onnx or .tflite files")
    paths = [Path(a) for a in artifacts]
    labels = artifact_labels([p.resolve() if p.exists() else p for p in paths])
    multi = len(paths) > 1
    plans = [plan_isolated(path, label, options, multi=multi) for path, label in zip(paths, labels, strict=True)]
    all_inputs = {i["name"] for plan in plans for i in plan.inputs}
    unused = [name for name in options.shapes if name not in all_inputs]
    if unused:
        raise ConfigError(
            f"--shape names input {unused[0]!r}, which none of the artifacts has; their inputs: "
            + ", ".join(f"{plan.label}: {', '.join(repr(i['name']) for i in plan.inputs)}" for plan in plans)
        )
    return plans


class LocalMachine:
    """Where :func:`run_bench` measures by default: this machine, one fresh ``python -m edgetl.bench.worker`` per measurement.

    Another place to measure (``edgetl.bench.remote.RemoteBoard``) offers the same three members.
    """

    isolation = "each (artifact, thread count) runs in a fresh Python process (python -m edgetl.bench.worker)"

    def measure(self, plan: ArtifactPlan, threads: int, options: BenchOptions, report: Callable[[int, int, str], None]) -> dict[str, Any]:
        return measure_in_subprocess(plan, threads, options, report)

    def machine(self) -> dict[str, Any]:
        return machine_info()

    def notes(self) -> dict[str, Any]:
        """Extra top-level fields of ``bench.json`` (a remote board says which one it was)."""
        return {}


def run_bench(
    artifacts: Sequence[str | os.PathLike[str] | ArtifactPlan],
    options: BenchOptions | None = None,
    *,
    progress: Progress | None = None,
    where: LocalMachine | Any | None = None,
) -> dict[str, Any]:
    """Benchmark every artifact at every thread count, each in a fresh process.

    All artifacts are checked and loaded once in this process first (:func:`plan_bench`), so a
    bad file or an unresolvable input shape fails before any measurement.

    Args:
        artifacts: ``.onnx`` / ``.tflite`` files (no ``edgetl.json`` needed), or the plans
            :func:`plan_bench` made of them with the same ``options``.
        options: how to measure; None: defaults.
        progress: callback ``(task, completed, total, message)``; one task per measurement.
        where: where to measure: :class:`LocalMachine` (default) or an ``edgetl.bench.remote.RemoteBoard``;
            its CPU, OS and Python are the document's ``machine``.

    Returns:
        The ``bench.json`` document (``schema_version`` 1): settings, machine, versions, and per
        artifact its inputs and per thread count the statistics, cold start, peak RSS, op
        profile and raw samples.

    Raises:
        ConfigError, ArtifactError, DataError: bad options or artifacts.
    """
    from datetime import UTC, datetime

    options = options or BenchOptions()
    progress = progress or log_progress
    where = where or LocalMachine()
    if artifacts and all(isinstance(a, ArtifactPlan) for a in artifacts):
        plans = list(artifacts)
    else:
        plans = plan_bench(artifacts, options)

    entries = []
    for plan in plans:
        results = []
        for threads in options.threads:
            task = f"{plan.label} ({plan.runtime.label}, {threads} thread{'s' if threads > 1 else ''})"

            def report(done: int, total: int, message: str, task: str = task) -> None:
                progress(task, done, total, message)

            result = where.measure(plan, threads, options, report)
            logger.info("%s threads=%d: p50 %.3f ms", plan.label, threads, result["stats"]["p50_ms"])
            results.append(result)
        entries.append({
            "label": plan.label,
            "path": str(plan.path),
            "format": plan.path.suffix.lower().lstrip("."),
            "runtime": plan.runtime.name,
            "runtime_label": plan.runtime.label,
            "runtime_version": results[0]["runtime_version"],
            "provider": results[0]["provider"],
            "size_bytes": plan.size_bytes,
            "batch": plan.batch,
            "inputs": plan.inputs,
            "outputs": plan.outputs,
            "metadata": plan.metadata,
            "results": results,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": BENCH_KIND,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgetl_version": edgetl.__version__,
        "settings": options.to_dict(),
        "method": {
            "isolation": where.isolation,
            "timer": "time.perf_counter_ns around each call of the runtime's run/invoke on pre-made inputs",
            "inputs": "synthetic, from the model's declared input types and shapes: standard normal floats, "
            "integers over the dtype's full range (seeded)",
            "cold_start": "session/interpreter creation plus the first run, runtime package already imported",
            "peak_rss": "peak resident set of the benchmark process (Linux VmHWM, else ru_maxrss), read after the timed runs (before profiling)",
            "percentiles": "numpy.percentile, linear interpolation; std is the population standard deviation",
            "throughput": "batch / mean latency, batch = first dimension of the first input",
            "op_profile": "; ".join(
                f"{spec.label}: "
                + (f"a separate profiled session after the timed runs ({options.profile_runs} runs), kernel time per op type"
                   if spec.top_ops else spec.no_profile_note)
                for spec in sorted({plan.runtime for plan in plans}, key=lambda spec: spec.name)
            ),
        },
        "machine": where.machine(),
        **where.notes(),
        "artifacts": entries,
    }


def check_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse an ``--out`` that is a file, before any measurement.

    Raises:
        OutputExistsError: ``out_dir`` exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; pass a folder for --out")
    return out


def write_bench(doc: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Render and write ``bench.json``, ``report.md`` and ``report.html`` into ``out_dir``.

    Everything is rendered before anything is written, and each file is written under a
    temporary name and renamed, so an error leaves no half-written file.

    Returns:
        ``{"json": path, "markdown": path, "html": path}``.
    """
    from edgetl.bench.report import render_html, render_markdown

    out = check_output_dir(out_dir)
    texts = {
        "json": json.dumps(doc, indent=1) + "\n",
        "markdown": render_markdown(doc),
        "html": render_html(doc),
    }
    names = {"json": "bench.json", "markdown": "report.md", "html": "report.html"}
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, text in texts.items():
        written[key] = _fs.write_text(out / names[key], text)
    return written


# ----------------------------------------------------------------------------- compare
def load_bench(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``bench.json`` that ``edgetl bench`` wrote.

    Raises:
        ArtifactError: missing, not JSON, not an edgetl bench file, or an unsupported ``schema_version``.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"benchmark file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path} is not an edgetl bench file: not readable JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(doc, dict) or doc.get("kind") != BENCH_KIND or "schema_version" not in doc:
        raise ArtifactError(f"{path} is not an edgetl bench file (no \"kind\": \"{BENCH_KIND}\"); pass a bench.json that `edgetl bench` wrote")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {doc['schema_version']!r}; this edgetl reads schema_version {SCHEMA_VERSION}"
        )
    artifacts = doc.get("artifacts")
    if not isinstance(artifacts, list) or not all(
        isinstance(a, dict) and isinstance(a.get("label"), str) and isinstance(a.get("results"), list) for a in artifacts
    ):
        raise ArtifactError(f"{path} is not a complete edgetl bench file (its \"artifacts\" list is malformed)")
    return doc


def _bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = samples.size
    medians = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)  # bound the index matrix to ~32 MB
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        medians[start : start + count] = np.median(samples[rng.integers(0, n, size=(count, n))], axis=1)
    return medians


def bootstrap_ratio_ci(
    a_ms: Sequence[float], b_ms: Sequence[float], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """p50(B) / p50(A) and its bootstrap percentile confidence interval.

    Each sample set is resampled with replacement ``resamples`` times (seeded); the interval is
    the central ``confidence`` part of the resampled ratios.

    Returns:
        ``(ratio, low, high)``.
    """
    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ratio_ci() needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(b, resamples, rng) / _bootstrap_medians(a, resamples, rng)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.median(b) / np.median(a)), float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """p50 of one artifact at one thread count in file B relative to file A."""

    artifact_a: str
    artifact_b: str
    threads: int
    p50_a_ms: float
    p50_b_ms: float
    ratio: float  # p50 B / p50 A: below 1, B is faster
    ci_low: float
    ci_high: float
    runs_a: int
    runs_b: int

    @property
    def significant(self) -> bool:
        return not (self.ci_low <= 1.0 <= self.ci_high)

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "no significant difference"
        if self.ratio < 1:
            return f"B is {1 / self.ratio:.2f}x faster"
        return f"B is {self.ratio:.2f}x slower"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant, "verdict": self.verdict}


def compare_benches(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    threads: int | None = None,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    names: tuple[str, str] = ("A", "B"),
) -> list[Comparison]:
    """Pair artifacts by label (or the only artifact of each file) and thread count; compare their p50.

    Raises:
        ConfigError: nothing to pair, or ``threads`` is in neither file's pairs.
        ArtifactError: a paired result holds no raw samples.
    """
    by_label_a = {e["label"]: e for e in a["artifacts"]}
    by_label_b = {e["label"]: e for e in b["artifacts"]}
    pairs = [(by_label_a[label], by_label_b[label]) for label in by_label_a if label in by_label_b]
    if not pairs and len(a["artifacts"]) == 1 and len(b["artifacts"]) == 1:
        pairs = [(a["artifacts"][0], b["artifacts"][0])]
    if not pairs:
        raise ConfigError(
            f"{names[0]} and {names[1]} share no artifact: {names[0]} has {', '.join(by_label_a) or 'none'}, "
            f"{names[1]} has {', '.join(by_label_b) or 'none'}"
        )
    comparisons = []
    available = set()
    for entry_a, entry_b in pairs:
        results_b = {int(r["threads"]): r for r in entry_b["results"]}
        for result_a in entry_a["results"]:
            count = int(result_a["threads"])
            if count not in results_b:
                continue
            available.add(count)
            if threads is not None and count != threads:
                continue
            result_b = results_b[count]
            samples_a, samples_b = result_a.get("samples_ms") or [], result_b.get("samples_ms") or []
            if not samples_a or not samples_b:
                side = names[0] if not samples_a else names[1]
                raise ArtifactError(f"{side} holds no raw latency samples for {entry_a['label']} at {count} thread(s)")
            ratio, low, high = bootstrap_ratio_ci(samples_a, samples_b, resamples=resamples, seed=seed, confidence=confidence)
            comparisons.append(Comparison(
                artifact_a=entry_a["label"], artifact_b=entry_b["label"], threads=count,
                p50_a_ms=float(np.median(samples_a)), p50_b_ms=float(np.median(samples_b)),
                ratio=ratio, ci_low=low, ci_high=high, runs_a=len(samples_a), runs_b=len(samples_b),
            ))
    if not comparisons:
        shown = ", ".join(map(str, sorted(available))) or "none"
        wanted = f" at {threads} thread(s)" if threads is not None else ""
        raise ConfigError(f"{names[0]} and {names[1]} have no measurement in common{wanted}; thread counts in both: {shown}")
    return comparisons
