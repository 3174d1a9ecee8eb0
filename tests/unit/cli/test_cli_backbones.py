"""``edgetl backbones``: instant (stored figures, no TensorFlow), readable at 80 columns, figures for your head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import assert_one_line_error, import_blocker, run_cli

REPO = Path(__file__).resolve().parents[3]
_BLOCKED_CLI = import_blocker(report_attempts=True) + "from edgetl.cli import main\nmain(sys.argv[1:])\n"


def _run_without_tf(*args, columns: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", _BLOCKED_CLI, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False)


def test_listing_is_instant_without_tensorflow_and_fits_80_columns():
    from edgetl.ml.backbones.spec import BACKBONES

    start = time.perf_counter()
    result = _run_without_tf("backbones", columns=80)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "BLOCKED IMPORTS" not in result.stderr  # not even an attempt to import TensorFlow
    assert elapsed < 20, elapsed  # was ~50 s (every backbone built); a few seconds is Python and rich starting
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "…" not in result.stdout and "..." not in result.stdout
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in BACKBONES.names()}
    assert sorted(rows) == BACKBONES.names()  # every name in full, one row each
    # MobileNetV2 at its defaults, every value whole: 3.54 M parameters, 301 M MACs (Sandler et al. 2018: 300 M).
    assert rows["mobilenet_v2"].split()[1:] == ["224", "(≥32)", "0.35–1.4", "3.54", "M", "301", "M", "3.76", "MiB", "96–224"]


def test_classes_and_alpha_change_the_figures():
    rows = {r["name"]: r for r in json.loads(run_cli("backbones", "--json").stdout)}
    small = {r["name"]: r for r in json.loads(run_cli("backbones", "--json", "--classes", "5", "--alpha", "0.35").stdout)}
    assert list(small) == ["mobilenet_v2"]  # the only backbone with alpha 0.35
    mnv2 = small["mobilenet_v2"]
    assert (mnv2["alpha"], mnv2["classes"], mnv2["input_size"]) == (0.35, 5, 224)
    assert mnv2["params"] == 410_208 + 1281 * 5  # Keras' headless MobileNetV2 0.35 plus a 5-way dense head on 1280 features
    assert mnv2["params"] < rows["mobilenet_v2"]["params"] and mnv2["int8_bytes"] < rows["mobilenet_v2"]["int8_bytes"]
    table = run_cli("backbones", "--classes", "5", "--alpha", "0.35")
    assert table.exit_code == 0 and "5-class head" in table.stdout and "Without alpha 0.35: efficientnet_b0" in table.stdout


def test_bad_options_are_one_line_errors():
    assert_one_line_error(run_cli("backbones", "--classes", "0"), "--classes 0")
    assert_one_line_error(run_cli("backbones", "--alpha", "0.2"), "no backbone has alpha 0.2")
    assert_one_line_error(run_cli("backbones", "--input-size", "16"), "input size 16", "at least 32")
