"""TensorFlow's and LiteRT's native (C++) log lines stay off the terminal unless ``-v`` asks for them.

The commands run as real processes (``python -m edgetl``), so what C++ writes to fd 2 is really on
stderr. What edgetl itself writes to stderr (its definition of "its own lines"):

- log records from rich's log handler: a ``[time]`` column (or its blank continuation) then the
  level, ``DEBUG``/``INFO``/``WARNING``/``ERROR``, then the message; long messages continue on
  lines indented past those columns;
- ``error: ...`` lines (:mod:`edgetl.cli.errors`);
- the progress display's rows, each starting with a stage name (a word).

Native lines have other shapes: glog/absl's ``I0000 00:00:...`` prefix, ``WARNING: All log messages
before absl::InitializeLog()``, LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate``, the
converter's ``fully_quantize: 0, inference_type: 6 ...``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

#: The shapes of TensorFlow's, absl's, LiteRT's and the converter's own lines.
NATIVE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+|^(INFO|WARNING|ERROR|FATAL): |absl::InitializeLog|cuInit|cudart_stub|fully_quantize:|"
    r"XNNPACK delegate|oneDNN custom operations|TF_ENABLE_ONEDNN_OPTS|This TensorFlow binary is optimized"
)
#: edgetl's own stderr lines (see the module docstring).
LOG_RECORD = re.compile(r"^(\[[^\]]+\]|\s+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) {2,}\S")
CONTINUATION = re.compile(r"^ {20,}\S")
ERROR_LINE = re.compile(r"^error: ")
PROGRESS_ROW = re.compile(r"^[A-Za-z]")


def edgetl(*args, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: edgetl must not rely on the variable
    return subprocess.run(
        [sys.executable, "-m", "edgetl", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
        cwd=cwd or REPO, stdin=subprocess.DEVNULL, check=False,
    )


def foreign_lines(stderr: str) -> list[str]:
    """stderr lines that are not edgetl's own (a native line that is not inside an edgetl log record)."""
    bad = []
    for line in stderr.splitlines():
        if not line.strip() or LOG_RECORD.match(line) or ERROR_LINE.match(line):
            continue
        if NATIVE.search(line) or not (CONTINUATION.match(line) or PROGRESS_ROW.match(line)):
            bad.append(line)
    return bad


def native_text(stderr: str) -> list[str]:
    """Lines carrying a native library's text anywhere (by default not even inside a log record)."""
    return [line for line in stderr.splitlines() if NATIVE.search(line)]


def test_the_line_shapes_tell_native_from_edgetl():
    """The classifier the tests below rely on, on lines seen on this machine before the fix."""
    native = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796013613.023487   23532 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1796013619.070644   23532 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    ]
    ours = [
        "[11/30/26 04:40:20] WARNING  training from scratch usually needs 10+ epochs",
        "                    INFO     wrote model.tflite",
        "                             before validation loss moves: with patience 3",
        "error: TFLite conversion to tflite-int8 failed: boom",
        "phase 1 (head)           loss=1.387, accuracy=0.183",
    ]
    assert foreign_lines("\n".join(native)) == native
    assert foreign_lines("\n".join(ours)) == []


def test_backbones_at_another_size_imports_tensorflow_quietly():
    """``backbones --input-size`` imports TensorFlow and builds a model: nothing native on stderr by default."""
    quiet = edgetl("backbones", "--alpha", "0.35", "--input-size", "32", timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "mobilenet_v2" in quiet.stdout
    assert foreign_lines(quiet.stderr) == [] and native_text(quiet.stderr) == [], quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr


@pytest.mark.parametrize(("verbose", "shown"), [(0, False), (1, True), (2, True)])
def test_v_shows_the_captured_native_lines(verbose, shown, monkeypatch):
    """``-v`` turns on the DEBUG records of ``edgetl.native`` (the slow build test sees them on stderr)."""
    from edgetl.cli import console
    from edgetl.cli.console import setup_logging
    from edgetl.core.native_output import NATIVE_LOGGER

    monkeypatch.setattr(console, "_console_on_own_stderr", lambda: None)  # keep the console on sys.stderr for the other tests
    try:
        setup_logging(verbose)
        assert logging.getLogger(NATIVE_LOGGER).isEnabledFor(logging.DEBUG) is shown
        assert logging.getLogger("edgetl").isEnabledFor(logging.DEBUG) is (verbose >= 2)
    finally:
        setup_logging(0)


TINY_TOML = """
[model]
alpha = 0.35
input_size = 32
weights = "none"

[data]
val_split = 0.25
seed = 1
batch_size = 16

[train]
head_epochs = 1
fine_tune_epochs = 1
augment = false

[qat]
epochs = 1

[export]
representative_samples = 8

[bench]
warmup = 1
runs = 3
"""


@pytest.mark.slow
def test_build_prints_only_edgetls_lines(tmp_path):
    """A real ``edgetl build`` (import, device discovery, converter, LiteRT): stderr holds edgetl's lines only;
    with ``-v`` (the rebuild reuses the stages) TensorFlow's import lines appear as DEBUG records."""
    from edgetl.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", images_per_class=16, image_size=32, seed=0)
    config = tmp_path / "edgetl.toml"
    config.write_text(TINY_TOML)
    args = ["build", "--target", "tflite-int8", "--data", data, "--config", config, "--out", tmp_path / "build"]
    quiet = edgetl(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert foreign_lines(quiet.stderr) == [] and native_text(quiet.stderr) == [], quiet.stderr

    verbose = edgetl(*args, "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert foreign_lines(verbose.stderr) == [], verbose.stderr
    # What TensorFlow wrote at import (absl, cudart) is shown, as edgetl DEBUG records.
    captured = [line for line in verbose.stderr.splitlines() if "TensorFlow import:" in line or "TensorFlow device discovery:" in line]
    assert captured and all(LOG_RECORD.match(line) and " DEBUG " in line for line in captured), verbose.stderr
