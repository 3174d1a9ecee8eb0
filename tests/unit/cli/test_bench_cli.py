"""`edgetl bench` and `edgetl compare` through the CLI: outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from tests.helpers import assert_one_line_error, build_onnx_model

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_onnx")
    for folder in ("a", "b"):
        (root / folder).mkdir()
    return {
        "a": build_onnx_model(root / "a" / "model.onnx"),
        "b": build_onnx_model(root / "b" / "model.onnx", filters=16, seed=1),
        "hw": build_onnx_model(root / "hw.onnx", height="H", width="W"),
        "fixed": build_onnx_model(root / "fixed.onnx", batch=1),
    }


@pytest.fixture(scope="module")
def bench_runs(onnx_models, tmp_path_factory):
    """Two real `edgetl bench` runs of the same two models, for compare."""
    out = tmp_path_factory.mktemp("bench_out")
    for name in ("first", "second"):
        result = run("bench", onnx_models["a"], onnx_models["hw"], "--threads", "1,2", "--runs", "40", "--warmup", "3",
                     "--shape", "x=1x3x32x32", "--out", out / name)
        assert result.exit_code == 0, result.output
    return out


def test_help_lists_the_options():
    for command, options in {
        "bench": ("--runtime", "--threads", "--warmup", "--runs", "--duration", "--batch", "--shape", "--out"),
        "compare": ("--threads", "--json"),
    }.items():
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output
        for option in options:
            assert option in result.output


def test_bench_writes_json_and_reports(bench_runs, onnx_models):
    out = bench_runs / "first"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "report.html", "report.md"]
    doc = json.loads((out / "bench.json").read_text())
    assert doc["schema_version"] == 1 and doc["settings"]["threads"] == [1, 2] and doc["settings"]["runs"] == 40
    assert [e["label"] for e in doc["artifacts"]] == ["model.onnx", "hw.onnx"]
    assert doc["artifacts"][0]["path"] == str(onnx_models["a"])
    assert doc["artifacts"][1]["inputs"][0] == {"name": "x", "dtype": "float32", "declared_shape": ["N", 3, "H", "W"], "shape": [1, 3, 32, 32]}
    assert all(len(r["samples_ms"]) == 40 for e in doc["artifacts"] for r in e["results"])
    report = (out / "report.md").read_text()
    assert "| model.onnx | ONNX Runtime" in report and "## Top ops by time" in report and "Speed-up vs model.onnx" in report


def test_bench_prints_a_table_and_where_it_wrote(onnx_models, tmp_path):
    result = run("bench", onnx_models["fixed"], "--runs", "10", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "fixed.onnx" in result.stdout and "p50" in result.stdout and f"wrote {tmp_path / 'o' / 'bench.json'}" in result.stdout


def test_bench_duration_and_batch(onnx_models, tmp_path):
    result = run("bench", onnx_models["a"], "--duration", "300ms", "--batch", "2", "--warmup", "0", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "d" / "bench.json").read_text())
    assert doc["settings"]["runs"] is None and doc["settings"]["duration_s"] == pytest.approx(0.3)
    (entry,) = doc["artifacts"]
    (r,) = entry["results"]
    assert entry["inputs"][0]["shape"] == [2, 3, 32, 32] and entry["batch"] == 2
    assert r["stats"]["runs"] == len(r["samples_ms"]) > 5 and sum(r["samples_ms"]) <= 1000 * 0.6


def test_same_file_name_in_two_folders_gets_distinct_labels(onnx_models, tmp_path):
    result = run("bench", onnx_models["a"], onnx_models["b"], "--runs", "5", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert [e["label"] for e in doc["artifacts"]] == ["a/model.onnx", "b/model.onnx"]


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07\x12\x04junk" * 40)
    return path


def _wrong_suffix(tmp_path: Path) -> Path:
    path = tmp_path / "frozen_graph.pb"
    path.write_bytes(b"\x08\x01")
    return path


def _text_tflite(tmp_path: Path) -> Path:
    path = tmp_path / "notes.tflite"
    path.write_text("not a flatbuffer\n" * 10)
    return path


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        (lambda m, t: [t / "missing.onnx"], ["missing.onnx does not exist"]),
        (lambda m, t: [_wrong_suffix(t)], ["edgetl bench runs .onnx, .tflite files, not .pb"]),
        (lambda m, t: [_corrupt(t)], ["corrupt.onnx is not an ONNX model"]),
        (lambda m, t: [_text_tflite(t)], ["notes.tflite", "not a TFLite model"]),
        (lambda m, t: [m["a"], "--threads", "1,x"], ["--threads '1,x'"]),
        (lambda m, t: [m["a"], "--threads", "0"], ["--threads '0'"]),
        (lambda m, t: [m["a"], "--shape", "x=1xa"], ["--shape 'x=1xa'"]),
        (lambda m, t: [m["a"], "--shape", "x=1x3"], ["--shape x=1x3 has 2 dimensions", "[N, 3, 32, 32]"]),
        (lambda m, t: [m["a"], "--shape", "y=1x3x32x32"], ["--shape names input 'y'"]),
        (lambda m, t: [m["a"], "--shape", "x=1x3x32x32", "--shape", "x=2x3x32x32"], ["--shape twice"]),
        (lambda m, t: [m["a"], "--runs", "5", "--duration", "1s"], ["both --runs and --duration"]),
        (lambda m, t: [m["a"], "--duration", "10q"], ["--duration '10q'"]),
        (lambda m, t: [m["a"], "--runs", "0"], ["--runs 0"]),
        (lambda m, t: [m["hw"]], ["input 'x'", "[N, 3, H, W]", "--shape x=1x3x<H>x<W>"]),
        (lambda m, t: [m["fixed"], "--batch", "4"], ["--batch 4", "fixed batch of 1"]),
        (lambda m, t: [m["a"], "--runtime", "litert"], ["--runtime litert cannot run", "model.onnx"]),
        (lambda m, t: [m["a"], "--runtime", "tvm"], ["unknown runtime 'tvm'", "litert, onnxruntime"]),
        (lambda m, t: [m["a"], _corrupt(t)], ["corrupt.onnx is not an ONNX model"]),
    ],
    ids=["missing", "suffix", "corrupt-onnx", "corrupt-tflite", "threads-x", "threads-0", "shape-syntax", "shape-rank",
         "shape-name", "shape-twice", "runs-and-duration", "duration", "runs-0", "unresolved-dim", "fixed-batch",
         "runtime-mismatch", "runtime-unknown", "second-artifact-bad"],
)
def test_bench_bad_input_is_one_line_and_writes_nothing(onnx_models, tmp_path, make_args, fragments):
    out = tmp_path / "out"
    result = run("bench", *make_args(onnx_models, tmp_path), "--out", out)
    assert_one_line_error(result, *fragments)
    assert not out.exists(), "a failed bench must not leave output behind"


def test_bench_error_leaves_an_earlier_result_alone(onnx_models, tmp_path):
    out = tmp_path / "out"
    assert run("bench", onnx_models["a"], "--runs", "5", "--out", out).exit_code == 0
    before = (out / "bench.json").read_bytes()
    assert_one_line_error(run("bench", onnx_models["hw"], "--out", out), "[N, 3, H, W]")
    assert (out / "bench.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "report.html", "report.md"]  # no temp files left


def test_bench_refuses_an_out_that_is_a_file(onnx_models, tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    assert_one_line_error(run("bench", onnx_models["a"], "--out", out), "results.txt is a file")
    assert out.read_text() == "keep me"


# ----------------------------------------------------------------------------- compare


def test_compare_two_runs(bench_runs):
    result = run("compare", bench_runs / "first" / "bench.json", bench_runs / "second" / "bench.json")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("model.onnx") == 2 and result.stdout.count("hw.onnx") == 2 and "B/A" in result.stdout
    as_json = run("compare", bench_runs / "first" / "bench.json", bench_runs / "second" / "bench.json", "--json", "--threads", "2")
    assert as_json.exit_code == 0, as_json.output
    comparisons = json.loads(as_json.stdout)["comparisons"]
    assert [(c["artifact_a"], c["threads"]) for c in comparisons] == [("model.onnx", 2), ("hw.onnx", 2)]
    for c in comparisons:
        assert c["ci_low"] <= c["ratio"] <= c["ci_high"] and c["runs_a"] == c["runs_b"] == 40
        assert c["verdict"].startswith(("equivalent (within ±3%)", "inconclusive (", "B is ")) and c["equivalence"] == 0.03


def test_compare_finds_a_real_difference(bench_runs, tmp_path):
    """B's samples are A's halved: B is 2x faster, and the interval says so."""
    doc = json.loads((bench_runs / "first" / "bench.json").read_text())
    for entry in doc["artifacts"]:
        for r in entry["results"]:
            r["samples_ms"] = [v / 2 for v in r["samples_ms"]]
    faster = tmp_path / "faster.json"
    faster.write_text(json.dumps(doc))
    result = run("compare", bench_runs / "first" / "bench.json", faster, "--json")
    assert result.exit_code == 0, result.output
    comparisons = json.loads(result.stdout)["comparisons"]
    assert len(comparisons) == 4
    for c in comparisons:
        assert c["ratio"] == pytest.approx(0.5) and c["ci_high"] < 1 and c["verdict"] == "B is 2.00x faster"
    text = run("compare", faster, bench_runs / "first" / "bench.json", "--threads", "1")
    assert text.exit_code == 0 and text.stdout.count("B is 2.00x slower") == 2


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ["does not exist"]),
        ("{not json", ["not an edgetl bench file", "not readable JSON"]),
        (json.dumps({"hello": "world"}), ["not an edgetl bench file"]),
        (json.dumps({"schema_version": 99, "kind": "edgetl.bench.harness", "artifacts": []}), ["schema_version 99", "reads schema_version 1"]),
    ],
    ids=["missing", "not-json", "not-bench", "schema-version"],
)
def test_compare_bad_files(bench_runs, tmp_path, content, fragments):
    other = tmp_path / "other.json"
    if content is not None:
        other.write_text(content)
    result = run("compare", bench_runs / "first" / "bench.json", other)
    assert_one_line_error(result, "other.json", *fragments)


def test_compare_no_common_thread_count(bench_runs):
    result = run("compare", bench_runs / "first" / "bench.json", bench_runs / "second" / "bench.json", "--threads", "8")
    assert_one_line_error(result, "no measurement in common at 8 thread(s)", "thread counts in both: 1, 2")


def test_threads_above_the_cores_are_measured_but_flagged(onnx_models, tmp_path):
    import os

    over = (os.cpu_count() or 1) + 1
    result = run("bench", onnx_models["fixed"], "--threads", f"1,{over}", "--runs", "5", "--warmup", "1", "--out", tmp_path / "over")
    assert result.exit_code == 0, result.output
    assert f"threads {over} exceed the {os.cpu_count()} logical cores" in " ".join(result.stderr.split())
    doc = json.loads((tmp_path / "over" / "bench.json").read_text())
    assert [r["threads"] for r in doc["artifacts"][0]["results"]] == [1, over]
    for name in ("report.md", "report.html"):
        assert f"threads {over} exceed" in (tmp_path / "over" / name).read_text()
    calm = run("bench", onnx_models["fixed"], "--threads", "1", "--runs", "5", "--warmup", "1", "--out", tmp_path / "calm")
    assert calm.exit_code == 0 and "exceed" not in calm.stderr
    assert "Warning" not in (tmp_path / "calm" / "report.md").read_text()
