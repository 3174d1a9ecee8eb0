"""Training on several devices and machines through ``tf.distribute``, mixed precision and XLA.

``train.strategy`` (``--strategy``):

- ``auto``: MirroredStrategy over every visible GPU when there are several, one device otherwise.
- ``one``: one device (the first GPU, else the CPU).
- ``mirrored``: MirroredStrategy over every visible GPU; without GPUs, over the logical CPU devices
  (``EDGETL_CPU_REPLICAS=N`` splits the CPU into N of them, so mirrored training is testable on any machine).
- ``multiworker``: MultiWorkerMirroredStrategy over the machines ``TF_CONFIG`` names. Every worker runs
  the same command on the same images; only the chief (worker 0, or the task of type ``chief``) writes
  files. Every other worker writes into a temporary folder it deletes.

The scaling rule: ``data.batch_size`` is per replica, so a step sees ``batch_size x replicas`` images,
and every learning rate is multiplied by the number of replicas (the linear scaling rule: the same
epochs take ``replicas`` times fewer, larger steps). ``edgetl.json`` records both under ``training``.

``train.mixed_precision``: ``mixed_float16`` compute while training (variables stay float32; the head's
softmax is float32; Keras scales the loss). The saved model is rebuilt in float32 with the same
weights, so QAT, export and everything after run in float32. ``train.jit``: XLA-compiled steps.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from edgetl.core.config import BuildConfig
from edgetl.core.errors import ConfigError
from edgetl.core.types import Strategy
from edgetl.ml._keras import keras, tf

log = logging.getLogger(__name__)

#: Environment variable: split the CPU into this many logical devices (``--strategy mirrored`` without GPUs).
CPU_REPLICAS_ENV = "EDGETL_CPU_REPLICAS"

#: One strategy of each kind per process, shared by training and QAT: TensorFlow refuses a second
#: MultiWorkerMirroredStrategy, and two MirroredStrategy objects hand out the same collective
#: instance keys, so the second one's all-reduce meets the first one's tensors ("Shape mismatch in
#: the collective instance").
_strategies: dict[Strategy, Any] = {}


@dataclass(frozen=True)
class Distribution:
    """How a run is spread: recorded as ``training`` in ``edgetl.json``."""

    strategy: str
    replicas: int
    workers: int
    worker_index: int
    chief: bool
    per_replica_batch: int
    global_batch: int
    lr_scale: float
    mixed_precision: bool
    jit: bool
    rule: str = "data.batch_size is per replica; global batch = batch_size x replicas; every learning rate x replicas"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_tf_config(text: str | None) -> dict[str, Any]:
    """``TF_CONFIG`` as a dict, checked: a cluster with workers and this process's task in it.

    Raises:
        ConfigError: unset, not JSON, or naming a task that is not in the cluster.
    """
    if not text:
        raise ConfigError(
            "--strategy multiworker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
            "\"task\": {\"type\": \"worker\", \"index\": 0}}' on the first machine (index 1 on the second); see the README, 'Scaling out'"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}); see the README, 'Scaling out'") from None
    cluster = data.get("cluster") if isinstance(data, dict) else None
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError("TF_CONFIG must hold 'cluster' and 'task' objects; see the README, 'Scaling out'")
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind) if isinstance(kind, str) else None
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG's task {task!r} is not in its cluster (types: {', '.join(map(str, cluster))})")
    if kind not in ("worker", "chief"):
        raise ConfigError(f"TF_CONFIG task type {kind!r}: edgetl runs 'worker' and 'chief' tasks only")
    return data


def is_chief_task(tf_config: dict[str, Any]) -> bool:
    """The chief writes: the ``chief`` task, else worker 0 when there is no chief."""
    task, cluster = tf_config["task"], tf_config["cluster"]
    if task["type"] == "chief":
        return True
    return "chief" not in cluster and task["type"] == "worker" and task["index"] == 0


def is_writer(config: BuildConfig) -> bool:
    """Whether this process writes the run's files (always, unless it is a non-chief multi-worker task)."""
    if Strategy(config.train.strategy) is not Strategy.multiworker:
        return True
    return is_chief_task(parse_tf_config(os.environ.get("TF_CONFIG")))


def check_strategy(config: BuildConfig) -> None:
    """Cheap checks before anything trains (TF_CONFIG for ``multiworker``)."""
    if Strategy(config.train.strategy) is Strategy.multiworker:
        parse_tf_config(os.environ.get("TF_CONFIG"))


def configure_cpu_replicas() -> None:
    """``EDGETL_CPU_REPLICAS=N``: N logical CPU devices (before TensorFlow initialises its devices)."""
    raw = os.environ.get(CPU_REPLICAS_ENV)
    if not raw:
        return
    try:
        count = int(raw)
    except ValueError:
        raise ConfigError(f"{CPU_REPLICAS_ENV}={raw!r} is not a whole number; set it to e.g. 2") from None
    if not 1 <= count <= 64:
        raise ConfigError(f"{CPU_REPLICAS_ENV}={count} is outside 1..64")
    t = tf()
    cpu = t.config.list_physical_devices("CPU")[0]
    try:
        t.config.set_logical_device_configuration(cpu, [t.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # already initialised: keep what there is
        log.warning("%s=%d ignored: TensorFlow's devices were already initialised", CPU_REPLICAS_ENV, count)


def make_strategy(kind: Strategy | str):
    """The ``tf.distribute`` strategy for ``kind`` (see the module docstring).

    Raises:
        ConfigError: ``multiworker`` without a usable ``TF_CONFIG``.
    """
    kind = Strategy(kind)
    if kind is Strategy.multiworker:
        parse_tf_config(os.environ.get("TF_CONFIG"))
    if kind not in _strategies:
        _strategies[kind] = _new_strategy(kind)
    return _strategies[kind]


def _new_strategy(kind: Strategy):
    t = tf()
    if kind is Strategy.multiworker:
        return t.distribute.MultiWorkerMirroredStrategy()
    configure_cpu_replicas()
    gpus = t.config.list_logical_devices("GPU")
    if kind is Strategy.one or (kind is Strategy.auto and len(gpus) < 2):
        return t.distribute.get_strategy()
    if gpus:
        return t.distribute.MirroredStrategy([device.name for device in gpus])
    cpus = t.config.list_logical_devices("CPU")
    return t.distribute.MirroredStrategy([device.name for device in cpus])


def describe(strategy, config: BuildConfig) -> Distribution:
    """The run's :class:`Distribution` under ``strategy``."""
    replicas = int(strategy.num_replicas_in_sync)
    workers, index, chief = 1, 0, True
    if Strategy(config.train.strategy) is Strategy.multiworker:
        tf_config = parse_tf_config(os.environ.get("TF_CONFIG"))
        workers = sum(len(tf_config["cluster"].get(kind, [])) for kind in ("chief", "worker"))
        index, chief = int(tf_config["task"]["index"]), is_chief_task(tf_config)
    batch = config.data.batch_size
    return Distribution(
        strategy=str(Strategy(config.train.strategy)), replicas=replicas, workers=workers, worker_index=index, chief=chief,
        per_replica_batch=batch, global_batch=batch * replicas, lr_scale=float(replicas),
        mixed_precision=config.train.mixed_precision, jit=config.train.jit,
    )


def scaled(config: BuildConfig, replicas: int) -> BuildConfig:
    """``config`` with the global batch and the learning rates of ``replicas`` replicas (the scaling rule)."""
    if replicas <= 1:
        return config
    train, qat = config.train, config.qat
    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"batch_size": config.data.batch_size * replicas}),
            "train": train.model_copy(
                update={
                    "head_lr": train.head_lr * replicas,
                    "fine_tune_lr": None if train.fine_tune_lr is None else train.fine_tune_lr * replicas,
                    "clean_lr": None if train.clean_lr is None else train.clean_lr * replicas,
                }
            ),
            "qat": qat.model_copy(update={"lr": qat.lr * replicas}),
        }
    )


@contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """``mixed_float16`` as Keras' global policy while the block runs (float32 again afterwards)."""
    if not mixed:
        yield
        return
    mp = keras().mixed_precision
    before = mp.global_policy().name
    mp.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        mp.set_global_policy(before)


def _float32_config(node: Any) -> Any:
    """A Keras model config with every layer's mixed dtype policy replaced by float32."""
    if isinstance(node, dict):
        if node.get("class_name") in ("Policy", "DTypePolicy") and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_float32_config(value) for value in node]
    if node == "mixed_float16":
        return "float32"
    return node


def as_float32(model):
    """``model`` rebuilt with float32 layers and the same (float32) weights; itself if it is float32 already."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    k = keras()
    rebuilt = k.Model.from_config(_float32_config(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    log.info("mixed precision: the trained model rebuilt in float32 (the weights were float32 already)")
    return rebuilt
