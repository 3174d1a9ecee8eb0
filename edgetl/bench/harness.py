"""The benchmark harness: one timing path for ``edgetl build``'s latency check and ``edgetl bench``.

Every measurement is :func:`measure`, which is :func:`edgetl.bench.board_runner.measure`: cold
start, warm-up, the timed loop (``perf_counter_ns`` around each call on pre-made synthetic
inputs), peak RSS, op profile and statistics, in a stand-alone file that needs only numpy and the
runtime, so a board measured over SSH (:mod:`edgetl.bench.remote`) runs the very same code.

- :func:`bench_in_process` is ``edgetl build``'s quick check: :func:`measure` in this process,
  once per thread count, without an op profile, summarised as :class:`~edgetl.bench.stats.BenchResult`.
- :func:`run_bench` is ``edgetl bench``: any ``.onnx`` or ``.tflite`` file, planned first
  (:mod:`edgetl.bench.plan`), each (artifact, thread count) measured by :func:`measure` in a fresh
  process (:mod:`edgetl.bench.isolation`, honest cold start and peak RSS) or on a board, raw
  samples kept for ``edgetl compare`` (:mod:`edgetl.bench.compare`), all in one ``bench.json``
  document that :func:`write_bench` writes with its reports (:mod:`edgetl.bench.report`).

No TensorFlow here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edgetl
from edgetl.bench.board_runner import machine_info, timed_loop
from edgetl.bench.isolation import measure, measure_in_subprocess
from edgetl.bench.options import BenchOptions
from edgetl.bench.plan import ArtifactPlan, plan_bench
from edgetl.bench.report import render_html, render_markdown
from edgetl.bench.runtimes import RUNTIMES, default_runtime
from edgetl.bench.stats import BENCH_KIND, SCHEMA_VERSION, BenchResult, LatencyStats
from edgetl.core import fs as _fs
from edgetl.core.errors import OutputExistsError
from edgetl.core.progress import Progress, log_progress

logger = logging.getLogger(__name__)


def time_calls(fn: Callable[[], object], *, warmup: int, runs: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times, each timed with ``perf_counter_ns``
    (:func:`edgetl.bench.board_runner.timed_loop`, the loop every measurement uses).

    Returns:
        ``runs`` latencies in milliseconds.
    """
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
    for _ in range(warmup):
        fn()
    return timed_loop(fn, runs=runs)


def bench_in_process(
    path: str | os.PathLike[str], *, threads: Sequence[int], warmup: int = 10, runs: int = 50, seed: int = 0,
    runtime: str | None = None,
) -> list[BenchResult]:
    """Time a ``.tflite`` (LiteRT) or ``.onnx`` (ONNX Runtime) file in this process, once per thread count.

    The model is checked and loaded once here (verified, and probed in a child process); each
    thread count is then one :func:`measure` (the measurement ``edgetl bench`` runs) without an op
    profile. Inputs are synthesised from the model's input shapes and dtypes, every dynamic
    dimension set to 1 (the same data for every thread count).

    Args:
        runtime: ``litert`` or ``onnxruntime``; None: by file suffix.

    Raises:
        ArtifactError: the file is not a valid model.
        ConfigError: no runtime runs files with this suffix.
    """
    path = Path(path)
    spec = RUNTIMES.get(runtime) if runtime else default_runtime(path)
    model = spec.open(path, None, False)
    shapes = [[d if isinstance(d, int) and d > 0 else 1 for d in info.shape] for info in model.inputs]
    dtypes = [info.dtype for info in model.inputs]
    size_bytes = int(model.size_bytes)
    del model
    results = []
    for count in threads:
        result = measure({
            "path": str(path.resolve()), "runtime": spec.name, "threads": int(count), "shapes": shapes, "dtypes": dtypes,
            "warmup": warmup, "runs": runs, "duration_s": None, "profile_runs": 0, "seed": seed,
        })
        stats = LatencyStats(**result["stats"])
        logger.info("%s %s threads=%d: p50 %.3f ms", path.name, spec.name, count, stats.p50_ms)
        results.append(BenchResult(
            artifact=str(path), runtime=spec.name, threads=int(count), stats=stats,
            input_shapes=[list(s) for s in shapes], model_size_bytes=size_bytes, runtime_version=result["runtime_version"],
        ))
    return results


def bench_tflite(
    path: str | os.PathLike[str], *, threads: Sequence[int], warmup: int = 10, runs: int = 50, seed: int = 0
) -> list[BenchResult]:
    """:func:`bench_in_process` with LiteRT (the file must be a ``.tflite`` model).

    Raises:
        ArtifactError: the file is not a valid model.
    """
    return bench_in_process(path, threads=threads, warmup=warmup, runs=runs, seed=seed, runtime="litert")


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
            "throughput": "batch / median (p50) latency, batch = first dimension of the first input (the median, so rare outliers do not distort it)",
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


