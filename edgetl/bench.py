"""Latency harness: time any callable, summarize, and benchmark model files per runtime.

Runtime-agnostic by construction: :func:`time_calls` and :func:`summarize` know nothing about
models; one ``bench_<runtime>`` function per runtime builds the callable. No TensorFlow here.
Every result carries how it was measured (warm-up, runs, threads, runtime version), and
:func:`machine_info` describes where.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("summarize() needs at least one latency sample")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    p50, p90, p99 = np.percentile(samples, [50, 90, 99], method="linear")
    mean = float(samples.mean())
    return LatencyStats(
        runs=int(samples.size),
        warmup=int(warmup),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=mean,
        std_ms=float(samples.std()),
        min_ms=float(samples.min()),
        max_ms=float(samples.max()),
        throughput_ips=batch * 1000.0 / mean if mean > 0 else float("inf"),
    )


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


def synthetic_input(shape: Sequence[int], dtype: str | np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Random data of a tensor's shape and dtype: the full integer range, or standard normal floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=tuple(shape), dtype=dtype, endpoint=True)
    if dtype == np.bool_:
        return rng.integers(0, 1, size=tuple(shape), endpoint=True).astype(np.bool_)
    return rng.standard_normal(size=tuple(shape)).astype(dtype)


def bench_tflite(
    path: str | os.PathLike[str], *, threads: Sequence[int], warmup: int = 10, runs: int = 50, seed: int = 0
) -> list[BenchResult]:
    """Time a ``.tflite`` file with LiteRT, once per thread count.

    Inputs are synthesised from the model's declared input shapes and dtypes (the same data
    for every thread count); the timed call is ``invoke_raw`` alone.

    Raises:
        ArtifactError: the file is not a valid model.
    """
    from edgetl.runtimes.litert import LiteRTModel, _litert_version

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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: CPU model, logical cores, OS, Python version."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
