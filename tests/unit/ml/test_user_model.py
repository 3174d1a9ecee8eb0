"""``--model path/to/model.keras``: the user's own Keras classifier or backbone, opened safely.

Real tf_keras models saved to real files; the head is found (or added), nested models are inlined,
input scaling is folded into the contract, code in the file is refused, and QAT either finds a
recipe or names the layer it cannot quantize.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgetl.core.errors import ArtifactError, ConfigError, ExportError


@pytest.fixture(scope="module")
def k():
    from edgetl.ml._keras import keras

    return keras()


def _tiny_backbone(k, name: str = "tinynet", extra=None):
    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(8, 3, strides=2, name="block_1_conv")(inputs)
    x = k.layers.BatchNormalization(name="block_1_bn")(x)
    x = k.layers.ReLU(name="block_1_relu")(x)
    x = k.layers.Conv2D(16, 3, strides=2, name="block_2_conv")(x)
    if extra is not None:
        x = extra(x)
    x = k.layers.ReLU(name="block_2_relu")(x)
    return k.Model(inputs, x, name=name)


@pytest.fixture(scope="module")
def classifier_file(k, tmp_path_factory):
    """The usual hand-written Keras classifier: Sequential(Rescaling, nested backbone, pool, dropout, dense)."""
    inner = _tiny_backbone(k)
    model = k.Sequential([
        k.Input((32, 32, 3)), k.layers.Rescaling(1 / 255.0), inner,
        k.layers.GlobalAveragePooling2D(name="their_pool"), k.layers.Dropout(0.1, name="their_dropout"),
        k.layers.Dense(7, activation="softmax", name="their_logits"),
    ])
    path = tmp_path_factory.mktemp("user") / "classifier.keras"
    model.save(path)
    return path, inner


def test_classifier_head_found_nested_model_inlined_scaling_folded(k, classifier_file):
    from edgetl.ml.user_model import get_backbone

    path, inner = classifier_file
    spec = get_backbone(str(path))
    assert spec.default_input_size == 32
    assert spec.extra["head_removed"] == ["their_logits", "their_dropout", "their_pool"]
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == pytest.approx((255.0, 255.0, 255.0))
    assert spec.qat_recipe == "plain" and spec.extra["qat_covered"]
    built = spec.builder(input_size=32, alpha=None, weights=None)
    model = built.model
    # one flat graph of plain layers, no nested model, no scaling layer left
    assert not any(isinstance(layer, k.Model) for layer in model.layers)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "ReLU"]
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    expected = inner(pixels / 255.0).numpy()
    got = model(built.contract.normalize(pixels)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_backbone_file_gets_a_head_and_the_assumed_scaling_is_said(k, tmp_path, caplog):
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.user_model import get_backbone

    path = tmp_path / "backbone.keras"
    _tiny_backbone(k).save(path)
    with caplog.at_level(logging.WARNING, logger="edgetl.ml.user_model"):
        spec = get_backbone(str(path))
    assert spec.extra["head_removed"] == []
    assert spec.mean == (127.5, 127.5, 127.5)
    assert any("no input scaling layer" in r.getMessage() and "[-1, 1]" in r.getMessage() for r in caplog.records)
    model, contract = build_classifier(spec, 4, 32, None, "imagenet")
    assert model.output.shape[-1] == 4
    assert contract.input_size == 32
    assert spec.unfreeze_from in [layer.name for layer in model.layers]


def test_lambda_in_the_file_is_refused_before_it_runs(k, tmp_path):
    from edgetl.ml.user_model import get_backbone

    marker = tmp_path / "ran"
    model = k.Sequential([
        k.Input((32, 32, 3)), k.layers.Lambda(lambda t: t * 2, name="sneaky"), k.layers.Conv2D(4, 3),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(2),
    ])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ArtifactError, match="sneaky") as err:
        get_backbone(str(path))
    assert "--trust-model" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_missing_file_and_unknown_name_are_one_line_config_errors(tmp_path):
    from edgetl.ml.user_model import get_backbone, is_model_path

    with pytest.raises(ConfigError, match="does not exist"):
        get_backbone(str(tmp_path / "nope.keras"))
    with pytest.raises(ConfigError, match="mobilenet_v2"):
        get_backbone("not_a_backbone")
    assert is_model_path("models/net.keras") and is_model_path("net.h5") and not is_model_path("mobilenet_v2")
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ConfigError, match="SavedModel folder.*model.save\\('model.keras'\\)"):
        get_backbone(str(saved))


def test_head_with_a_layer_edgetl_cannot_cut_is_named(k, tmp_path):
    from edgetl.ml.user_model import get_backbone

    inputs = k.Input((32, 32, 3))
    x = _tiny_backbone(k)(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    d = k.layers.Dense(8, name="hidden")(x)
    out = k.layers.Multiply(name="odd_gate")([d, d])
    path = tmp_path / "odd.keras"
    k.Model(inputs, out).save(path)
    with pytest.raises(ConfigError, match="odd_gate"):
        get_backbone(str(path))


def test_non_rgb_or_non_square_input_and_fixed_size_mismatch_are_refused(k, tmp_path):
    from edgetl.ml.user_model import get_backbone

    inputs = k.Input((32, 24, 3))
    path = tmp_path / "wide.keras"
    k.Model(inputs, k.layers.Conv2D(4, 3)(inputs)).save(path)
    with pytest.raises(ConfigError, match="32x24"):
        get_backbone(str(path))
    square = tmp_path / "square.keras"
    _tiny_backbone(k).save(square)
    with pytest.raises(ConfigError, match="--input-size 32"):
        get_backbone(str(square), input_size=64)


def test_qat_refuses_a_layer_no_recipe_covers_by_name(k, tmp_path):
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.quantize import quantize_model
    from edgetl.ml.user_model import get_backbone

    path = tmp_path / "layernorm.keras"
    _tiny_backbone(k, extra=k.layers.LayerNormalization(name="odd_norm")).save(path)
    spec = get_backbone(str(path))
    assert spec.extra["qat_covered"] is False
    model, _ = build_classifier(spec, 3, 32, None, "imagenet")
    with pytest.raises(ExportError, match="odd_norm") as err:
        quantize_model(model, spec.qat_recipe)
    assert "--mode ptq" in str(err.value)


def _shapes_classifier(k, path, shapes_dir=None, size: int = 32):
    """A user's classifier written the usual Keras way (nested, with its own scaling), trained by them
    for a few epochs on the shapes (when ``shapes_dir`` is given) with a 10-class head of their own."""
    inputs = k.Input((size, size, 3))
    x = inputs
    for index, filters in enumerate((16, 32, 32), start=1):
        x = k.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"block_{index}_conv")(x)
        x = k.layers.BatchNormalization(name=f"block_{index}_bn")(x)
        x = k.layers.ReLU(name=f"block_{index}_relu")(x)
    inner = k.Model(inputs, x, name="shapesnet")
    model = k.Sequential([
        k.Input((size, size, 3)), k.layers.Rescaling(1 / 127.5, offset=-1.0), inner,
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(10, activation="softmax"),
    ])
    if shapes_dir is not None:
        from edgetl.data.split import load_split
        from tests.helpers import tiny_config

        k.utils.set_random_seed(0)
        split = load_split(tiny_config(shapes_dir).data, size)
        model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
        model.fit(split.train.x.astype("float32"), split.train.y, epochs=20, batch_size=16, verbose=0)
    model.save(path)
    return inner


def test_train_fine_tunes_the_users_model_with_its_weights_and_exports(k, shapes_dir, tmp_path):
    """``--model FILE`` end to end in the library: the file's weights are the start, the frozen part
    stays exactly the file's, the top trains, and the result exports to a TFLite model that runs."""
    from edgetl.core.metadata import ArtifactMetadata
    from edgetl.ml.train import train
    from edgetl.pipeline.api import export_model
    from tests.helpers import tiny_config

    path = tmp_path / "mine.keras"
    inner = _shapes_classifier(k, path, shapes_dir)
    config = tiny_config(
        shapes_dir, model={"name": str(path), "alpha": None, "input_size": None, "weights": "imagenet"},
        train={"head_epochs": 5, "fine_tune_epochs": 3},
    )
    result = train(config, tmp_path / "run")
    model = result.model
    assert model.output.shape[-1] == len(result.class_names) == 4
    assert result.contract.mean == pytest.approx((127.5,) * 3) and result.contract.std == pytest.approx((127.5,) * 3)
    file_kernel = inner.get_layer("block_1_conv").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("block_1_conv").get_weights()[0], file_kernel)  # frozen: the file's weights
    assert not np.array_equal(model.get_layer("block_3_conv").get_weights()[0], inner.get_layer("block_3_conv").get_weights()[0])
    meta = ArtifactMetadata.read(result.out_dir)
    assert meta.backbone == str(path.resolve())
    artifact, exported = export_model(result.out_dir, "tflite-fp32", data=shapes_dir, out=tmp_path / "fp32")
    assert artifact.is_file(), exported["accuracy"]
    assert result.val_accuracy >= 0.35, result.val_accuracy  # chance: 0.25 (the user model itself: about 0.43)
    assert exported["accuracy"]["artifact_top1"] == pytest.approx(result.val_accuracy, abs=0.02)


def test_a_changed_model_file_is_a_new_training_stage(k, shapes_dir, tmp_path):
    from edgetl.core.fingerprint import stage_fingerprints
    from tests.helpers import tiny_config

    path = tmp_path / "mine.keras"
    _shapes_classifier(k, path)
    config = tiny_config(shapes_dir, model={"name": str(path), "alpha": None, "input_size": None, "weights": "imagenet"})
    before = stage_fingerprints(config)["train"]
    _shapes_classifier(k, path)  # same name, new weights
    assert stage_fingerprints(config)["train"] != before


@pytest.mark.slow
def test_cli_build_int8_from_the_users_model(k, shapes_dir, tmp_path):
    """``edgetl build --model mine.keras --target tflite-int8``: QAT with the recipe found, int8 export, verified."""
    import json

    from tests.helpers import run_cli

    path = tmp_path / "mine.keras"
    _shapes_classifier(k, path)
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        '[train]\nhead_epochs = 2\nfine_tune_epochs = 3\naugment = false\n[qat]\nepochs = 1\n'
        '[export]\nrepresentative_samples = 16\n[bench]\nwarmup = 1\nruns = 3\nthreads = [1]\n'
    )
    result = run_cli("build", "--model", path, "--data", shapes_dir, "--target", "tflite-int8", "--config", toml, "--out", tmp_path / "out", "--name", "mine")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "mine" / "tflite-int8" / "edgetl.json").read_text())
    assert meta["backbone"] == str(path.resolve())
    assert meta["inputs"][0]["dtype"] == "int8" and meta["outputs"][0]["dtype"] == "int8"
    assert meta["quantization_mode"] in ("qat", "ptq") and meta["accuracy"]["int8_choice"]
    assert (tmp_path / "out" / "mine" / "tflite-int8" / "model.tflite").is_file()
