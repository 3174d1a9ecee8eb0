"""edgetl.bench: statistics, the timing loop, and LiteRT benchmarks of a tiny model."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgetl.bench import (
    BenchResult,
    LatencyStats,
    bench_tflite,
    machine_info,
    summarize,
    synthetic_input,
    time_calls,
)
from edgetl.errors import ArtifactError
from tests.unit.test_runtime_litert import INPUT_SHAPE, build_tflite_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_tflite_models(tmp_path_factory.mktemp("bench"))


def test_summarize_matches_numpy_on_a_known_list():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 9.0, 8.0]
    stats = summarize(samples, warmup=3, batch=4)
    assert isinstance(stats, LatencyStats)
    assert stats.runs == 10 and stats.warmup == 3
    assert stats.p50_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.p99_ms == pytest.approx(9.91)
    assert stats.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.std_ms == pytest.approx(np.std(samples))
    assert (stats.min_ms, stats.max_ms) == (1.0, 10.0)
    assert stats.throughput_ips == pytest.approx(4 * 1000 / 5.5)
    assert json.loads(json.dumps(stats.to_dict()))["p50_ms"] == pytest.approx(5.5)


def test_summarize_single_sample_and_errors():
    stats = summarize([2.0], warmup=0)
    assert stats.p50_ms == stats.p99_ms == stats.min_ms == stats.max_ms == 2.0
    assert stats.std_ms == 0.0 and stats.throughput_ips == pytest.approx(500.0)
    with pytest.raises(ValueError, match="at least one"):
        summarize([], warmup=0)
    with pytest.raises(ValueError, match="batch"):
        summarize([1.0], warmup=0, batch=0)


def test_time_calls_counts_and_excludes_warmup():
    calls = []

    def fn():
        calls.append(len(calls))
        time.sleep(0.02 if len(calls) <= 2 else 0.001)  # slow warm-up calls must not be recorded

    samples = time_calls(fn, warmup=2, runs=5)
    assert len(calls) == 7 and len(samples) == 5
    assert all(0.9 <= s < 20.0 for s in samples)
    with pytest.raises(ValueError):
        time_calls(fn, warmup=0, runs=0)


def test_synthetic_input_respects_dtype_ranges():
    rng = np.random.default_rng(0)
    q = synthetic_input((2, 8, 8, 3), "int8", rng)
    assert q.dtype == np.int8 and q.shape == (2, 8, 8, 3) and q.min() < -64 and q.max() > 64
    u = synthetic_input((1000,), "uint8", rng)
    assert u.dtype == np.uint8 and u.min() < 32 and u.max() > 223
    f = synthetic_input((1000,), "float32", rng)
    assert f.dtype == np.float32 and abs(float(f.mean())) < 0.2 and 0.8 < float(f.std()) < 1.2


@pytest.mark.parametrize("key", ["fp32", "int8"])
def test_bench_tflite_honours_threads_and_runs(models, key):
    results = bench_tflite(models[key], threads=[1, 2], warmup=2, runs=7)
    assert [r.threads for r in results] == [1, 2]
    for result in results:
        assert isinstance(result, BenchResult)
        stats = result.stats
        assert stats.runs == 7 and stats.warmup == 2
        assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
        assert stats.throughput_ips > 0
        assert result.runtime == "litert" and result.runtime_version[0].isdigit()
        assert result.input_shapes == [[1, *INPUT_SHAPE]]
        assert result.model_size_bytes == models[key].stat().st_size
        data = json.loads(json.dumps(result.to_dict()))
        assert data["stats"]["runs"] == 7 and data["artifact"] == str(models[key])


def test_bench_tflite_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all, not a model at all")
    with pytest.raises(ArtifactError, match="not a TFLite model"):
        bench_tflite(bad, threads=[1], runs=1)


def test_machine_info():
    info = machine_info()
    assert info["cpu"] and isinstance(info["cores"], int) and info["cores"] >= 1
    assert info["os"] and info["python"].count(".") == 2
    json.dumps(info)
