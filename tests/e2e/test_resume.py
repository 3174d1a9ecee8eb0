"""Never lose work (issue 16): real signals to real ``edgetl build`` processes, then the same command again.

One build folder, three interruptions: SIGINT in phase 2 of training, SIGTERM in QAT, SIGTERM in
export. Each interrupted process prints one line, exits 130/143 and leaves no folder that looks
finished; each rerun of the same command resumes (training from its last epoch with its optimizer
state, QAT likewise) or reuses the finished stages, and says so in ``edgetl.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetl.data.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow

# A test started in the background by a script (CI runs the slow suite beside the default one) inherits
# SIGINT ignored, and Python then never raises KeyboardInterrupt: the build restores Ctrl-C's default first.
_CLI = "import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nfrom edgetl.cli import main\nmain(sys.argv[1:])\n"


#: MobileNetV2 alpha 0.35 at 32 px from scratch, as the tests' tiny chain (tests/helpers.py TINY_SETTINGS), shorter.
_SETTINGS = """
[model]
name = "mobilenet_v2"
alpha = 0.35
input_size = 32
weights = "none"
[data]
val_split = 0.25
batch_size = 16
[train]
head_epochs = 2
head_lr = 3e-3
fine_tune_epochs = 6
patience = 6
augment = false
schedule = "cosine"
[qat]
epochs = 3
lr = 1e-4
[export]
representative_samples = 16
[bench]
warmup = 1
runs = 3
threads = [1]
"""


def _command(data: Path, out: Path) -> list[str]:
    config = out.parent / "settings.toml"
    config.write_text(_SETTINGS)
    return [sys.executable, "-c", _CLI, "build", "--config", str(config), "--data", str(data), "--out", str(out), "--name", "shapes", "--target", "tflite-int8"]


def _start(data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(_command(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _epoch(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _interrupt_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 600) -> tuple[int, str]:
    """Send ``sig`` once ``ready()`` is true; the exit code and stderr."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the build ended before the signal: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the build never reached the point to interrupt"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _looks_finished(root: Path) -> list[str]:
    """Folders of the build that hold an edgetl.json (a finished stage or target)."""
    return sorted(str(p.parent.relative_to(root)) for p in root.glob("*/edgetl.json") if not p.parent.name.startswith("."))


def test_interrupted_builds_resume_where_they_stopped(tmp_path):
    data = tmp_path / "shapes"
    make_shapes_dataset(data, images_per_class=24, image_size=32, seed=0)
    out = tmp_path / "builds"
    root = out / "shapes"
    cache = root / ".edgetl-cache"

    # 1. SIGINT (Ctrl-C) in phase 2, after its second epoch was checkpointed.
    proc = _start(data, out)
    code, err = _interrupt_when(proc, lambda: any(_epoch(p) >= 2 for p in cache.glob("train-*.epochs/phase2.epoch.json")), signal.SIGINT)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert _looks_finished(root) == [], "an interrupted build left a folder that looks finished"
    stopped_at = max(_epoch(p) for p in cache.glob("train-*.epochs/phase2.epoch.json"))

    # 2. Again: training resumes phase 2 from its checkpoint; SIGTERM in QAT after an epoch.
    proc = _start(data, out)
    code, err = _interrupt_when(proc, lambda: any(_epoch(p) >= 1 for p in cache.glob("qat-*.epochs/qat.epoch.json")), signal.SIGTERM)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" in err
    assert _looks_finished(root) == []
    finished_train = [p for p in cache.glob("train-*") if p.is_dir() and not p.name.endswith(".epochs")]
    assert len(finished_train) == 1, "the finished training stage was not kept in the stage cache"
    float_meta = json.loads((finished_train[0] / "edgetl.json").read_text())
    assert "phase1: finished" in float_meta["resumed"]
    assert f"phase2: from epoch {stopped_at + 1}" in float_meta["resumed"]
    history = json.loads((finished_train[0] / "history.json").read_text())
    assert history["phase"].count("fine_tune") == 6 and history["phase"].count("head") == 2, "epochs lost or repeated across the resume"
    assert not list(cache.glob("train-*.epochs")), "the finished stage's checkpoints were not removed"

    # 3. Again: training is reused, QAT resumes; SIGTERM once export has begun.
    proc = _start(data, out)
    code, err = _interrupt_when(proc, lambda: any(root.glob(".tflite-int8.tmp-*/*")), signal.SIGTERM)
    assert code == 143, err[-2000:]
    assert _looks_finished(root) == []
    assert [p for p in cache.glob("qat-*") if p.is_dir() and not p.name.endswith(".epochs")], "the finished QAT stage was not kept"

    # 4. Again, to the end: both stages come from the cache; the result is a working int8 model.
    proc = _start(data, out)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    meta = json.loads((root / "tflite-int8" / "edgetl.json").read_text())
    stages = meta["cache"]["stages"]
    assert stages["train"]["reused"].startswith(".edgetl-cache/train-")
    assert stages["qat"]["reused"].startswith(".edgetl-cache/qat-")
    assert meta["cache"]["key"] == meta["fingerprint"]
    assert (root / "float" / "edgetl.json").is_file() and (root / "qat" / "edgetl.json").is_file()
    # the reused float model is the one the resumed training wrote (its own validation top-1, same images)
    assert meta["accuracy"]["float_top1"] == pytest.approx(json.loads((root / "float" / "edgetl.json").read_text())["val_accuracy"])
    assert meta["stage_fingerprints"]["float_model_sha256"] == _sha256(root / "float" / "model.keras")

    # --no-cache reuses nothing.
    proc = subprocess.run([*_command(data, out), "--no-cache"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((root / "tflite-int8" / "edgetl.json").read_text())
    assert meta["cache"]["enabled"] is False and meta["cache"]["stages"]["train"]["reused"] is None
