"""L2-SP (edgetl.ml.l2sp): the penalty's value against NumPy, its pull toward the source weights, that
it survives recompiling and leaves nothing behind, QAT through tfmot's wrappers, config and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.core.config import BuildConfig, validate
from edgetl.core.errors import ConfigError
from tests.helpers import assert_one_line_error, run_cli, tiny_config


@pytest.fixture(scope="module")
def keras():
    from edgetl.ml._keras import keras as get_keras

    return get_keras()


def _tiny(keras, seed: int = 0, dropout: float = 0.0):
    """Conv -> BN -> Conv backbone and edgetl's head names: small, but every kind of weight L2-SP sees."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="edgetl_pool")(x)
    x = keras.layers.Dropout(dropout, name="edgetl_dropout")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="edgetl_logits")(x)
    return keras.Model(inputs, outputs)


def _data(n: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, n)


def _perturb(model, seed: int = 1) -> None:
    """Move every weight (moving statistics too) away from where it was."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(v.numpy() + rng.normal(0, 0.3, v.shape).astype("float32"))


def _compile(keras, model, lr: float) -> None:
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def test_penalty_value_matches_numpy_frozen_and_moving_stats_excluded(keras):
    from edgetl.ml import l2sp

    model = _tiny(keras)
    source = l2sp.snapshot(model)
    _perturb(model)
    model.get_layer("c1").trainable = False  # frozen: contributes 0
    alpha, beta = 0.3, 0.05
    layer = model.get_layer
    anchored = [layer("c2").kernel, layer("c2").bias, layer("bn1").gamma, layer("bn1").beta]
    expected_source = sum(float(np.sum((v.numpy().astype(np.float64) - source[(v.name.split("/")[0], v.name[:-2])]) ** 2)) for v in anchored)
    expected_head = float(np.sum(layer("edgetl_logits").kernel.numpy().astype(np.float64) ** 2) + np.sum(layer("edgetl_logits").bias.numpy() ** 2))
    value = l2sp.penalty_value(model, source, alpha, beta)
    assert value["source_sq"] == pytest.approx(expected_source, rel=1e-6)
    assert value["head_sq"] == pytest.approx(expected_head, rel=1e-6)
    assert value["total"] == pytest.approx(alpha / 2 * expected_source + beta / 2 * expected_head, rel=1e-6)
    keys = {t.key for t in l2sp.penalty_terms(model, source, alpha, beta)}
    assert keys == {("c2", "c2/kernel"), ("c2", "c2/bias"), ("bn1", "bn1/gamma"), ("bn1", "bn1/beta"), ("edgetl_logits", "edgetl_logits/kernel"), ("edgetl_logits", "edgetl_logits/bias")}
    assert ("bn1", "bn1/moving_mean") in source  # in the snapshot, never penalised (not trainable)

    # The tensor the train step adds is the same number: with lr 0 the weights stay put, and the
    # epoch's `l2sp` log and the training loss minus the data loss both equal it.
    x, y = _data()
    model.get_layer("bn1").trainable = False  # inference-mode BN, so the data loss of fit and evaluate agree
    value = l2sp.penalty_value(model, source, alpha, beta)
    with l2sp.attached(model, source, alpha, beta):
        _compile(keras, model, 0.0)
        history = model.fit(x, y, validation_data=(x, y), batch_size=32, epochs=1, verbose=0).history
    assert history["l2sp"][0] == pytest.approx(value["total"], rel=1e-4)
    assert history["loss"][0] - history["val_loss"][0] == pytest.approx(value["total"], rel=1e-3)  # val_loss: data loss only


def _train(keras, model, *, lr: float = 0.05, epochs: int = 20):
    x, y = _data(64)
    _compile(keras, model, lr)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)


def test_gradient_pulls_toward_source_and_head_toward_zero(keras):
    from edgetl.ml import l2sp

    results = {}
    for name, alpha, beta in (("plain", None, None), ("l2sp", 5.0, 5.0)):
        model = _tiny(keras, seed=3)
        source = l2sp.snapshot(model)
        _perturb(model, seed=4)  # start away from the source, as after phase 1 and a few steps
        if alpha is None:
            _train(keras, model)
        else:
            with l2sp.attached(model, source, alpha, beta):
                _train(keras, model)
        results[name] = l2sp.penalty_value(model, source, 1.0, 1.0)
    assert results["l2sp"]["source_sq"] < 0.2 * results["plain"]["source_sq"], results
    assert results["l2sp"]["head_sq"] < 0.2 * results["plain"]["head_sq"], results


def test_stays_attached_after_recompiling_and_follows_freezing(keras):
    from edgetl.ml import l2sp

    model = _tiny(keras)
    source = l2sp.snapshot(model)
    _perturb(model)
    x, y = _data()
    with l2sp.attached(model, source, 1.0, 0.0):
        for frozen in (False, True):
            model.get_layer("c2").trainable = not frozen
            _compile(keras, model, 0.0)  # every phase compiles again
            history = model.fit(x, y, epochs=1, verbose=0).history
            expected = l2sp.penalty_value(model, source, 1.0, 0.0)["total"]
            assert history["l2sp"][0] == pytest.approx(expected, rel=1e-4)
    frozen_part = 0.5 * np.sum((model.get_layer("c2").kernel.numpy() - source[("c2", "c2/kernel")]) ** 2)
    assert frozen_part > 0 and expected < l2sp.penalty_value(model, source, 1.0, 0.0)["total"] + 1e-9  # c2 left out when frozen
    # detached: nothing of L2-SP is left on the model
    assert model._callable_losses == [] and "train_step" not in vars(model)
    _compile(keras, model, 0.0)
    assert "l2sp" not in model.fit(x, y, epochs=1, verbose=0).history


def test_trained_model_saves_loads_and_converts(keras, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgetl.ml import l2sp
    from edgetl.ml._keras import tf

    model = _tiny(keras)
    source = l2sp.snapshot(model)
    with l2sp.attached(model, source, 0.1):
        _train(keras, model, epochs=1)
    x, _ = _data(4)
    expected = model.predict(x, verbose=0)
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = keras.models.load_model(tmp_path / name)
        assert not loaded.losses
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    flatbuffer = tf().lite.TFLiteConverter.from_keras_model(model).convert()  # the SavedModel route
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:1])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), expected[:1], atol=1e-4)


def test_qat_penalty_maps_through_quantize_wrappers(keras):
    from edgetl.ml import l2sp
    from edgetl.ml.quantize import quantize_model

    float_model = _tiny(keras)
    for layer in float_model.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)  # as QAT sets it
    q_model = quantize_model(float_model)
    assert any(layer.name.startswith("quant_") and hasattr(layer, "layer") for layer in q_model.layers)
    source = l2sp.qat_source(float_model)
    keys = {t.key for t in l2sp.penalty_terms(q_model, source, 1.0, 0.0, new_head=False)}
    assert keys == {(name, f"{name}/{w}") for name in ("c1", "c2", "edgetl_logits") for w in ("kernel", "bias")}
    assert l2sp.penalty_value(q_model, source, 1.0, 0.0, new_head=False)["total"] == pytest.approx(0.0, abs=1e-10)  # starts on the anchor

    kernel = next(v for v in q_model.get_layer("quant_c2").trainable_weights if v.name == "c2/kernel:0")
    kernel.assign(kernel.numpy() + 0.5)
    moved = 0.5 * float(np.sum((kernel.numpy() - source[("c2", "c2/kernel")]) ** 2))
    assert l2sp.penalty_value(q_model, source, 1.0, 0.0, new_head=False)["total"] == pytest.approx(moved, rel=1e-5)
    x, y = _data()
    with l2sp.attached(q_model, source, 1.0, 0.0, new_head=False):
        _compile(keras, q_model, 0.0)
        history = q_model.fit(x, y, epochs=1, verbose=0).history
    assert history["l2sp"][0] == pytest.approx(moved, rel=1e-4)  # active in QAT's train step


@pytest.mark.parametrize(("given", "expected"), [(0.01, (0.01, 0.01)), ("0.01,0.001", (0.01, 0.001)), ([0.01, 0.001], (0.01, 0.001)), ("0.2", (0.2, 0.01)), (None, None)])
def test_config_forms(given, expected):
    config = validate({"train": {"l2sp": given}, "qat": {"l2sp": given}}, "test")
    assert config.train.l2sp == expected and config.qat.l2sp == expected
    assert validate(config.to_toml_dict(), "round trip").train.l2sp == expected
    assert BuildConfig().train.l2sp is None


@pytest.mark.parametrize("bad", ["abc", "0.1,0.2,0.3", [1, 2, 3], -0.1, "nan", "inf", True, "0.1,", 1e9, {}])
def test_config_refuses_bad_values_in_one_line(bad):
    with pytest.raises(ConfigError) as info:
        validate({"train": {"l2sp": bad}}, "edgetl.toml")
    message = str(info.value)
    assert "\n" not in message and "train.l2sp" in message and "ALPHA" in message


def test_cli_refuses_l2sp_from_scratch(tmp_path):
    result = run_cli("train", "--data", tmp_path, "--weights", "none", "--l2sp", "0.01", "--out", tmp_path / "run")
    assert_one_line_error(result, "--l2sp", "--weights none")
    assert not (tmp_path / "run").exists()


def test_cli_reports_a_bad_l2sp_by_its_flag(tmp_path):
    result = run_cli("train", "--data", tmp_path, "--l2sp", "lots", "--out", tmp_path / "run")
    assert_one_line_error(result, "--l2sp", "ALPHA")


def test_check_l2sp():
    from edgetl.ml.l2sp import check_l2sp

    check_l2sp((0.01, 0.01), "imagenet")
    check_l2sp(None, "none")
    with pytest.raises(ConfigError):
        check_l2sp((0.01, 0.01), "None")


@pytest.mark.slow  # ~65 s on 2 shared cores
def test_train_with_l2sp_logs_and_records_the_penalty(shapes_dir, tmp_path, keras, caplog):
    """`train` end to end with a pretrained weights file: the penalty is logged per phase, kept per
    epoch in history.json, recorded in the config, and the saved model carries nothing of it."""
    import json
    import logging

    from edgetl.ml.train import train

    weights = tmp_path / "mnv2_035_32_no_top.h5"
    keras.utils.set_random_seed(0)
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None).save_weights(weights)
    config = tiny_config(
        shapes_dir, model={"weights": str(weights)},
        train={"head_epochs": 1, "fine_tune_epochs": 2, "clean_epochs": 1, "augment": True, "unfreeze": 30, "l2sp": [1.0, 0.01], "patience": 5},
    )
    with caplog.at_level(logging.INFO, logger="edgetl.ml.train"):
        result = train(config, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    tuned = [p for p in history["phase"] if p in ("fine_tune", "clean")]
    assert len(history["l2sp"]) == len(tuned) == 3 and all(v > 0 for v in history["l2sp"])
    lines = [r.getMessage() for r in caplog.records if "L2-SP penalty" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["phase 2 (fine-tune)", "phase 3 (clean)"]
    meta = json.loads((tmp_path / "run" / "edgetl.json").read_text())
    assert meta["config"]["train"]["l2sp"] == [1.0, 0.01]
    assert result.model._callable_losses == [] and "train_step" not in vars(result.model)
    loaded = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert not loaded.losses
