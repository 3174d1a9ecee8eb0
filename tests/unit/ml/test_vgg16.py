"""VGG16 and the transfer-learning tutorial's recipe: the backbone in edgetl form equals stock VGG16
+ ``vgg16.preprocess_input``, the head's hidden layers (``head_units``) are head everywhere, and
the configured optimizers are the ones that train."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import ConfigError
from edgetl.data.split import ImageData, SplitData
from edgetl.ml.backbones import block_starts, build_backbone, build_classifier
from edgetl.ml.backbones.spec import BACKBONES, HEAD_LAYERS, is_head_layer
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def keras():
    from edgetl.ml._keras import keras as get_keras

    return get_keras()


@pytest.fixture(scope="module")
def vgg_classifier(keras):
    """VGG16 at 32 px with the tutorial's head (one hidden layer, narrowed to 16 units), 3 classes."""
    keras.utils.set_random_seed(0)
    return build_classifier(BACKBONES.get("vgg16"), 3, 32, None, "none", head_units=[16])


def _split(size: int = 32, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)

    def images(count):
        y = np.arange(count) % 3
        return ImageData(rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), y, [Path(f"{i}.png") for i in range(count)])

    return SplitData(images(24), images(9), ["a", "b", "c"], [])


def test_vgg16_is_registered_with_the_tutorial_settings(vgg_classifier):
    from edgetl.ml.quantize import plan_quantization

    spec = BACKBONES.get("vgg16")
    assert (spec.min_input_size, spec.default_input_size, spec.qat_recipe) == (32, 224, "plain")
    assert spec.weights_file(None, 224) == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert spec.mean == (123.68, 116.779, 103.939) and spec.std == (1.0, 1.0, 1.0)  # caffe means, in RGB order
    assert (REPO / "models" / "vgg16.toml").is_file()
    model, _ = vgg_classifier
    names = [layer.name for layer in model.layers]
    assert [block for block, _ in block_starts(spec, names)] == ["block1", "block2", "block3", "block4", "block5"]
    assert block_starts(spec, names)[-1] == ("block5", spec.unfreeze_from)
    # tfmot's default 8-bit registry covers every layer (Conv2D, MaxPooling2D, Dense): the plain recipe
    plans = {plan.name: plan.how for plan in plan_quantization(model, spec.qat_recipe)}
    assert plans["block1_conv1"] == plans["block5_pool"] == plans["edgetl_hidden_1"] == "registry"
    with pytest.raises(ConfigError, match="at least 32 px"):
        build_backbone(spec, 24, None, "none")
    with pytest.raises(ConfigError, match="no width multiplier"):
        build_backbone(spec, 32, 0.5, "none")


def test_edgetl_form_equals_stock_vgg16_with_preprocess_input(keras):
    """Pixels -> contract -> edgetl VGG16 == pixels -> ``vgg16.preprocess_input`` (BGR, caffe means) -> stock VGG16."""
    from edgetl.ml.backbones.vgg import stock_vgg16, to_rgb_form

    keras.utils.set_random_seed(0)
    stock = stock_vgg16(32)
    model = to_rgb_form(stock)
    contract = BACKBONES.get("vgg16").contract(32)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    expected = stock.predict_on_batch(keras.applications.vgg16.preprocess_input(pixels.astype(np.float32)))
    got = model.predict_on_batch(contract.normalize(pixels))
    assert np.abs(expected).max() > 0.1  # a real comparison, not of vanishing activations
    assert np.abs(expected - got).max() < 1e-4 * np.abs(expected).max()  # seen: 7e-7 of the scale
    # The kernel flip is what makes it so: the stock graph fed the contract (RGB) is off by O(1).
    unflipped = stock.predict_on_batch(contract.normalize(pixels))
    assert np.abs(expected - unflipped).max() > 0.05 * np.abs(expected).max()
    # Same layers, same weights except block1_conv1's input channels, reversed.
    assert [layer.name for layer in model.layers] == [layer.name for layer in stock.layers]
    kernel = stock.get_layer("block1_conv1").get_weights()[0]
    assert np.array_equal(model.get_layer("block1_conv1").get_weights()[0], kernel[:, :, ::-1, :])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_layer("block5_conv3").get_weights(), stock.get_layer("block5_conv3").get_weights(), strict=True))


def test_offline_imagenet_weights_give_one_line_naming_the_file(monkeypatch, tmp_path):
    from edgetl.ml.backbones import spec as spec_module

    monkeypatch.setattr(spec_module, "KERAS_CACHE", tmp_path)
    monkeypatch.setattr("edgetl.ml.backbones.KERAS_CACHE", tmp_path)
    spec = BACKBONES.get("vgg16")

    def offline(**_):  # what Keras raises when the fetch fails (no network here: the real one fails the same way)
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] Temporary failure in name resolution")

    with pytest.raises(ConfigError) as info:
        build_backbone(dataclasses.replace(spec, builder=offline), 32, None, "imagenet")
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "--weights none" in message and "\n" not in message


def test_head_units_empty_builds_the_plain_head_graph(keras):
    """``head_units = []`` (the default): the same graph, layer for layer, as the head before the option existed."""
    spec = BACKBONES.get("mobilenet_v2")
    keras.backend.clear_session()  # the same automatic names (input_1, ...) for both graphs
    model = build_classifier(spec, 4, 32, 0.35, "none").model
    keras.backend.clear_session()
    base = build_backbone(spec, 32, 0.35, "none").model
    x = keras.layers.GlobalAveragePooling2D(name="edgetl_pool")(base.output)
    x = keras.layers.Dropout(0.2, name="edgetl_dropout")(x)
    reference = keras.Model(base.input, keras.layers.Dense(4, activation="softmax", name="edgetl_logits")(x), name="edgetl_mobilenet_v2")
    assert model.get_config() == reference.get_config()
    assert [layer.name for layer in model.layers[-3:]] == list(HEAD_LAYERS)


def test_hidden_layers_are_head_in_every_phase(vgg_classifier):
    from edgetl.ml.phases import backbone_layers, freeze_backbone, unfreeze_index, unfreeze_top

    model, _ = vgg_classifier
    assert [layer.name for layer in model.layers[-4:]] == ["edgetl_pool", "edgetl_hidden_1", "edgetl_dropout", "edgetl_logits"]
    hidden = model.get_layer("edgetl_hidden_1")
    assert hidden.units == 16 and hidden.activation.__name__ == "relu"
    assert is_head_layer("edgetl_hidden_12") and not is_head_layer("edgetl_hidden_") and not is_head_layer("block5_conv1")
    assert "edgetl_hidden_1" not in {layer.name for layer in backbone_layers(model)}

    freeze_backbone(model)
    assert {w.name.split("/")[0] for w in model.trainable_weights} == {"edgetl_hidden_1", "edgetl_logits"}

    spec = BACKBONES.get("vgg16")
    config = tiny_config("x", model={"name": "vgg16", "weights": "none"}, train={"unfreeze_from": "block5_conv1"})
    trainable = unfreeze_top(model, unfreeze_index(model, spec, config), keep_batchnorm_frozen=True)
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]  # the top block, nothing nearer the input
    assert {w.name.split("/")[0] for w in model.trainable_weights} == {"block5_conv1", "block5_conv2", "block5_conv3", "edgetl_hidden_1", "edgetl_logits"}
    config = tiny_config("x", model={"name": "vgg16", "weights": "none"}, train={"unfreeze_blocks": 1})
    assert backbone_layers(model)[unfreeze_index(model, spec, config)].name == "block5_conv1"


def test_head_with_hidden_units_trains_on_cached_features(vgg_classifier, monkeypatch):
    """Phase 1 on cached features rebuilds the head with its hidden layer; the backbone stays as it was,
    and the optimizer is the configured one (RMSprop, the tutorial's)."""
    from edgetl.ml import phases
    from edgetl.ml.model_io import predict_pixels

    model, contract = vgg_classifier
    phases.freeze_backbone(model)
    made = []
    original = phases.make_optimizer
    monkeypatch.setattr(phases, "make_optimizer", lambda name, lr: made.append(original(name, lr)) or made[-1])
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    split = _split()
    config = tiny_config("x", model={"name": "vgg16", "weights": "none", "head_units": [16]}, train={"head_epochs": 2, "head_lr": 1e-3, "head_optimizer": "rmsprop"})
    history = phases.train_head_on_features(model, split, contract, config, lambda *a: None)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert [type(o).__name__ for o in made] == ["RMSprop"]
    changed = {name for name, weights in before.items() if not all(np.array_equal(a, b) for a, b in zip(weights, model.get_layer(name).get_weights(), strict=True))}
    assert changed == {"edgetl_hidden_1", "edgetl_logits"}
    probs = predict_pixels(model, split.val.x, contract)  # the full model uses the trained head
    assert probs.shape == (9, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def _tiny_classifier(keras):
    from edgetl.core.contract import PreprocessContract

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="edgetl_pool")(x)
    x = keras.layers.Dense(8, activation="relu", name="edgetl_hidden_1")(x)
    x = keras.layers.Dropout(0.2, name="edgetl_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="edgetl_logits")(x)), PreprocessContract(input_size=16)


@pytest.mark.parametrize(
    ("task", "setting", "expected"),
    [
        ("phase 1 (head)", {"head_optimizer": "rmsprop"}, ("RMSprop", None)),
        ("phase 2 (fine-tune)", {"fine_tune_optimizer": "sgd"}, ("SGD", 0.9)),
        ("phase 3 (clean)", {"fine_tune_optimizer": "sgd", "head_optimizer": "rmsprop"}, ("SGD", 0.9)),
        ("phase 2 (fine-tune)", {}, ("Adam", None)),  # the default: today's behaviour
        ("QAT", {"fine_tune_optimizer": "sgd", "head_optimizer": "rmsprop"}, ("Adam", None)),
    ],
)
def test_each_phase_compiles_its_configured_optimizer(keras, task, setting, expected):
    from edgetl.ml.phases import fit_on_images

    model, contract = _tiny_classifier(keras)
    config = tiny_config("x", train=setting)
    history = fit_on_images(model, _split(16), contract, config, lr=1e-3, epochs=1, augment=False, task=task, progress=lambda *a: None)
    assert len(history["loss"]) == 1
    kind, momentum = expected
    assert type(model.optimizer).__name__ == kind
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    if momentum is not None:
        assert float(model.optimizer.momentum) == pytest.approx(momentum)


def test_seed_vgg16_recipe_is_the_tutorials(tmp_path):
    from edgetl.pipeline.config import resolve_config

    config = resolve_config(REPO / "models" / "seed_vgg16.toml", {})
    assert config.model.name == "vgg16" and config.model.weights == "imagenet" and config.model.input_size == 224
    assert config.model.head_units == [1024]
    assert (config.train.head_optimizer, config.train.fine_tune_optimizer) == ("rmsprop", "sgd")
    assert config.train.fine_tune_lr is not None and config.train.fine_tune_lr <= 1e-3  # SGD at a low rate
    depth = (config.train.unfreeze_blocks, config.train.unfreeze_from)
    assert depth in ((1, None), (None, "block5_conv1"))
    text = (REPO / "models" / "seed_vgg16.toml").read_text()
    assert "model.layers[:" in text  # the comment on the one deliberate difference from the tutorial's code


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"model": {"head_units": [0]}}, "model.head_units"),
        ({"model": {"head_units": 1024}}, "model.head_units"),
        ({"model": {"head_units": [True]}}, "model.head_units"),
        ({"train": {"head_optimizer": "adagrad"}}, "train.head_optimizer"),
        ({"train": {"fine_tune_optimizer": "SGD!"}}, "train.fine_tune_optimizer"),
    ],
)
def test_bad_head_and_optimizer_settings_are_named(section, fragment):
    from edgetl.core.config import validate

    with pytest.raises(ConfigError) as info:
        validate(section, "edgetl.toml")
    assert fragment in str(info.value) and "\n" not in str(info.value)
