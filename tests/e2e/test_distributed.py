"""Training through tf.distribute (issue 16), with real TensorFlow and real ``edgetl train`` processes.

- MirroredStrategy over 2 logical CPU devices (``EDGETL_CPU_REPLICAS=2 --strategy mirrored``).
- MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1 ports (``TF_CONFIG``), the same command.

Both must reach the single-device accuracy on the same data within :data:`TOLERANCE`, record the
scaling rule in ``edgetl.json``, and only the chief may write.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgetl.data.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow

_CLI = "import sys\nfrom edgetl.cli import main\nmain(sys.argv[1:])\n"
#: Validation top-1 (24 images, 4 classes) may differ from the single-device run's by at most this.
TOLERANCE = 0.15
_SETTINGS = """
[model]
name = "mobilenet_v2"
alpha = 0.35
input_size = 32
weights = "none"
[data]
val_split = 0.25
batch_size = 16
seed = 0
[train]
head_epochs = 2
head_lr = 3e-3
fine_tune_epochs = 14
patience = 14
augment = false
schedule = "cosine"
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def _train_args(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _CLI, "train", "--config", str(config), "--data", str(data), "--out", str(out), *extra]


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
    make_shapes_dataset(data, images_per_class=32, image_size=32, seed=0)
    config = root / "settings.toml"
    config.write_text(_SETTINGS)
    single = root / "single"
    proc = subprocess.run(_train_args(config, data, single), capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, data, config, _meta(single)


def test_mirrored_over_two_cpu_devices_matches_one_device(setup):
    root, data, config, single = setup
    out = root / "mirrored"
    proc = subprocess.run(
        _train_args(config, data, out, "--strategy", "mirrored"), capture_output=True, text=True, timeout=900, env=_env(EDGETL_CPU_REPLICAS="2")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = _meta(out)
    training = meta["training"]
    assert training["strategy"] == "mirrored" and training["replicas"] == 2
    assert training["global_batch"] == 32 and training["per_replica_batch"] == 16 and training["lr_scale"] == 2
    assert single["training"]["replicas"] == 1
    assert single["val_accuracy"] > 0.5, single["val_accuracy"]
    assert abs(meta["val_accuracy"] - single["val_accuracy"]) <= TOLERANCE, (meta["val_accuracy"], single["val_accuracy"])


def test_two_worker_processes_match_one_device_and_only_the_chief_writes(setup):
    root, data, config, single = setup
    out = root / "multiworker"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = [
        subprocess.Popen(
            _train_args(config, data, out, "--strategy", "multiworker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})),
        )
        for index in range(2)
    ]
    results = [proc.communicate(timeout=1200) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    meta = _meta(out)
    training = meta["training"]
    assert training["strategy"] == "multiworker" and training["workers"] == 2 and training["replicas"] == 2
    assert training["chief"] is True and training["worker_index"] == 0
    assert abs(meta["val_accuracy"] - single["val_accuracy"]) <= TOLERANCE, (meta["val_accuracy"], single["val_accuracy"])
    # only the chief wrote: one run folder, nothing else beside it (no checkpoint folder left either)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(("multiworker", ".multiworker"))) == ["multiworker"]
    assert "writes nothing" in results[1][1] or "writes nothing" in results[1][0]


def test_multiworker_without_tf_config_is_one_line(setup):
    root, data, config, _ = setup
    env = _env()
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(_train_args(config, data, root / "nope", "--strategy", "multiworker"), capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "TF_CONFIG" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "nope").exists()
