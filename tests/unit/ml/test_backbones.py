"""The backbone registry and edgetl form: rebuilt graphs equal the stock Keras applications.

Stock models are built with random weights whose BatchNorm statistics are re-estimated on
random images first, so activations are of order 1 (untouched random BatchNorm shrinks them to
~1e-10 and any comparison would pass).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import ConfigError, ExportError
from edgetl.ml.backbones import block_starts, build_backbone, build_classifier
from edgetl.ml.backbones.spec import BACKBONES

STOCK = [name for name, spec in BACKBONES.items() if spec.stock_builder is not None]
REPO = Path(__file__).resolve().parents[3]


def _settle_batchnorm(model, size: int) -> None:
    from edgetl.ml._keras import keras

    x = np.random.default_rng(1).integers(0, 256, (32, size, size, 3)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, keras().layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)


def _stock_and_rebuilt(name: str):
    """``(spec, stock model with settled BatchNorm, its edgetl form, the folded contract)`` at 32 px."""
    from edgetl.core.contract import PreprocessContract
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones.graph import to_edgetl_form

    keras().utils.set_random_seed(0)
    spec = BACKBONES.get(name)
    stock = spec.stock_builder(32, spec.default_alpha, None)
    _settle_batchnorm(stock, 32)
    model, mean, std = to_edgetl_form(stock, name=name, hard_swish_layers=spec.qat_recipe == "mobilenet_v3")
    return spec, stock, model, PreprocessContract(32, mean, std)


def test_registry_entries_are_complete():
    from edgetl.export.targets import TARGETS
    from edgetl.ml.quantize import QAT_RECIPES

    assert set(BACKBONES.names()) >= {
        "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_b0", "efficientnet_lite0",
    }
    for name, spec in BACKBONES.items():
        assert spec.qat_recipe in QAT_RECIPES, name
        assert all(t in TARGETS for t in spec.targets), name
        assert (REPO / "models" / f"{name}.toml").is_file(), f"models/{name}.toml (the backbone's default recipe) is missing"
        assert re.compile(spec.block_pattern).groups == 1, name


@pytest.mark.parametrize("name", STOCK)
def test_rebuilt_graph_equals_stock(name):
    """Same tensor in (the stock scaling's output): the rebuilt graph gives the stock outputs."""
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones.graph import input_scaling_prefix

    k = keras()
    spec, stock, model, contract = _stock_and_rebuilt(name)
    # Weights arrive by name from the stock model; scaling layers and TFOpLambda arithmetic are gone.
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Rescaling", "Normalization", "TFOpLambda"}
    prefix = input_scaling_prefix(stock)
    assert model.count_params() == sum(layer.count_params() for layer in stock.layers if layer.name not in prefix)
    for layer in model.layers:
        if layer.weights:
            assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), stock.get_layer(layer.name).get_weights(), strict=True))
    # The registry's builder gives the same form.
    built, built_contract = spec.builder(32, spec.default_alpha, None)
    assert [layer.name for layer in built.layers] == [layer.name for layer in model.layers]
    assert built_contract == contract

    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    stock_input = k.Model(stock.input, stock.get_layer(prefix[-1]).output).predict_on_batch(pixels.astype(np.float32))
    # The contract reproduces the in-graph scaling ...
    assert np.abs(contract.normalize(pixels) - stock_input).max() < 1e-5
    # ... and the rebuilt graph the rest of the network.
    expected = stock.predict_on_batch(pixels.astype(np.float32))
    got = model.predict_on_batch(stock_input)
    assert np.abs(expected).max() > 1.0  # a real comparison, not of vanishing activations
    # float32 rounding only: a few ulps of the largest activation (MobileNetV3-Large's reach 25, ulp 1.9e-6)
    assert np.abs(expected - got).max() < 1e-6 * np.abs(expected).max()
    # and the criterion on a classifier's output: the same head on both, softmax max |diff| < 1e-5
    head = np.random.default_rng(3).normal(0, 1 / np.sqrt(expected.shape[-1]), (expected.shape[-1], 10)).astype(np.float32)

    def softmax_of(features):
        logits = features.mean(axis=(1, 2)) @ head
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    stock_probs = softmax_of(expected)
    assert stock_probs.max(axis=1).min() < 0.99  # not saturated: a difference would show
    assert np.abs(stock_probs - softmax_of(got)).max() < 1e-5


@pytest.mark.parametrize("name", STOCK)
def test_rebuilt_backbone_matches_stock_from_pixels(name):
    """Pixels in, the contract applied outside the graph. The graph rewrite itself is exact (above);
    what remains is float32 rounding of the input scaling done in numpy instead of in the graph."""
    _, stock, model, contract = _stock_and_rebuilt(name)
    pixels = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    expected = stock.predict_on_batch(pixels.astype(np.float32))
    got = model.predict_on_batch(contract.normalize(pixels))
    # Input rounding (<= 5e-7) is amplified through the depth of a random net whose BatchNorm was
    # fitted to 32 images (seen: up to 1.3e-4 of the output scale); a wrong contract is off by O(1).
    assert np.abs(expected - got).max() < 1e-3 * np.abs(expected).max()


def _hard_swish_multiplies(model) -> int:
    """Multiply layers whose inputs are ``x`` and ``HardSigmoid(x)``."""
    from edgetl.ml.backbones.graph import hard_swish_multiplies

    return len(hard_swish_multiplies(model))


def test_mobilenet_v3_hard_swish_becomes_layers():
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones.graph import to_edgetl_form

    spec = BACKBONES.get("mobilenet_v3_small")
    model, contract = build_backbone(spec, 32, None, "none")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "TFOpLambda" not in kinds and "HardSwish" not in kinds and kinds.count("HardSigmoid") > 0
    # hard-swish stays Multiply(x, HardSigmoid(x)) (int8 ADD/MUL, which XNNPACK runs); the SE gates are the other HardSigmoids
    assert 0 < _hard_swish_multiplies(model) < kinds.count("HardSigmoid")
    assert contract.mean == (127.5,) * 3 and contract.std == (127.5,) * 3

    # fuse_hard_swish=True: one HardSwish layer per hard-swish instead, same function
    stock = keras().applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, include_top=False, include_preprocessing=True)
    split, _, _ = to_edgetl_form(stock, name="split", hard_swish_layers=True)
    fused, _, _ = to_edgetl_form(stock, name="fused", hard_swish_layers=True, fuse_hard_swish=True)
    assert [type(layer).__name__ for layer in fused.layers].count("HardSwish") == _hard_swish_multiplies(split)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert np.abs(split.predict_on_batch(x) - fused.predict_on_batch(x)).max() < 1e-5


def test_efficientnet_contracts_follow_the_weights(monkeypatch, tmp_path):
    """Random weights: x/255 (what the un-adapted Normalization does). ImageNet weights: ImageNet mean
    and std, read from the weights (Keras' Normalization + its 1/sqrt(std) fix), checked offline by
    serving a stand-in weights file through Keras' downloader."""
    from edgetl.ml._keras import keras

    k = keras()
    spec = BACKBONES.get("efficientnet_b0")
    _, contract = build_backbone(spec, 32, None, "none")
    assert contract.mean == (0.0, 0.0, 0.0) and contract.std == pytest.approx((255.0,) * 3)

    stock = k.applications.EfficientNetB0(input_shape=(32, 32, 3), include_top=False, weights=None)
    norm = next(layer for layer in stock.layers if isinstance(layer, k.layers.Normalization))
    mean, stddev = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    # Keras' ImageNet file stores the std (not its square) as the variance: the graph fixes it up.
    norm.set_weights([np.array(mean, np.float32), np.array(stddev, np.float32), np.array(0, np.int64)])
    weights = tmp_path / "efficientnetb0_notop.h5"
    stock.save_weights(weights)
    import tf_keras.src.utils.data_utils as data_utils

    monkeypatch.setattr(data_utils, "get_file", lambda *args, **kwargs: str(weights))
    model, contract = build_backbone(spec, 32, None, "imagenet")
    assert contract.mean == pytest.approx(tuple(255 * m for m in mean), rel=1e-5)
    assert contract.std == pytest.approx(tuple(255 * s for s in stddev), rel=1e-5)
    assert np.allclose(model.get_layer("stem_conv").get_weights()[0], stock.get_layer("stem_conv").get_weights()[0])


def test_efficientnet_lite0_follows_the_published_design():
    from edgetl.ml.backbones.figures import measure

    spec = BACKBONES.get("efficientnet_lite0")
    info = measure(spec, alpha=None, input_size=224)  # the real model, not the stored figures
    # 4.7 M parameters with a 1000-class head (EfficientNet-Lite README); B0's 5.3 M minus squeeze-excitation.
    assert info["params"] == pytest.approx(4.7e6, rel=0.02)
    model, contract = build_backbone(spec, 224, None, "none")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Multiply", "Activation", "Reshape"}  # no squeeze-excitation, no swish
    relus = [layer for layer in model.layers if type(layer).__name__ == "ReLU"]
    assert relus and all(layer.max_value == 6.0 for layer in relus)
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("top_conv").filters == 1280
    assert model.output_shape == (None, 7, 7, 1280)
    assert contract.mean == (127.0,) * 3 and contract.std == (128.0,) * 3
    assert len(block_starts(spec, [layer.name for layer in model.layers])) == 16


def test_efficientnet_lite0_weights_file_round_trip(tmp_path):
    spec = BACKBONES.get("efficientnet_lite0")
    first, _ = build_backbone(spec, 32, None, "none")
    path = tmp_path / "lite0.h5"
    first.save_weights(path)
    second, _ = build_backbone(spec, 32, None, str(path))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "efficientnet_lite0"])
def test_input_size_below_minimum_says_which_sizes_work(name):
    spec = BACKBONES.get(name)
    with pytest.raises(ConfigError, match=rf"input size 16 is not supported by {name}: it needs at least 32 px .*default 224"):
        build_backbone(spec, 16, None, "none")


def test_block_starts_and_unfreeze_blocks(tmp_path):
    from edgetl.core.config import validate
    from edgetl.ml.phases import unfreeze_index

    spec = BACKBONES.get("mobilenet_v3_small")
    model, _ = build_classifier(spec, 3, 32, None, "none")
    names = [layer.name for layer in model.layers]
    blocks = block_starts(spec, names)
    assert [b for b, _ in blocks][:2] == ["expanded_conv", "expanded_conv_1"] and blocks[-1][0] == "expanded_conv_10"
    config = validate({"model": {"name": spec.name, "weights": "imagenet"}, "data": {"path": str(tmp_path)}, "train": {"unfreeze_blocks": 3}}, "test")
    start = unfreeze_index(model, spec, config)
    assert names[start] == blocks[-3][1] == "expanded_conv_8/expand"
    with pytest.raises(ConfigError, match="give only one of"):  # refused with the config, before any training
        validate({"model": {"name": spec.name}, "data": {"path": str(tmp_path)}, "train": {"unfreeze_blocks": 3, "unfreeze": 10}}, "test")


def _model_with_custom_op():
    from edgetl.ml._keras import keras, tf

    k = keras()
    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(8, 3, name="conv")(inputs)
    x = tf().math.multiply(x, 2.0)  # becomes a TFOpLambda layer no recipe covers
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(3, activation="softmax")(x))


def test_qat_refuses_an_uncovered_layer_by_name_and_type():
    from edgetl.ml.quantize import quantize_model

    model = _model_with_custom_op()
    bad = next(layer for layer in model.layers if type(layer).__name__ == "TFOpLambda")
    with pytest.raises(ExportError) as excinfo:
        quantize_model(model, "plain")
    message = str(excinfo.value)
    assert f"layer {bad.name!r} (TFOpLambda tf.math.multiply)" in message
    assert "--mode ptq" in message and "quantize_configs=" in message and "\n" not in message


def test_qat_hook_covers_a_custom_layer():
    """The Python API hook: a QuantizeConfig for a user's layer the recipe does not know."""
    from edgetl.ml._keras import keras, tfmot
    from edgetl.ml.quantize import _config_classes, plan_quantization, quantize_model

    k = keras()

    class Doubler(k.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(8, 3, name="conv")(inputs)
    x = Doubler(name="doubler")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ExportError, match="layer 'doubler' \\(Doubler\\)"):
        plan_quantization(model, "plain")
    hook = {"doubler": _config_classes()["EdgetlOutputQuantizeConfig"]()}
    with tfmot().quantization.keras.quantize_scope({"Doubler": Doubler}):
        q_model = quantize_model(model, "plain", quantize_configs=hook)
    assert isinstance(q_model.get_layer("quant_doubler"), tfmot().quantization.keras.QuantizeWrapperV2)


def test_efficientnet_lite0_layers_start_from_different_weights():
    spec = BACKBONES.get("efficientnet_lite0")
    model, _ = build_backbone(spec, 32, None, "none")
    a, b = model.get_layer("block4b_expand_conv").get_weights()[0], model.get_layer("block4c_expand_conv").get_weights()[0]
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_offline_imagenet_error_says_why_the_download_failed(monkeypatch, tmp_path):
    """Keras raises a bare Exception when the fetch fails: the message gives its text, not "(Exception)"."""
    import dataclasses

    from edgetl.ml.backbones import spec as spec_module

    spec = BACKBONES.get("mobilenet_v2")

    def offline(**_):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(spec_module, "KERAS_CACHE", tmp_path)  # nothing cached
    monkeypatch.setattr("edgetl.ml.backbones.KERAS_CACHE", tmp_path)
    with pytest.raises(ConfigError) as info:
        build_backbone(dataclasses.replace(spec, builder=offline), 96, 0.35, "imagenet")
    message = str(info.value)
    assert "Temporary failure in name resolution" in message and "(Exception)" not in message
    assert "~/.keras/models" in message and "--weights none" in message and "\n" not in message
