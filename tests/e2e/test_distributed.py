"""Training through tf.distribute (issue 16), with real TensorFlow and real ``edgetl`` processes.

- MirroredStrategy over 2 logical CPU devices (``EDGETL_CPU_REPLICAS=2 edgetl build --strategy mirrored
  --mixed-precision``): training in mixed precision, QAT (tfmot under MirroredStrategy, in float32) and
  the int8 export. (One run for both keeps CI inside its hour; tests/unit/ml/test_distribute.py checks
  mixed precision and XLA on their own.)
- MultiWorkerMirroredStrategy: 2 ``edgetl train --strategy multiworker`` processes on 127.0.0.1 ports
  (``TF_CONFIG``), the same command; only the chief writes. (``train``, not ``build``: a multi-worker build,
  QAT under MultiWorkerMirroredStrategy included, passed here, but its export took minutes and CI has an hour.)

Each must reach the single-device (``edgetl train``) validation top-1 on the same data within
:data:`TOLERANCE` and record its settings and the scaling rule in ``edgetl.json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from edgetl.data.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow

_CLI = "import sys\nfrom edgetl.cli import main\nmain(sys.argv[1:])\n"
#: Validation top-1 (32 images, 4 classes) may differ from the single-device run's by at most this.
TOLERANCE = 0.15
#: Transfer learning from the ImageNet EfficientNet-Lite0 (the offline checkpoint of the `pretrained` extra) at 64 px:
#: a model that learns in a few epochs, so the runs' accuracies mean something.
_SETTINGS = """
[model]
name = "efficientnet_lite0"
input_size = 64
weights = "imagenet"
[data]
val_split = 0.25
batch_size = 16
seed = 0
[train]
head_epochs = 4
fine_tune_epochs = 3
patience = 3
augment = false
[qat]
epochs = 1
[export]
representative_samples = 32
compare_ptq = false
companion = false
[bench]
warmup = 1
runs = 3
threads = [1]
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def _train_args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _CLI, "train", "--config", str(config), "--data", str(data), "--out", str(out), *extra]


def _build_args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", _CLI, "build", "--config", str(config), "--data", str(data), "--out", str(out), "--name", "shapes",
        "--target", "tflite-int8", *extra,
    ]


def _check_build(root: Path, single: dict) -> dict:
    """The build's float stage and int8 artifact: accuracy as one device's, QAT int8 close to float."""
    float_meta = _meta(root / "shapes" / "float")
    meta = _meta(root / "shapes" / "tflite-int8")
    assert abs(float_meta["val_accuracy"] - single["val_accuracy"]) <= TOLERANCE, (float_meta["val_accuracy"], single["val_accuracy"])
    assert meta["accuracy"]["artifact_top1"] >= float_meta["val_accuracy"] - TOLERANCE, meta["accuracy"]
    assert meta["training"] == float_meta["training"]
    return float_meta["training"]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _meta(out: Path) -> dict:
    return json.loads((out / "edgetl.json").read_text())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    data = root / "shapes"
    make_shapes_dataset(data, images_per_class=32, image_size=64, seed=0)
    config = root / "settings.toml"
    config.write_text(_SETTINGS)
    single = root / "single"
    proc = subprocess.run(_train_args(config, data, single), capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, data, config, _meta(single)


def test_mirrored_over_two_cpu_devices_in_mixed_precision_matches_one_device(setup):
    root, data, config, single = setup
    out = root / "mirrored"
    proc = subprocess.run(
        _build_args(config, data, out, "--strategy", "mirrored", "--mixed-precision"), capture_output=True, text=True, timeout=1200,
        env=_env(EDGETL_CPU_REPLICAS="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = _check_build(out, single)
    assert training["strategy"] == "mirrored" and training["replicas"] == 2 and training["mixed_precision"] is True
    with zipfile.ZipFile(out / "shapes" / "float" / "model.keras") as archive:
        saved = archive.read("config.json").decode()
    assert "mixed_float16" not in saved and "float32" in saved, "the saved model must be float32 (QAT and export run in float32)"
    assert training["global_batch"] == 32 and training["per_replica_batch"] == 16 and training["lr_scale"] == 2
    assert single["training"]["replicas"] == 1
    assert single["val_accuracy"] > 0.5, single["val_accuracy"]  # 4 classes: chance is 0.25


def test_two_worker_processes_match_one_device_and_only_the_chief_writes(setup):
    root, data, config, single = setup
    out = root / "multiworker"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    scratch_before = set(Path(tempfile.gettempdir()).glob("edgetl-worker-*"))
    procs = [
        subprocess.Popen(
            _train_args(config, data, out, "--strategy", "multiworker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})),
        )
        for index in range(2)
    ]
    results = [proc.communicate(timeout=1800) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    meta = _meta(out)
    training = meta["training"]
    assert abs(meta["val_accuracy"] - single["val_accuracy"]) <= TOLERANCE, (meta["val_accuracy"], single["val_accuracy"])
    assert training["strategy"] == "multiworker" and training["workers"] == 2 and training["replicas"] == 2
    assert training["chief"] is True and training["worker_index"] == 0
    assert training["global_batch"] == 32 and training["lr_scale"] == 2
    # only the chief wrote: the run folder and its lock, no checkpoints left; the other worker's scratch is gone
    assert sorted(p.name for p in root.iterdir() if p.name.startswith((".multiworker", "multiworker"))) == [".multiworker.lock", "multiworker"]
    assert set(Path(tempfile.gettempdir()).glob("edgetl-worker-*")) <= scratch_before, "a worker left its scratch folder"
    said = " ".join((results[1][0] + results[1][1]).split())  # rich wraps lines
    assert "worker 1 of 2 (writes nothing)" in said and "it wrote nothing" in said, said[-1500:]
    assert "worker 0 of 2 (chief: writes the files)" in " ".join(results[0][1].split())
