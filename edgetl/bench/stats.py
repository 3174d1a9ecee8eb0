"""Benchmark results as data: latency statistics, one measured result, and the ``bench.json`` identity.

:func:`summarize` turns per-call latencies into :class:`LatencyStats` with the board runner's
statistics (:func:`edgetl.bench.board_runner.latency_stats`, one implementation); :class:`BenchResult`
is one artifact at one thread count as ``edgetl build`` records it. :data:`SCHEMA_VERSION` and
:data:`BENCH_KIND` mark a ``bench.json`` document (written by :mod:`edgetl.bench.harness`, read by
:mod:`edgetl.bench.compare`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgetl.bench import board_runner as _runner


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
    throughput_ips: float  # inferences per second: batch / median (p50) latency, robust to outliers

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


#: Version of the ``bench.json`` layout; ``edgetl compare`` refuses files of another version.
SCHEMA_VERSION = 1
#: The ``kind`` field that marks a JSON file as an edgetl benchmark.
BENCH_KIND = "edgetl.bench.harness"
