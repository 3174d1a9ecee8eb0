"""Freeze-then-unfreeze: which layers train in each phase, BatchNorm, the head's loss, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetl.core.errors import ConfigError
from edgetl.ml.backbones import build_classifier
from edgetl.ml.backbones.spec import BACKBONES, HEAD_LAYERS
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def keras():
    from edgetl.ml._keras import keras as get_keras

    return get_keras()


@pytest.fixture(scope="module")
def pretrained_weights(tmp_path_factory, keras):
    """A no-top MobileNetV2 weights file, standing in for downloaded ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "mnv2_035_32_no_top.h5"
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    rng = np.random.default_rng(0)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # non-trivial statistics to preserve
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(rng.normal(0, 0.1, mean.shape).astype("float32"))
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
    base.save_weights(path)
    return path


def _classifier():
    return build_classifier(BACKBONES.get("mobilenet_v2"), 4, 32, 0.35, "none").model


def test_classifier_is_one_flat_graph_with_named_head(keras):
    model = _classifier()
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert [layer.name for layer in model.layers[-3:]] == list(HEAD_LAYERS)
    assert model.output_shape == (None, 4)


def test_phase1_trains_only_the_head(keras):
    from edgetl.ml.phases import freeze_backbone

    model = _classifier()
    freeze_backbone(model)
    trainable_layers = {w.name.split("/")[0] for w in model.trainable_weights}
    assert trainable_layers == {"edgetl_logits"}


def test_phase2_unfreezes_default_block_and_keeps_batchnorm_frozen(keras):
    from edgetl.ml.phases import backbone_layers, unfreeze_index, unfreeze_top

    spec = BACKBONES.get("mobilenet_v2")
    model = _classifier()
    config = tiny_config("unused", model={"weights": "imagenet"})
    start = unfreeze_index(model, spec, config)
    layers = backbone_layers(model)
    assert layers[start].name == spec.unfreeze_from
    trainable = unfreeze_top(model, start, keep_batchnorm_frozen=True)
    assert trainable and "block_12_project" not in trainable and "Conv_1" in trainable
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
    for layer in layers[:start]:
        assert not layer.trainable, layer.name


def test_unfreeze_count_and_name_options(keras):
    from edgetl.ml.phases import backbone_layers, unfreeze_index

    spec = BACKBONES.get("mobilenet_v2")
    model = _classifier()
    layers = backbone_layers(model)
    assert unfreeze_index(model, spec, tiny_config("x", model={"weights": "imagenet"}, train={"unfreeze": 10})) == len(layers) - 10
    assert layers[unfreeze_index(model, spec, tiny_config("x", train={"unfreeze_from": "block_15_expand"}))].name == "block_15_expand"
    with pytest.raises(ConfigError, match="block_99_expand"):
        unfreeze_index(model, spec, tiny_config("x", train={"unfreeze_from": "block_99_expand"}))
    with pytest.raises(ConfigError, match="give only one of"):  # refused when the config is read
        tiny_config("x", train={"unfreeze": 3, "unfreeze_from": "Conv_1"})


def test_from_scratch_trains_everything(keras):
    from edgetl.ml.phases import unfreeze_index

    model = _classifier()
    assert unfreeze_index(model, BACKBONES.get("mobilenet_v2"), tiny_config("x")) == 0


def test_head_loss_falls_and_run_folder_is_complete(trained_run):
    history = trained_run.history
    head_loss = [loss for loss, phase in zip(history["loss"], history["phase"], strict=True) if phase == "head"]
    assert len(head_loss) == 3 and head_loss[-1] < head_loss[0]
    assert "fine_tune" in history["phase"]
    out = trained_run.out_dir
    for name in ("model.keras", "labels.txt", "history.json", "training_curves.png", "edgetl.json"):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text().split() == ["circle", "square", "star", "triangle"]
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    meta = json.loads((out / "edgetl.json").read_text())
    assert meta["kind"] == "keras-float" and meta["preprocessing"]["input_size"] == 32
    assert meta["class_names"] == trained_run.class_names
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cosine_schedule_anneals_to_a_hundredth():
    from edgetl.ml.phases import cosine_lr

    rate = cosine_lr(2e-3, 50)
    rates = [rate(e) for e in range(50)]
    assert rates[0] == pytest.approx(2e-3) and rates[-1] == pytest.approx(2e-5)
    assert rates[25] == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 25 / 49))))
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert cosine_lr(1e-3, 1)(0) == pytest.approx(1e-3)


def test_schedule_is_plateau_unless_cosine_is_asked_for():
    from edgetl.core.config import TrainConfig
    from edgetl.core.types import LRSchedule

    assert TrainConfig().schedule is LRSchedule.plateau
    assert tiny_config("x", train={"schedule": "plateau"}).train.schedule is LRSchedule.plateau
    assert tiny_config("x", train={"schedule": "cosine"}).train.schedule is LRSchedule.cosine
    with pytest.raises(ConfigError, match="schedule"):
        tiny_config("x", train={"schedule": "linear"})


def test_from_scratch_training_followed_the_cosine_schedule(trained_run):
    """The real run (weights=none, 30 phase-2 epochs at 3e-3) stepped its optimizer down the cosine."""
    from edgetl.ml.phases import cosine_lr

    used = trained_run.history["lr"]
    expected = [cosine_lr(3e-3, 30)(epoch) for epoch in range(len(used))]
    assert len(used) >= 2 and np.allclose(used, expected, rtol=1e-4)


def _copy_of(model, keras):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _batchnorm_stats(model, keras) -> list[np.ndarray]:
    return [w.numpy().copy() for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) for w in (layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("lr", [1e-4, 1.0])
def test_clean_phase_keeps_batchnorm_statistics_and_never_raises_validation_loss(trained_run, keras, lr):
    """Phase 3 trains with BatchNorm in inference mode and keeps its epochs only if validation loss
    falls; at a learning rate of 1.0 the epochs diverge and the incoming weights come back intact."""
    from edgetl.ml.phases import finish_clean, validation_loss

    model = _copy_of(trained_run.model, keras)
    for layer in model.layers:  # as after a from-scratch phase 2: everything trainable, BN too
        layer.trainable = True
    weights, stats = model.get_weights(), _batchnorm_stats(model, keras)
    config = tiny_config("x", train={"clean_epochs": 2, "clean_lr": lr})
    before = validation_loss(model, trained_run.split, trained_run.contract, 64)
    history, summary = finish_clean(model, trained_run.split, trained_run.contract, config, lambda *a: None)
    assert len(history["loss"]) == 2 and summary["lr"] == lr
    assert summary["val_loss_before"] == pytest.approx(before, rel=1e-6)
    assert summary["val_loss_after"] <= before
    assert all(np.array_equal(a, b) for a, b in zip(stats, _batchnorm_stats(model, keras), strict=True)), "BatchNorm statistics moved"
    assert all(layer.trainable for layer in model.layers), "trainable flags not restored"
    unchanged = all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    assert unchanged is not summary["kept"]
    if lr == 1.0:
        assert min(history["val_loss"]) > before and not summary["kept"]


def test_clean_phase_follows_an_augmented_phase_2(shapes_dir, tmp_path):
    """train() ends with phase 3 after augmented fine-tuning, at phase 2's rate / 10, and records it;
    the shared un-augmented run has no phase 3."""
    from edgetl.ml.train import train

    config = tiny_config(shapes_dir, train={"head_epochs": 1, "fine_tune_epochs": 2, "augment": True, "clean_epochs": 1, "schedule": "plateau"})
    result = train(config, tmp_path / "run")
    assert result.history["phase"] == ["head", "fine_tune", "fine_tune", "clean"]
    meta = json.loads((tmp_path / "run" / "edgetl.json").read_text())
    assert meta["phase3"]["lr"] == pytest.approx(3e-4) and meta["phase3"]["epochs"] == 1
    assert meta["phase3"]["val_loss_after"] <= meta["phase3"]["val_loss_before"]
    assert "phase3_s" in meta["timings_s"]


def test_no_clean_phase_without_augmentation(trained_run):
    assert "clean" not in trained_run.history["phase"] and trained_run.phase3 is None


def test_saved_model_reloads_with_same_outputs(trained_run):
    from edgetl.ml.model_io import load_float_model, predict_pixels

    reloaded = load_float_model(trained_run.out_dir)
    pixels = trained_run.split.val.x[:8]
    a = predict_pixels(trained_run.model, pixels, trained_run.contract)
    b = predict_pixels(reloaded, pixels, trained_run.contract)
    assert np.allclose(a, b, atol=1e-5)


def test_pretrained_batchnorm_statistics_survive_fine_tuning(pretrained_weights, shapes_dir, tmp_path, keras):
    """With --weights PATH, phase 2 must not touch BatchNorm statistics (inference mode)."""
    from edgetl.ml.train import train

    config = tiny_config(shapes_dir, model={"weights": str(pretrained_weights)}, train={"head_epochs": 1, "fine_tune_epochs": 1, "unfreeze": 30})
    result = train(config, tmp_path / "run")
    reference = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=str(pretrained_weights))
    checked = 0
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            tuned = result.model.get_layer(layer.name)
            assert np.array_equal(tuned.moving_mean.numpy(), layer.moving_mean.numpy()), layer.name
            assert np.array_equal(tuned.moving_variance.numpy(), layer.moving_variance.numpy()), layer.name
            checked += 1
    assert checked == 52
    conv = result.model.get_layer("Conv_1")  # inside the unfrozen top: its weights moved
    assert not np.array_equal(conv.get_weights()[0], reference.get_layer("Conv_1").get_weights()[0])
    first = result.model.get_layer("Conv1")  # below it: untouched
    assert np.array_equal(first.get_weights()[0], reference.get_layer("Conv1").get_weights()[0])


def test_batchnorm_reestimation_matches_batch_statistics(keras):
    """After re-estimation on one batch, inference mode reproduces training mode on it."""
    from edgetl.core.contract import PreprocessContract
    from edgetl.ml.phases import reestimate_batchnorm

    model = _classifier()
    pixels = np.random.default_rng(0).integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    contract = PreprocessContract(input_size=32)
    x = contract.normalize(pixels)
    before = model(x, training=False).numpy()
    reestimate_batchnorm(model, pixels, contract, batch_size=48)
    after = model(x, training=False).numpy()
    batch_mode = model.get_layer("edgetl_logits")(model.get_layer("edgetl_pool")(_backbone_out(model, x, keras))).numpy()
    # Moving variance is Bessel-corrected, so not exact; but far closer than the initial statistics.
    assert np.abs(after - batch_mode).mean() < 0.25 * np.abs(before - batch_mode).mean()


def _backbone_out(model, x, keras):
    backbone = keras.Model(model.input, model.get_layer("out_relu").output)
    return backbone(x, training=True)


def test_unknown_weights_file_is_a_config_error(shapes_dir, tmp_path):
    from edgetl.ml.train import train

    with pytest.raises(ConfigError, match="does not exist"):
        train(tiny_config(shapes_dir, model={"weights": str(tmp_path / "missing.h5")}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_imagenet_weights_offline_error_names_file_and_cache(shapes_dir, tmp_path, monkeypatch):
    """No network and no cached file: one line naming the file, ~/.keras/models and the options."""
    from edgetl.ml.train import train

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Keras' downloader honours these; an unroutable proxy makes the download fail fast and offline.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as info:
        train(tiny_config(shapes_dir, model={"weights": "imagenet"}), tmp_path / "run")
    message = str(info.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in message
    assert "~/.keras/models" in message and "--weights none" in message and "\n" not in message
