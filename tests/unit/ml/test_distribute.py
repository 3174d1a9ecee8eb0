"""tf.distribute settings, mixed precision, XLA and epoch checkpoints (issue 16), on tiny real models.

The multi-process runs (MirroredStrategy over 2 CPU devices, 2 MultiWorkerMirroredStrategy workers)
and the signal tests are in tests/e2e (slow).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetl.core.errors import ConfigError
from edgetl.ml import distribute
from edgetl.ml._keras import keras
from edgetl.ml.checkpoints import RunCheckpoints
from edgetl.ml.phases import BestWeights, _compile, _resumed_history
from tests.helpers import run_cli, tiny_config

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def test_tf_config_is_checked():
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        distribute.parse_tf_config(None)
    with pytest.raises(ConfigError, match="not valid JSON"):
        distribute.parse_tf_config("{cluster")
    with pytest.raises(ConfigError, match="not in its cluster"):
        distribute.parse_tf_config(json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(ConfigError, match="'worker' and 'chief'"):
        distribute.parse_tf_config(json.dumps({"cluster": {**CLUSTER, "ps": ["h:3"]}, "task": {"type": "ps", "index": 0}}))
    first = distribute.parse_tf_config(json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 0}}))
    second = distribute.parse_tf_config(json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}))
    assert distribute.is_chief_task(first) and not distribute.is_chief_task(second)
    with_chief = {"cluster": {**CLUSTER, "chief": ["h:9"]}, "task": {"type": "worker", "index": 0}}
    assert not distribute.is_chief_task(with_chief), "worker 0 is not the chief when a chief task exists"


def test_multiworker_without_tf_config_is_refused_in_one_line(shapes_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = run_cli("train", "--data", shapes_dir, "--out", tmp_path / "run", "--strategy", "multiworker", "--input-size", "32")
    assert result.exit_code != 0
    assert "TF_CONFIG" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_the_scaling_rule(shapes_dir):
    config = tiny_config(shapes_dir, train={"fine_tune_lr": 1e-4}, qat={"lr": 2e-5})
    scaled = distribute.scaled(config, 4)
    assert scaled.data.batch_size == config.data.batch_size * 4
    assert scaled.train.head_lr == pytest.approx(config.train.head_lr * 4)
    assert scaled.train.fine_tune_lr == pytest.approx(4e-4) and scaled.qat.lr == pytest.approx(8e-5)
    assert scaled.train.clean_lr is None, "an unset rate follows the scaled ones it derives from"
    assert distribute.scaled(config, 1) is config


def _tiny(classes: int = 3):
    k = keras()
    inputs = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 3, name="conv")(inputs)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.GlobalAveragePooling2D(name="edgetl_pool")(x)
    outputs = k.layers.Dense(classes, activation="softmax", name="edgetl_logits", dtype="float32")(x)
    return k.Model(inputs, outputs)


def test_mixed_precision_trains_in_float16_and_saves_float32():
    with distribute.precision(True):
        model = _tiny()
        assert keras().mixed_precision.global_policy().name == "mixed_float16"
    assert keras().mixed_precision.global_policy().name == "float32", "the policy leaked out of the block"
    assert model.get_layer("conv").compute_dtype == "float16"
    assert model.get_layer("edgetl_logits").compute_dtype == "float32", "the softmax must stay float32"
    _compile(model, 1e-3)
    assert "LossScale" in type(model.optimizer).__name__, "Keras did not add loss scaling"
    x = np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    rebuilt = distribute.as_float32(model)
    assert all(layer.dtype_policy.name == "float32" for layer in rebuilt.layers)
    for a, b in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), atol=2e-2)
    assert distribute.as_float32(rebuilt) is rebuilt


def test_jit_compiles_the_training_step():
    model = _tiny()
    _compile(model, 1e-3, jit=True)
    assert model.jit_compile is True
    x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    _compile(model, 1e-3)
    assert not model.jit_compile


def test_a_resumed_fit_continues_with_the_same_weights_and_optimizer_state(tmp_path):
    x = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    y = np.arange(32) % 3
    k = keras()

    class Interrupt(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    first = _tiny()
    _compile(first, 1e-2)
    checkpoints = RunCheckpoints(tmp_path / "ckpt", "fp1")
    best, stop = BestWeights(), k.callbacks.EarlyStopping(monitor="loss", patience=5)
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=5, verbose=0, batch_size=16, callbacks=[best, stop, checkpoints.callback("phase2", None, best, [stop]), Interrupt()])
    saved_weights = first.get_weights()
    saved_step = int(first.optimizer.iterations.numpy())
    saved_slots = [v.numpy().copy() for v in first.optimizer.variables]
    assert saved_step == 2 * 2  # 2 epochs of 2 batches

    second = _tiny()  # a new process: fresh weights
    _compile(second, 1e-2)
    resumed = RunCheckpoints(tmp_path / "ckpt", "fp1")
    state = resumed.epoch_state("phase2")
    assert state is not None and state.epoch == 2 and len(state.history["loss"]) == 2
    seen = {}

    class Probe(k.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = self.model.get_weights()

        def on_train_batch_begin(self, batch, logs=None):
            if "step" not in seen:
                seen["step"] = int(self.model.optimizer.iterations.numpy())
                seen["slots"] = [v.numpy().copy() for v in self.model.optimizer.variables]

    best2, stop2 = BestWeights(), k.callbacks.EarlyStopping(monitor="loss", patience=5)
    fitted = second.fit(
        x, y, epochs=3, initial_epoch=state.epoch, verbose=0, batch_size=16,
        callbacks=[best2, stop2, resumed.callback("phase2", state, best2, [stop2]), Probe()],
    )
    for a, b in zip(seen["weights"], saved_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert seen["step"] == saved_step, "the optimizer's step count was not restored"
    assert len(seen["slots"]) == len(saved_slots) > 2, "no Adam moments restored"
    for a, b in zip(seen["slots"], saved_slots, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(_resumed_history(state, fitted)["loss"]) == 3, "one history: the 2 earlier epochs and this run's"


def test_checkpoints_of_other_settings_are_not_resumed(tmp_path):
    RunCheckpoints(tmp_path / "ckpt", "fp1")
    (tmp_path / "ckpt" / "phase2.epoch.json").write_text(json.dumps({"epoch": 3, "checkpoint": "phase2.epoch-0003", "history": {}}))
    assert RunCheckpoints(tmp_path / "ckpt", "fp2").epoch_state("phase2") is None
    assert not (tmp_path / "ckpt" / "phase2.epoch.json").exists(), "stale checkpoints of other settings were kept"
    again = RunCheckpoints(tmp_path / "ckpt", "fp2", resume=False)
    assert again.epoch_state("phase2") is None
