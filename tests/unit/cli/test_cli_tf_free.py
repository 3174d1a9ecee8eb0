"""The CLI without the training stack: what a device install (``pip install edgetl``) gets.

Each command runs in a subprocess whose imports of tensorflow, tf_keras, tfmot and tf2onnx fail as
if they were not installed (a meta-path finder installed before edgetl is imported). The finder
also records every attempt, so a device command that merely tries to import TensorFlow fails here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import import_blocker

#: Installs the blocker (reporting any attempt), then runs the CLI with the remaining arguments.
_BLOCKED_CLI = import_blocker(report_attempts=True) + "from edgetl.cli import main\nmain(sys.argv[1:])\n"


def run_without_tf(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED_CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [["train"], ["qat", "--model", "run"], ["export", "--model", "run"], ["build"], ["demo"], ["select"]])
def test_training_commands_name_the_full_install(command, tmp_path):
    result = run_without_tf(*command, "--out", tmp_path / "out")
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("BLOCKED IMPORTS")]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and 'pip install "edgetl[train]"' in lines[0] and lines[0].startswith("error:"), result.stderr
    assert f"edgetl {command[0]} needs the training stack" in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_device_commands_work_without_tensorflow(int8_export, shapes_dir, tmp_path):
    artifact = int8_export[0]
    inspected = run_without_tf("inspect", artifact)
    assert inspected.returncode == 0 and "BLOCKED IMPORTS" not in inspected.stderr, inspected.stdout + inspected.stderr
    assert "XNNPACK" in inspected.stdout or "ops" in inspected.stdout, inspected.stdout

    evaluated = run_without_tf("eval", artifact.parent, "--data", shapes_dir, "--json")
    assert evaluated.returncode == 0 and "BLOCKED IMPORTS" not in evaluated.stderr, evaluated.stdout + evaluated.stderr
    assert '"top1"' in evaluated.stdout and artifact.name in evaluated.stdout, evaluated.stdout

    image = next(p for p in sorted(shapes_dir.rglob("*.png")))
    predicted = run_without_tf("predict", artifact, image, "--json")
    assert predicted.returncode == 0 and "BLOCKED IMPORTS" not in predicted.stderr, predicted.stdout + predicted.stderr
    assert image.name in predicted.stdout, predicted.stdout

    packaged = run_without_tf("package", artifact, "--for", "python", "--out", tmp_path / "py")
    assert packaged.returncode == 0 and "BLOCKED IMPORTS" not in packaged.stderr, packaged.stdout + packaged.stderr
    assert (tmp_path / "py" / "predict.py").is_file()
