"""Slow: the TensorFlow-free device install (`pip install edgetl`, no extras) in a fresh venv.

It builds edgetl's wheel, installs it the way README "On a device" says into a new virtual
environment, checks that TensorFlow is not there, and runs eval, bench, compare, predict and
inspect on .tflite and .onnx files this test session built with the full stack. A training command
there must say, in one line, which install it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import TRAINING_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]



def _run(cmd: list[str], *, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("device")
    wheels = root / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO_ROOT)])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("edgetl-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    # The README's device command, with the wheel in place of the name on PyPI.
    installed = _run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], timeout=1800)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env_dir


@pytest.fixture(scope="module")
def artifacts(int8_export, qat_run, shapes_dir, tmp_path_factory) -> dict[str, Path]:
    from edgetl.pipeline.api import export_model

    onnx, _ = export_model(qat_run.out_dir, "onnx-int8", data=shapes_dir, out=tmp_path_factory.mktemp("exports") / "onnx", samples=16)
    return {"tflite": Path(int8_export[0]), "onnx": Path(onnx)}


def _edgetl(env_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _run([str(env_dir / "bin" / "edgetl"), *args], cwd=cwd)


@pytest.mark.slow
def test_device_install_has_no_tensorflow(device_venv):
    python = str(device_venv / "bin" / "python")
    code = "import importlib.util, json, sys; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    found = json.loads(_run([python, "-c", code, *TRAINING_MODULES]).stdout)
    assert not any(found.values()), found
    # importing every device-side module pulls no training package in
    code = (
        "import sys, pkgutil, importlib, edgetl\n"
        "for layer in ('core', 'data', 'runtime', 'device', 'bench', 'package'):\n"
        "    pkg = importlib.import_module(f'edgetl.{layer}')\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))"
    )
    result = _run([python, "-c", code, *TRAINING_MODULES])
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-3000:]


@pytest.mark.slow
def test_device_commands_work_without_tensorflow(device_venv, artifacts, shapes_dir, tmp_path):
    for kind, model in artifacts.items():
        inspect = _edgetl(device_venv, "inspect", str(model))
        assert inspect.returncode == 0, inspect.stdout + inspect.stderr
        assert ("CONV_2D" if kind == "tflite" else "QLinearConv") in inspect.stdout

        evaluated = _edgetl(device_venv, "eval", str(model), "--data", str(shapes_dir))
        assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
        assert "top-1" in evaluated.stdout.lower()

        image = next((shapes_dir / "circle").iterdir())
        predicted = _edgetl(device_venv, "predict", str(model), str(image), "--json")
        assert predicted.returncode == 0, predicted.stdout + predicted.stderr
        (row,) = json.loads(predicted.stdout)["predictions"]
        assert row["top"][0]["label"] in ("circle", "square", "star", "triangle")

    runs = []
    for name in ("a", "b"):  # twice, so that compare has two measurements of the same files
        out = tmp_path / f"bench-{name}"
        bench = _edgetl(device_venv, "bench", *map(str, artifacts.values()), "--runs", "5", "--warmup", "1", "--threads", "1", "--out", str(out))
        assert bench.returncode == 0, bench.stdout + bench.stderr
        runs.append(out / "bench.json")
    doc = json.loads(runs[0].read_text())
    assert sorted(a["format"] for a in doc["artifacts"]) == ["onnx", "tflite"], doc.keys()
    compared = _edgetl(device_venv, "compare", str(runs[0]), str(runs[1]), "--json")
    assert compared.returncode == 0, compared.stdout + compared.stderr


@pytest.mark.slow
def test_training_command_names_the_full_install(device_venv, shapes_dir, tmp_path):
    for args in (["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run")], ["build", "--data", str(shapes_dir)]):
        result = _edgetl(device_venv, *args, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and 'pip install "edgetl[train]"' in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
