"""Hostile or absurd configuration values fail at once, with one line, before anything is written.

Issue 12, findings 4 (a build name that escapes ``--out``) and 7 (unbounded learning rates, input
sizes, epochs, batch sizes and benchmark runs accepted, failing hours later or never).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetl.core.config import validate
from edgetl.core.errors import ConfigError
from edgetl.pipeline.config import resolve_config

#: Runs the real CLI in a fresh interpreter and reports on stdout whether TensorFlow was imported.
_CLI = (
    "import sys\n"
    "from edgetl.cli.app import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TENSORFLOW')\n"
)


def run_cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    return result, time.perf_counter() - start


def assert_fast_one_line_refusal(result: subprocess.CompletedProcess[str], elapsed: float, *needles: str) -> str:
    assert result.returncode not in (0, None), result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "NO_TENSORFLOW" in result.stdout, "the refusal imported TensorFlow: it is not a cheap check"
    assert elapsed < 20, f"refusing a bad value took {elapsed:.1f} s"
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    from PIL import Image

    for name in ("a", "b"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(folder / f"{i}.png")
    return tmp_path / "data"


# ----------------------------------------------------------------------------- finding 4: build names


@pytest.mark.parametrize(
    "name",
    ["../../escaped", "a/b", "/abs", "a\\b", "..", ".", "", "x\x00y", "two\nlines", "esc\x1b[31m", "rtl\u202etxt", "-rf", ".hidden", "n" * 101],
)
def test_build_name_must_be_one_plain_folder_name(name):
    with pytest.raises(ConfigError) as caught:
        validate({"name": name}, "edgetl.toml")
    message = str(caught.value)
    assert "\n" not in message and "name" in message


@pytest.mark.parametrize("name", ["shapes", "my model v2", "cats_and-dogs.2", "n" * 100, "Ünïcødé"])
def test_plain_build_names_are_accepted(name):
    assert validate({"name": name}, "edgetl.toml").name == name


def test_build_name_from_config_cannot_write_outside_out(tmp_path, tiny_data):
    work = tmp_path / "work"
    (work / "deep" / "er").mkdir(parents=True)
    config = work / "edgetl.toml"
    config.write_text('name = "../../escaped"\n[model]\nweights = "none"\n')
    out = work / "deep" / "er" / "out"
    result, elapsed = run_cli("build", "--config", str(config), "--data", str(tiny_data), "--out", str(out), cwd=work)
    line = assert_fast_one_line_refusal(result, elapsed, "name", "../../escaped")
    assert "path separator" in line
    assert not (work / "deep" / "escaped").exists() and not (work / "escaped").exists()
    assert not out.exists(), "the refused build created its output folder"


def test_build_name_flag_is_checked_too(tmp_path, tiny_data):
    result, elapsed = run_cli("build", "--name", "..", "--data", str(tiny_data), "--weights", "none", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert_fast_one_line_refusal(result, elapsed, "name")
    assert not (tmp_path / "out").exists()


def test_build_name_helper_refuses_escaping_names():
    from edgetl.pipeline.build import build_name

    config = validate({"data": {"path": "/tmp/shapes"}}, "test")
    assert build_name(config) == "shapes"
    config.__dict__["name"] = "../x"  # bypass the model's validator: build_name checks on its own
    with pytest.raises(ConfigError, match="path separator"):
        build_name(config)


# ----------------------------------------------------------------------------- finding 7: bounds


@pytest.mark.parametrize(
    ("toml", "key", "received"),
    [
        ("[train]\nhead_lr = inf\n", "train.head_lr", "inf"),
        ("[train]\nhead_lr = nan\n", "train.head_lr", "nan"),
        ("[train]\nhead_lr = 1e30\n", "train.head_lr", "1e+30"),
        ("[train]\nfine_tune_lr = -0.1\n", "train.fine_tune_lr", "-0.1"),
        ("[qat]\nlr = inf\n", "qat.lr", "inf"),
        ("[model]\ninput_size = 100000\n", "model.input_size", "100000"),
        ("[train]\nfine_tune_epochs = 10000000000000\n", "train.fine_tune_epochs", "10000000000000"),
        ("[qat]\nepochs = 10000000000000\n", "qat.epochs", "10000000000000"),
        ("[data]\nbatch_size = 1000000000\n", "data.batch_size", "1000000000"),
        ("[data]\nval_split = 1.0\n", "data.val_split", "1.0"),
        ("[bench]\nruns = 1000000000000\n", "bench.runs", "1000000000000"),
        ("[bench]\nwarmup = 1000000000000\n", "bench.warmup", "1000000000000"),
        ("[export]\nrepresentative_samples = 1000000000000\n", "export.representative_samples", "1000000000000"),
    ],
)
def test_absurd_config_values_fail_fast_with_one_line(tmp_path, tiny_data, toml, key, received):
    config = tmp_path / "edgetl.toml"
    config.write_text(toml)
    result, elapsed = run_cli("build", "--config", str(config), "--data", str(tiny_data), "--out", str(tmp_path / "out"), cwd=tmp_path)
    line = assert_fast_one_line_refusal(result, elapsed, key, received)
    assert "allowed:" in line or "between" in line or "greater" in line, f"no allowed range in: {line}"
    assert not (tmp_path / "out").exists()


def test_validation_names_the_range_and_takes_under_a_second():
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        validate({"train": {"head_lr": float("inf")}}, "edgetl.toml")
    assert time.perf_counter() - start < 1.0
    assert str(caught.value) == "edgetl.toml: train.head_lr: Input should be a finite number (got inf; allowed: 0 < value <= 10.0)"
    with pytest.raises(ConfigError, match=r"model\.input_size: input size must be one side .*\(got 100000; allowed: 16 <= value <= 1,024, or 'WIDTHxHEIGHT'"):
        validate({"model": {"input_size": 100000}}, "edgetl.toml")


def test_input_size_below_the_backbone_minimum_fails_at_resolve_time(tmp_path):
    config = tmp_path / "edgetl.toml"
    config.write_text("[model]\nname = \"mobilenet_v2\"\ninput_size = 16\n")
    with pytest.raises(ConfigError, match="input size 16 is not supported by mobilenet_v2"):
        resolve_config(config)


def test_bench_threads_in_config_are_bounded():
    with pytest.raises(ConfigError, match=r"bench\.threads.*1 to 1024"):
        validate({"bench": {"threads": [1, 100000]}}, "edgetl.toml")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runs", "1000000000000"], "--runs 1000000000000"),
        (["--warmup", "1000000000000"], "--warmup 1000000000000"),
        (["--duration", "100000s"], "duration"),
        (["--threads", "1,100000"], "--threads"),
        (["--threads", "9" * 5000], "--threads"),
    ],
)
def test_bench_refuses_absurd_options_at_once(tmp_path, args, needle):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not read: the options are refused first")
    result, elapsed = run_cli("bench", str(model), *args, "--out", str(tmp_path / "bench"), cwd=tmp_path)
    assert_fast_one_line_refusal(result, elapsed, needle)
    assert not (tmp_path / "bench").exists()


def test_bench_options_bounds_in_the_api():
    from edgetl.bench.options import MAX_RUNS, BenchOptions

    assert BenchOptions(runs=MAX_RUNS).timed_runs == MAX_RUNS
    with pytest.raises(ConfigError, match="pass 1 to 1,000,000"):
        BenchOptions(runs=10**12)
