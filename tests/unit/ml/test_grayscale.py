"""Grayscale backbones folded from RGB ones, and non-square inputs, for real Keras models (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.core.contract import PreprocessContract
from edgetl.ml.backbones.spec import BuiltBackbone


def _randomize_batchnorm(model, rng):
    """Random moving statistics, so BatchNorm is not the identity and a wrong fold would show."""
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32), rng.normal(0, 0.1, beta.shape).astype(np.float32),
                rng.normal(0, 0.2, mean.shape).astype(np.float32), rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
            ])


def _equivalent(rgb_built, gray_built, hw, rng):
    """The 1-channel model on a gray image equals the RGB model on that image replicated to three channels."""
    gray = rng.integers(0, 256, size=(4, *hw, 1)).astype(np.uint8)
    replicated = np.repeat(gray, 3, axis=-1)
    expected = rgb_built.model(rgb_built.contract.normalize(replicated), training=False).numpy()
    got = gray_built.model(gray_built.contract.normalize(gray), training=False).numpy()
    return expected, got


def test_mobilenet_v2_gray_equals_rgb_on_replicated_gray_non_square():
    from edgetl.ml.backbones.grayscale import to_grayscale
    from edgetl.ml.backbones.spec import BACKBONES

    rng = np.random.default_rng(0)
    spec = BACKBONES.get("mobilenet_v2")
    rgb = spec.builder(input_size=(32, 48), alpha=0.35, weights=None)  # random weights stand in for ImageNet
    _randomize_batchnorm(rgb.model, rng)
    gray = to_grayscale(rgb, keep_weights=True)
    assert gray.model.input_shape == (None, 32, 48, 1) and rgb.model.input_shape == (None, 32, 48, 3)
    assert gray.contract.channel_order == "L" and gray.contract.mean == (127.5,) and gray.contract.hw == (32, 48)
    first = gray.model.get_layer("Conv1").get_weights()[0]
    np.testing.assert_allclose(first, rgb.model.get_layer("Conv1").get_weights()[0].sum(axis=2, keepdims=True), rtol=1e-6, atol=1e-7)
    expected, got = _equivalent(rgb, gray, (32, 48), rng)
    assert expected.shape == got.shape == (4, 1, 2, 1280)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("use_bias", [False, True])
def test_unequal_channel_statistics_fold_into_bias_or_batchnorm(use_bias):
    """EfficientNet-B0's ImageNet contract has a different mean and std per channel: the constant goes to the bias or BN."""
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones.grayscale import to_grayscale

    k = keras()
    rng = np.random.default_rng(1)
    inputs = k.Input((12, 10, 3), name="image")
    x = k.layers.Conv2D(6, 3, padding="valid", use_bias=use_bias, bias_initializer="random_normal", name="stem")(inputs)
    x = k.layers.BatchNormalization(name="stem_bn")(x)
    x = k.layers.ReLU(name="stem_relu")(x)
    model = k.Model(inputs, x)
    _randomize_batchnorm(model, rng)
    contract = PreprocessContract.sized((12, 10), (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    rgb = BuiltBackbone(model, contract)
    gray = to_grayscale(rgb, keep_weights=True)
    assert gray.contract.mean == pytest.approx((np.mean(contract.mean),)) and gray.contract.std == pytest.approx((np.mean(contract.std),))
    expected, got = _equivalent(rgb, gray, (12, 10), rng)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_random_init_gray_keeps_its_own_weights():
    from edgetl.ml.backbones import build_backbone
    from edgetl.ml.backbones.spec import BACKBONES

    built = build_backbone(BACKBONES.get("mobilenet_v2"), (32, 40), 0.35, "none", channels=1)
    assert built.model.input_shape == (None, 32, 40, 1)
    assert built.contract.input_shape == (32, 40, 1) and built.contract.to_dict()["channels"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_b0", "efficientnet_lite0"])
def test_every_family_builds_gray_and_non_square(name):
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.grayscale import to_grayscale
    from edgetl.ml.backbones.spec import BACKBONES

    spec = BACKBONES.get(name)
    model, contract = build_classifier(spec, 3, (32, 48), None, "none", channels=1)
    assert model.input_shape == (None, 32, 48, 1) and model.output_shape == (None, 3)
    assert contract.channels == 1 and contract.hw == (32, 48)
    rgb = spec.builder(input_size=(32, 48), alpha=None, weights=None)
    gray = to_grayscale(rgb, keep_weights=True)  # the pretrained path: weights copied, stem folded
    rng = np.random.default_rng(2)
    expected, got = _equivalent(rgb, gray, (32, 48), rng)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_weights_file_gray_or_rgb(tmp_path):
    """--weights FILE with --channels 1: a file saved from a grayscale model loads as is; one from an RGB model is folded."""
    from edgetl.ml.backbones import build_backbone
    from edgetl.ml.backbones.grayscale import to_grayscale
    from edgetl.ml.backbones.spec import BACKBONES

    rng = np.random.default_rng(3)
    spec = BACKBONES.get("mobilenet_v2")
    rgb = spec.builder(input_size=32, alpha=0.35, weights=None)
    _randomize_batchnorm(rgb.model, rng)
    rgb_file = tmp_path / "rgb.h5"
    rgb.model.save_weights(str(rgb_file))
    folded = build_backbone(spec, 32, 0.35, str(rgb_file), channels=1)
    expected, got = _equivalent(rgb, folded, (32, 32), rng)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    gray = to_grayscale(rgb, keep_weights=True)
    gray_file = tmp_path / "gray.h5"
    gray.model.save_weights(str(gray_file))
    loaded = build_backbone(spec, 32, 0.35, str(gray_file), channels=1)
    for a, b in zip(loaded.model.get_weights(), gray.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
