"""The public Python API: ``edgetl.api.<stage>`` resolves lazily, and each CLI command calls exactly it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError

STAGES = ("train", "qat", "export", "build", "evaluate", "bench", "package", "select")


def test_import_edgetl_is_light_and_the_api_resolves_lazily():
    code = (
        "import sys, edgetl\n"
        "assert 'edgetl.pipeline.api' not in sys.modules, 'import edgetl imported the API'\n"
        f"stages = {STAGES!r}\n"
        "import edgetl.pipeline.api as api\n"
        "assert edgetl.api is api\n"
        "assert all(callable(getattr(edgetl.api, s)) and getattr(edgetl.api, s).__module__ == 'edgetl.pipeline.api' for s in stages)\n"
        "assert edgetl.build is api.build and edgetl.train is api.train and edgetl.qat is api.qat and edgetl.evaluate is api.evaluate\n"
        "import edgetl.bench.harness, edgetl.package.stage\n"
        "assert edgetl.api.bench is api.bench and edgetl.api.package is api.package  # subpackages imported: still the functions\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'tf2onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def stubbed_api(monkeypatch):
    """Every public stage replaced by a stub that fails with its own name, so a command shows which one it called."""
    import edgetl.pipeline.api as api

    def stub(name):
        def called(*args, **kwargs):
            raise ConfigError(f"stub {name} called")

        return called

    for name in STAGES:
        monkeypatch.setattr(api, name, stub(name))


def float_run(folder):
    folder.mkdir()
    marker = {"kind": "keras-float", "model_file": "model.keras", "backbone": "mobilenet_v2", "class_names": ["a", "b"],
              "preprocessing": PreprocessContract(input_size=96).to_dict(), "config": {}}
    (folder / "edgetl.json").write_text(json.dumps(marker))
    return folder


def test_each_command_calls_its_public_api_function(stubbed_api, tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"")
    run = float_run(tmp_path / "run")
    commands = {
        "train": ["train", "--data", tmp_path, "--out", tmp_path / "t"],
        "qat": ["qat", "--model", run, "--data", tmp_path],
        "export": ["export", "--model", run, "--data", tmp_path],
        "build": ["build", "--data", tmp_path, "--weights", "none"],
        "evaluate": ["eval", tmp_path / "m.tflite", "--data", tmp_path],
        "bench": ["bench", tmp_path / "m.tflite", "--out", tmp_path / "b"],
        "package": ["package", tmp_path / "m.tflite", "--for", "python"],
    }
    runner = CliRunner()
    for stage, args in commands.items():
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2 and f"stub {stage} called" in result.stderr, (stage, result.output, result.stderr)
