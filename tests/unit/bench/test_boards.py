"""Boards (edgetl.bench.boards): outputs made on a board give exactly what ``edgetl eval`` computes here.

Real models (an int8 ``.tflite`` from TensorFlow's converter, a float ``.onnx``, both with their
labels and preprocessing embedded), the real runner in fresh processes, a real sshd on loopback
(the fixture of test_bench_remote: skipped without sshd unless EDGETL_REQUIRE_SSHD=1), and the
emulated arm64 Python when its cache is prepared (skipped otherwise: no slow setup here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetl.bench import board_runner
from edgetl.bench.boards import ACCEPTED_FORMS, EmulatedArm64Board, bench_on, open_board, parse_boards
from edgetl.bench.options import BenchOptions
from edgetl.core.errors import ConfigError, DataError
from edgetl.device.evaluate import evaluate_predictor, load_predictor
from tests.helpers import assert_one_line_error, build_onnx_model, make_inputs, make_seed_models
from tests.unit.bench.test_bench_remote import run as run_cli  # CliRunner with COLUMNS=200: errors stay one line
from tests.unit.bench.test_bench_remote import sshd  # noqa: F401 - the real sshd fixture, shared

N_IMAGES = 70  # more than one board batch (64) and not a multiple of it: the padded last chunk is exercised


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    root = tmp_path_factory.mktemp("boards")
    models, _ = make_seed_models(root)
    return {**models, **make_inputs(root)}


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, (N_IMAGES, 8, 8, 3), dtype=np.uint8)


def _local_eval_probs(path: Path, pixels: np.ndarray) -> np.ndarray:
    """What ``edgetl eval`` computes here for these images (load_predictor, in batches of 64)."""
    predict, info, _ = load_predictor(path)
    return evaluate_predictor(predict, pixels, np.zeros(len(pixels), np.int64), info.class_names)[1]


def _assert_same_outputs(kind: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape == (N_IMAGES, 2) and got.dtype == np.float32
    assert len(np.unique(want[:, 0])) > 3, "the outputs are near constant: the comparison would say little"
    if kind == "tflite":  # int8 output, dequantized the same way: exactly equal
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- parse_boards
def test_parse_boards_accepts_the_forms_and_names_them_on_error(tmp_path):
    key = tmp_path / "key"
    key.write_text("not read here")
    specs = parse_boards(["local", "ssh://pi@127.0.0.1:2222,arm64-emulated"], identity=key)
    assert [(s.kind, s.label) for s in specs] == [("local", "local"), ("ssh", "ssh://pi@127.0.0.1:2222"), ("arm64-emulated", "arm64-emulated")]
    assert specs[1].target.port == 2222 and specs[1].target.identity == key
    assert [s.label for s in parse_boards([])] == ["local"]
    for bad in (["raspberrypi"], ["local", "pi@host"], ["http://pi@host"]):
        with pytest.raises(ConfigError) as err:
            parse_boards(bad)
        assert "\n" not in str(err.value)
        assert ACCEPTED_FORMS in str(err.value) or "ssh://user@host[:port]" in str(err.value)
    with pytest.raises(ConfigError, match="twice"):
        parse_boards(["local", "local"])
    with pytest.raises(ConfigError, match="need an ssh://"):
        parse_boards(["local"], insecure=True)


# ----------------------------------------------------------------------------- the runner's predict mode
def test_runner_predicts_stand_alone_on_a_fixed_batch_model(tmp_path):
    """A model with a fixed batch of 1: one invoke per sample; the raw outputs are ORTModel.predict's."""
    from edgetl.runtime.onnxruntime import ORTModel

    model = build_onnx_model(tmp_path / "fixed.onnx", batch=1)
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = "import runpy, sys; sys.modules['edgetl'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code, board_runner.__file__, str(model), "--predict", "x.npy", "y.npy", "--batch-size", "8"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["ok"] and outcome["result"]["batch"] == 1 and outcome["result"]["invokes"] == 3
    np.testing.assert_allclose(np.load(tmp_path / "y.npy", allow_pickle=False), ORTModel(model).predict(x), rtol=0, atol=1e-6)

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # never unpickled
    outcome = board_runner.predict({"path": str(model), "inputs_file": str(tmp_path / "objects.npy"), "outputs_file": str(tmp_path / "z.npy")})
    assert outcome["ok"] is False and outcome["error"] == "DataError" and "objects.npy" in outcome["message"]
    np.save(tmp_path / "ints.npy", np.zeros((2, 3, 32, 32), np.int8))
    outcome = board_runner.predict({"path": str(model), "inputs_file": str(tmp_path / "ints.npy"), "outputs_file": str(tmp_path / "z.npy")})
    assert outcome["error"] == "DataError" and "needs float32 (N, 3, 32, 32)" in outcome["message"]


# ----------------------------------------------------------------------------- the local board
def test_local_board_predict_artifact_is_edgetl_eval(seed, pixels):
    (spec,) = parse_boards(["local"])
    with open_board(spec) as board:
        assert board.label == "local" and board.emulated is False
        for kind in ("tflite", "onnx"):
            _assert_same_outputs(kind, board.predict_artifact(seed[kind], pixels), _local_eval_probs(seed[kind], pixels))
        assert board.predict_artifact(seed["onnx"], pixels[:0]).shape == (0, 2)
        with pytest.raises(DataError, match=r"takes uint8 \(N, 8, 8, 3\)"):
            board.predict_artifact(seed["tflite"], pixels[:, :4])


# ----------------------------------------------------------------------------- over SSH
def _ssh_spec(sshd):  # noqa: F811
    (spec,) = parse_boards([f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"], identity=sshd["key"],
                           known_hosts=sshd["known_hosts"], python=sys.executable)
    return spec


def test_ssh_board_predict_artifact_and_bench_on(sshd, seed, pixels):  # noqa: F811
    spec = _ssh_spec(sshd)
    with open_board(spec) as board:
        assert board.label == spec.label and board.emulated is False
        for kind in ("tflite", "onnx"):
            _assert_same_outputs(kind, board.predict_artifact(seed[kind], pixels), _local_eval_probs(seed[kind], pixels))
        doc = bench_on(board, [seed["onnx"]], BenchOptions(threads=(1,), warmup=1, runs=3, profile_runs=0))
    assert doc["board"] == {"label": spec.label, "emulated": False} and doc["remote"]["url"] == spec.label
    assert doc["artifacts"][0]["results"][0]["stats"]["runs"] == 3


def test_eval_remote_gives_the_local_figures(sshd, seed):  # noqa: F811
    remote = ["--remote", _ssh_spec(sshd).label, "--identity", sshd["key"], "--known-hosts", sshd["known_hosts"],
              "--remote-python", sys.executable]
    for kind in ("tflite", "onnx"):
        local = run_cli("eval", seed[kind], "--data", seed["data"], "--json")
        assert local.exit_code == 0, local.output
        on_board = run_cli("eval", seed[kind], "--data", seed["data"], "--json", *remote)
        assert on_board.exit_code == 0, on_board.output
        want, got = json.loads(local.stdout), json.loads(on_board.stdout)
        assert got.pop("board") == _ssh_spec(sshd).label and "board" not in want
        assert got == want  # top-1, top-5, per class, confusion


def test_eval_remote_options_need_remote_and_a_good_url(seed):
    assert_one_line_error(run_cli("eval", seed["onnx"], "--data", seed["data"], "--identity", "k"), "need --remote")
    assert_one_line_error(run_cli("eval", seed["onnx"], "--data", seed["data"], "--remote", "pi@host"), "local, ssh://user@host[:port]")


# ----------------------------------------------------------------------------- emulated arm64
def test_arm64_emulated_board_predicts_as_edgetl_eval(seed, pixels):
    """One emulated Python start (seconds under qemu): the int8 outputs of litert 1.4.0 on arm64 equal this machine's exactly."""
    from edgetl.bench.emulated import cached_guest

    try:
        cached_guest()
    except ConfigError as exc:
        assert "python benchmarks/arm64_qemu.py --setup-only" in str(exc) and "\n" not in str(exc)
        pytest.skip(f"arm64-emulated not prepared: {exc}")
    (spec,) = parse_boards(["arm64-emulated"])
    with open_board(spec) as board:
        assert board.emulated is True and board.label == "arm64-emulated"
        _assert_same_outputs("tflite", board.predict_artifact(seed["tflite"], pixels), _local_eval_probs(seed["tflite"], pixels))
        assert board.machine()["machine"] == "aarch64"  # from the prediction's outcome: the guest's, not this machine's


def test_emulated_board_marks_its_measurements(seed):
    """The emulated board's measure() and notes(), its guest swapped for this machine's Python (so this stays fast):
    every figure says it is emulated."""
    board = EmulatedArm64Board(([sys.executable], dict(os.environ)))
    doc = bench_on(board, [seed["onnx"]], BenchOptions(threads=(1,), warmup=0, runs=2, profile_runs=0))
    assert doc["board"] == {"label": "arm64-emulated", "emulated": True}
    assert doc["emulated"]["timings"].startswith("emulated timings are not latency figures")
    assert "emulated arm64" in doc["method"]["isolation"]
    (result,) = doc["artifacts"][0]["results"]
    assert result["emulated"] is True and result["stats"]["runs"] == 2
    from edgetl.bench.report import render_html, render_markdown

    for text in (render_markdown(doc), render_html(doc)):  # both reports say it above the numbers
        assert "emulated timings are not latency figures" in text and text.index("emulated timings") < text.index("Latency")


def test_arm64_emulated_not_prepared_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETL_ARM64_CACHE", str(tmp_path / "empty"))
    (spec,) = parse_boards(["arm64-emulated"])
    with pytest.raises(ConfigError) as err, open_board(spec):
        pass
    assert "\n" not in str(err.value) and "python benchmarks/arm64_qemu.py --setup-only" in str(err.value)
