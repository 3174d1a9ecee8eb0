"""Slow: on emulated arm64 (qemu-user), edgetl's stand-alone runner and the installed package give the x86 outputs.

The package part installs edgetl's wheel and its TensorFlow-free dependencies for aarch64 (pip
``--target --platform``) and runs ``python -m edgetl inspect`` and ``predict`` there.

Runs ``benchmarks/arm64_qemu.py`` as a user would. Its first run makes the arm64 Debian root
(debootstrap from a Debian mirror, about 30 s here) and fetches PyPI's aarch64 wheels, cached in
``~/.cache/edgetl/arm64`` (``EDGETL_ARM64_CACHE``) for later runs; about 2-3 minutes in all here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_runner_under_emulated_arm64_matches_x86(tmp_path):
    if os.geteuid() != 0 and not (shutil.which("qemu-aarch64-static") and shutil.which("debootstrap")):
        pytest.skip("needs qemu-user-static and debootstrap (apt-get install -y qemu-user-static debootstrap), or root to install them")
    out = tmp_path / "arm64"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "arm64_qemu.py"), "--out", str(out), "--runs", "3"],
        capture_output=True, text=True, timeout=1800, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads((out / "arm64_qemu.json").read_text())
    assert doc["guest"]["machine"] == "aarch64" and doc["host"]["machine"] == "x86_64"
    assert doc["guest_versions"] == {"onnxruntime": "1.24.1", "litert": "1.4.0"}
    names = {Path(a["artifact"]).name: a for a in doc["artifacts"]}
    assert set(names) == {"mnv2-int8.tflite", "mnv2-int8.onnx", "mnv2-fp32.tflite"}
    (int8_out,) = names["mnv2-int8.tflite"]["outputs"]
    assert int8_out["dtype"] == "int8" and int8_out["rule"] == "exact" and int8_out["max_abs_diff"] == 0
    for item in doc["artifacts"]:
        assert item["equal"] and item["informative"], item
    package = doc["package"]
    assert package["install"]["wheel"].startswith("edgetl-") and package["install"]["distributions"] > 5
    assert {Path(c["artifact"]).name for c in package["checks"]} == set(names)
    for check in package["checks"]:
        assert check["inspect"] == "ok" and check["predictions"] == 2 and check["same_labels"] and check["equal"], check
    assert doc["all_equal"]
    report = (out / "report.md").read_text()
    assert "NOT latency figures" in report and report.count("not a latency") >= 1
    assert "## The real package on emulated arm64" in report and "no TensorFlow" in report
