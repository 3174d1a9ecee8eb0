"""edgetl.bench.harness: statistics, the timing loop, LiteRT benchmarks, and the `edgetl bench`/`compare` harness on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgetl.bench.board_runner import LITERT_OP_PROFILE_NOTE, machine_info, synthetic_input, timed_loop
from edgetl.bench.compare import Comparison, bootstrap_ratio_ci, compare_benches, load_bench, parse_equivalence
from edgetl.bench.harness import bench_tflite, run_bench, time_calls
from edgetl.bench.isolation import measure, measure_in_subprocess
from edgetl.bench.options import BenchOptions, parse_duration, parse_shape, parse_threads
from edgetl.bench.plan import artifact_labels, plan_bench, resolve_input_shapes
from edgetl.bench.stats import BENCH_KIND, SCHEMA_VERSION, BenchResult, LatencyStats, summarize
from edgetl.core.errors import ArtifactError, ConfigError
from tests.helpers import INPUT_SHAPE, blocker_site, build_onnx_model, build_tflite_models

REPO_ROOT = Path(__file__).resolve().parents[3]


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
    assert stats.throughput_ips == pytest.approx(4 * 1000 / 5.5)  # batch / p50
    assert json.loads(json.dumps(stats.to_dict()))["p50_ms"] == pytest.approx(5.5)


def test_throughput_comes_from_the_median_not_the_mean():
    """One 172 ms outlier among 1 ms calls must not make the setting look 5x slower."""
    steady = [1.0] * 49 + [172.0]
    faster_p50 = [0.9] * 50
    a, b = summarize(steady, warmup=0), summarize(faster_p50, warmup=0)
    assert a.mean_ms > 4 and a.throughput_ips == pytest.approx(1000.0)  # 1000 / p50, not 1000 / mean (~225)
    assert b.throughput_ips == pytest.approx(1000 / 0.9) and b.throughput_ips / a.throughput_ips == pytest.approx(1 / 0.9)


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


# ============================================================================================
# The harness behind `edgetl bench` / `edgetl compare`
# ============================================================================================



def test_parse_threads():
    assert parse_threads("1,2,4") == (1, 2, 4)
    assert parse_threads(" 2 , 1,2") == (2, 1)
    for bad in ("1,x", "", "0", "1,,2", "-1", "1.5"):
        with pytest.raises(ConfigError, match="--threads"):
            parse_threads(bad)


def test_parse_duration():
    assert parse_duration("10s") == 10.0
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("2m") == 120.0
    assert parse_duration("1.5") == 1.5
    for bad in ("10q", "s", "0s", "-1s", "ten seconds", ""):
        with pytest.raises(ConfigError, match="--duration"):
            parse_duration(bad)


def test_parse_shape():
    assert parse_shape("input=1x224x224x3") == ("input", (1, 224, 224, 3))
    assert parse_shape("serving_default:0=2X8") == ("serving_default:0", (2, 8))
    assert parse_shape("a=b=3") == ("a=b", (3,))
    for bad in ("1x224x224x3", "=1x2", "x=", "x=1x0", "x=1xa", "x=1,2"):
        with pytest.raises(ConfigError, match="--shape"):
            parse_shape(bad)


def test_bench_options_validate():
    assert BenchOptions().timed_runs == 200
    assert BenchOptions(duration_s=1.0).timed_runs is None
    assert BenchOptions(threads=[2, 1]).threads == (2, 1)
    with pytest.raises(ConfigError, match="both --runs and --duration"):
        BenchOptions(runs=5, duration_s=1.0)
    for kwargs, fragment in [({"threads": ()}, "threads"), ({"threads": (0,)}, "threads"), ({"warmup": -1}, "--warmup"),
                             ({"runs": 0}, "--runs"), ({"batch": 0}, "--batch"), ({"runtime": "tvm"}, "known runtimes: litert, onnxruntime")]:
        with pytest.raises(ConfigError, match=fragment):
            BenchOptions(**kwargs)


def test_resolve_input_shapes():
    def resolve(declared, shapes=None, batch=None, names=("x",)):
        return resolve_input_shapes(list(names), declared, shapes=shapes or {}, batch=batch, artifact="m.onnx")

    assert resolve([("N", 3, 32, 32)]) == [(1, 3, 32, 32)]
    assert resolve([("N", 3, 32, 32)], batch=8) == [(8, 3, 32, 32)]
    assert resolve([(1, 16, 16, 3)]) == [(1, 16, 16, 3)]
    assert resolve([("?", 16)], batch=2) == [(2, 16)]
    assert resolve([()]) == [()]
    assert resolve([("N", 3, "H", "W")], shapes={"x": (2, 3, 64, 48)}) == [(2, 3, 64, 48)]
    assert resolve([("N", 3), ("N",)], batch=4, names=("a", "b")) == [(4, 3), (4,)]
    with pytest.raises(ConfigError, match=r"input 'x' of m.onnx is declared \[N, 3, H, W\]: dynamic dimension\(s\) H, W") as info:
        resolve([("N", 3, "H", "W")])
    assert "--shape x=1x3x<H>x<W>" in str(info.value)
    with pytest.raises(ConfigError, match=r"fixed batch of 1"):
        resolve([(1, 16, 16, 3)], batch=4)
    with pytest.raises(ConfigError, match=r"dimension 1 is fixed at 3"):
        resolve([("N", 3, 32, 32)], shapes={"x": (1, 4, 32, 32)})
    with pytest.raises(ConfigError, match=r"has 2 dimensions"):
        resolve([("N", 3, 32, 32)], shapes={"x": (1, 3)})
    with pytest.raises(ConfigError, match=r"--shape names input 'y', but m.onnx has input\(s\) 'x'"):
        resolve([("N", 3)], shapes={"y": (1, 3)})


def test_artifact_labels_are_short_and_unique():
    assert artifact_labels([Path("/a/model.onnx"), Path("/b/model.tflite")]) == ["model.onnx", "model.tflite"]
    assert artifact_labels([Path("/x/a/model.onnx"), Path("/x/b/model.onnx"), Path("/y/c.onnx")]) == ["a/model.onnx", "b/model.onnx", "c.onnx"]


def test_timed_loop_runs_and_duration():
    calls = []
    assert len(timed_loop(lambda: calls.append(1), runs=7)) == 7 and len(calls) == 7
    reports = []
    start = time.perf_counter()
    samples = timed_loop(lambda: time.sleep(0.005), duration_s=0.3, report=lambda done, elapsed: reports.append((done, elapsed)))
    elapsed = time.perf_counter() - start
    assert 0.3 <= elapsed < 1.0 and 20 <= len(samples) <= 60 and all(s >= 4.5 for s in samples)
    assert reports and reports[-1][0] <= len(samples)
    with pytest.raises(ValueError):
        timed_loop(lambda: None, runs=3, duration_s=1.0)


def test_bootstrap_ratio_ci():
    rng = np.random.default_rng(0)
    a = 10 + rng.gamma(2.0, 0.5, 400)
    same = 10 + rng.gamma(2.0, 0.5, 400)
    ratio, low, high = bootstrap_ratio_ci(a, same, resamples=1000, seed=1)
    assert low <= 1.0 <= high and low < ratio < high
    ratio, low, high = bootstrap_ratio_ci(a, a * 0.5, resamples=1000, seed=1)
    assert ratio == pytest.approx(0.5) and 0.45 < low < ratio < high < 0.55
    assert bootstrap_ratio_ci(a, same, resamples=500, seed=3) == bootstrap_ratio_ci(a, same, resamples=500, seed=3)


def _doc(*artifacts: tuple[str, dict[int, list[float]]]) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "kind": BENCH_KIND,
        "artifacts": [{"label": label, "results": [{"threads": t, "samples_ms": s} for t, s in results.items()]} for label, results in artifacts],
    }


def test_compare_benches_pairs_by_label_and_threads():
    rng = np.random.default_rng(0)
    base = list(1.0 + rng.gamma(2.0, 0.05, 300))
    a = _doc(("m.onnx", {1: base, 2: base}), ("only_in_a.onnx", {1: base}))
    b = _doc(("m.onnx", {1: [v * 0.5 for v in base], 2: [v * 2 for v in base], 4: base}))
    comparisons = compare_benches(a, b, resamples=300)
    assert [(c.artifact_a, c.threads) for c in comparisons] == [("m.onnx", 1), ("m.onnx", 2)]
    assert comparisons[0].verdict == "B is 2.00x faster" and comparisons[0].significant
    assert comparisons[1].verdict == "B is 2.00x slower"
    assert comparisons[0].to_dict()["verdict"] == "B is 2.00x faster"
    assert [c.threads for c in compare_benches(a, b, threads=2, resamples=300)] == [2]
    same = compare_benches(a, _doc(("m.onnx", {1: base})), resamples=300)
    assert [c.verdict for c in same] == ["equivalent (within ±3%)"] and same[0].ratio == 1.0 and same[0].status == "equivalent"
    # one artifact each, different names: the two are compared
    renamed = compare_benches(_doc(("x.tflite", {1: base})), _doc(("y.onnx", {1: base})), resamples=300)
    assert (renamed[0].artifact_a, renamed[0].artifact_b) == ("x.tflite", "y.onnx")
    with pytest.raises(ConfigError, match=r"no measurement in common at 8 thread\(s\); thread counts in both: 1, 2"):
        compare_benches(a, b, threads=8)
    with pytest.raises(ConfigError, match="share no artifact"):
        compare_benches(a, _doc(("z.onnx", {1: base}), ("w.onnx", {1: base})))
    with pytest.raises(ArtifactError, match="no raw latency samples"):
        compare_benches(a, _doc(("m.onnx", {1: []})))


def _noisy(seed: int, n: int = 400, scale: float = 1.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(scale * (1.0 + rng.gamma(2.0, 0.01, n)))


def _one(a: list[float], b: list[float], **kwargs) -> Comparison:
    (c,) = compare_benches(_doc(("m.onnx", {1: a})), _doc(("m.onnx", {1: b})), resamples=400, **kwargs)
    return c


def test_compare_equivalence_band_decides_on_the_interval():
    base = _noisy(0)
    # a 1% shift with a tight interval: significant, but noise-level -> equivalent within ±3%
    shifted = _one(base, [v * 1.01 for v in base])
    assert shifted.significant and shifted.ci_low > 1.0
    assert shifted.status == "equivalent" and shifted.verdict == "equivalent (within ±3%)"
    low, high = shifted.band
    assert (low, high) == (pytest.approx(1 / 1.03), pytest.approx(1.03)) and low <= shifted.ci_low <= shifted.ci_high <= high
    # the same data with a 0.5% band: the 1% difference is real and beyond the band
    strict = _one(base, [v * 1.01 for v in base], equivalence=0.005)
    assert strict.status == "slower" and strict.verdict == "B is 1.01x slower"
    # 10% faster: the whole interval below 1/1.03
    assert _one(base, [v / 1.1 for v in base]).verdict == "B is 1.10x faster"
    # an interval straddling the band edge (1.03) is inconclusive, worded by the point estimate
    edge = _one(base, [v * 1.03 for v in base])
    assert edge.ci_low < 1.03 < edge.ci_high and edge.status == "inconclusive"
    assert edge.verdict.startswith("inconclusive (")
    wide_a, wide_b = _noisy(1, n=15, scale=1.0), _noisy(2, n=15, scale=1.0)
    wide_b = [v * (1 + 0.2 * (i % 2)) for i, v in enumerate(wide_b)]  # a spread wider than the band
    wide = _one(wide_a, wide_b)
    assert wide.status == "inconclusive" and wide.ci_high > 1.03
    d = edge.to_dict()
    assert d["equivalence"] == 0.03 and d["status"] == "inconclusive" and d["equivalence_band"] == [pytest.approx(1 / 1.03), pytest.approx(1.03)]
    with pytest.raises(ConfigError, match="equivalence"):
        _one(base, base, equivalence=1.5)


@pytest.mark.parametrize("text, value", [("3%", 0.03), ("3", 0.03), (" 0.5 % ", 0.005), ("0%", 0.0)])
def test_parse_equivalence(text, value):
    assert parse_equivalence(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "-1%", "100%", "150"])
def test_parse_equivalence_refuses(text):
    with pytest.raises(ConfigError, match="--equivalence"):
        parse_equivalence(text)


def test_load_bench_refuses_what_is_not_a_bench_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_bench(tmp_path / "missing.json")
    cases = {
        "text.json": ("not json", "not readable JSON"),
        "list.json": ("[1, 2]", "not an edgetl bench file"),
        "other.json": (json.dumps({"schema_version": 1, "kind": "something"}), "not an edgetl bench file"),
        "future.json": (json.dumps({"schema_version": 2, "kind": BENCH_KIND, "artifacts": []}), "schema_version 2"),
        "broken.json": (json.dumps({"schema_version": 1, "kind": BENCH_KIND, "artifacts": [{"label": 3}]}), "malformed"),
    }
    for name, (text, fragment) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ArtifactError, match=fragment) as info:
            load_bench(tmp_path / name)
        assert "\n" not in str(info.value)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(_doc(("m.onnx", {1: [1.0]}))))
    assert load_bench(ok)["artifacts"][0]["label"] == "m.onnx"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return build_onnx_model(tmp_path_factory.mktemp("bench_onnx") / "tiny.onnx")


def test_measure_in_process_duration_mode(onnx_model):
    spec = {"path": str(onnx_model), "runtime": "onnxruntime", "threads": 1, "shapes": [[2, 3, 32, 32]], "dtypes": ["float32"],
            "warmup": 2, "runs": None, "duration_s": 0.3, "profile_runs": 3, "seed": 0}
    reports = []
    result = measure(spec, lambda done, total, message: reports.append((done, total, message)))
    assert len(result["samples_ms"]) == result["stats"]["runs"] > 10
    assert 0.25 <= sum(result["samples_ms"]) / 1000 <= 0.6  # the timed calls fill the duration
    assert result["stats"]["throughput_ips"] == pytest.approx(2 * 1000 / result["stats"]["p50_ms"])
    assert result["cold_start_ms"] == pytest.approx(result["session_ms"] + result["first_run_ms"])
    assert {o["calls"] for o in result["op_profile"]} == {3}
    assert reports[0] == (0, 1, "cold start") and reports[-1][2] == "done"


def test_worker_errors_come_back_as_the_same_error(onnx_model, tmp_path):
    copy = tmp_path / "gone.onnx"
    copy.write_bytes(onnx_model.read_bytes())
    options = BenchOptions(runs=3, warmup=0)
    (plan,) = plan_bench([copy], options)
    copy.unlink()  # planned in this process, gone by the time the worker opens it
    with pytest.raises(ArtifactError, match="gone.onnx does not exist"):
        measure_in_subprocess(plan, 1, options)


def test_run_bench_litert_and_onnx(models, onnx_model):
    progress = []
    doc = run_bench(
        [models["fp32"], models["int8"], onnx_model],
        BenchOptions(threads=(1, 2), warmup=2, runs=15, batch=3),
        progress=lambda *args: progress.append(args),
    )
    assert doc["schema_version"] == 1 and doc["kind"] == BENCH_KIND and doc["edgetl_version"]
    assert doc["settings"]["runs"] == 15 and doc["settings"]["batch"] == 3 and doc["machine"]["cores"] >= 1
    json.dumps(doc)
    fp32, int8, onnx = doc["artifacts"]
    assert [e["label"] for e in doc["artifacts"]] == ["tiny_fp32.tflite", "tiny_int8.tflite", "tiny.onnx"]
    for entry in (fp32, int8):
        assert entry["runtime"] == "litert" and entry["provider"] == "CPU, XNNPACK delegate"
        assert entry["runtime_version"][0].isdigit() and entry["batch"] == 3
        assert entry["inputs"][0]["declared_shape"] == ["?", 16, 16, 3] and entry["inputs"][0]["shape"] == [3, 16, 16, 3]
        assert all(r["op_profile"] == LITERT_OP_PROFILE_NOTE for r in entry["results"])
    assert int8["inputs"][0]["dtype"] == "int8" and fp32["size_bytes"] == models["fp32"].stat().st_size
    assert onnx["runtime"] == "onnxruntime" and onnx["provider"] == "CPUExecutionProvider"
    assert onnx["inputs"][0]["shape"] == [3, 3, 32, 32]
    assert {o["op"] for o in onnx["results"][0]["op_profile"]} >= {"Conv"}
    for entry in doc["artifacts"]:
        assert [r["threads"] for r in entry["results"]] == [1, 2]
        for r in entry["results"]:
            s = r["stats"]
            assert len(r["samples_ms"]) == s["runs"] == 15 and s["warmup"] == 2
            assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
            assert s["throughput_ips"] == pytest.approx(3 * 1000 / s["p50_ms"])
            assert r["cold_start_ms"] > 0 and 20 < r["peak_rss_mib"] < 2000
    tasks = {p[0] for p in progress}
    assert len(tasks) == 6 and "tiny.onnx (ONNX Runtime, 2 threads)" in tasks
    assert all(p[1] == p[2] for p in progress if p[3] == "done")




def test_bench_and_compare_cli_never_import_tensorflow(models, onnx_model, tmp_path):
    """The CLI process and every benchmark worker run with TensorFlow made unimportable."""
    site = blocker_site(tmp_path / "site", log_env="EDGETL_TEST_BLOCKER_LOG")  # sitecustomize: reaches the worker processes too
    code = """
    import sys
    from edgetl.cli.app import main

    def run(*args):
        try:
            main(list(args))
        except SystemExit as exc:
            assert exc.code in (0, None), f"{args[0]} exited with {exc.code}"

    out = sys.argv[1]
    run("bench", sys.argv[2], sys.argv[3], "--runs", "5", "--warmup", "1", "--threads", "1,2", "--out", out + "/a")
    run("bench", sys.argv[3], "--runs", "5", "--warmup", "1", "--out", out + "/b")
    run("compare", out + "/a/bench.json", out + "/b/bench.json")
    import importlib.util
    try:
        import tensorflow  # noqa: F401
        raise AssertionError("the import blocker is not active")
    except ImportError:
        pass
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx"})
    assert not heavy, heavy
    print("NO-TENSORFLOW-OK")
    """
    blocker_log = tmp_path / "blocked_pids.txt"
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)]), "COLUMNS": "200",
        "EDGETL_TEST_BLOCKER_LOG": str(blocker_log),
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), str(models["int8"]), str(onnx_model)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "NO-TENSORFLOW-OK" in result.stdout
    doc = json.loads((tmp_path / "a" / "bench.json").read_text())
    assert [e["runtime"] for e in doc["artifacts"]] == ["litert", "onnxruntime"]
    assert "tiny.onnx" in result.stdout and "B/A" in result.stdout
    # the CLI process, its 2 + 1 isolated load checks (plus multiprocessing's resource tracker) and its
    # 2 x 2 + 1 benchmark workers all ran with the blocker installed
    assert len(set(blocker_log.read_text().split())) >= 1 + 3 + 5
