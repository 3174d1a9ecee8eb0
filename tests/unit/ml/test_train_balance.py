"""Training on what the data really is: a wrong --data folder is refused, classes and counts are
shown, imbalance is warned about and measured (balanced accuracy), class weights reach the loss,
early stopping says so, and the training flags reach the configuration."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data.split import ImageData, SplitData
from tests.helpers import assert_one_line_error, run_cli, tiny_config

TINY = ["--weights", "none", "--input-size", "32", "--alpha", "0.35"]


def _random_split(counts: tuple[int, ...], val_counts: tuple[int, ...], seed: int = 0) -> SplitData:
    """Noise images: what a model can learn from them is the class frequencies."""
    rng = np.random.default_rng(seed)

    def images(per_class):
        y = np.concatenate([np.full(n, c, np.int64) for c, n in enumerate(per_class)])
        x = rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8)
        return ImageData(x, y, [Path(f"{i}.png") for i in range(len(y))])

    return SplitData(images(counts), images(val_counts), [f"c{i}" for i in range(len(counts))], [])


@pytest.mark.parametrize("command", ["train", "build"])
def test_the_parent_of_the_data_folder_is_refused_before_training(tmp_path, command):
    """`--data edgetl-demo` instead of `edgetl-demo/data`: 'build' (one PNG) against 'data' (every image)."""
    from edgetl.data.synthetic import make_shapes_dataset

    parent = tmp_path / "edgetl-demo"
    make_shapes_dataset(parent / "data", images_per_class=12, image_size=16, shapes=("circle", "square"))
    (parent / "build").mkdir()
    Image.new("RGB", (20, 20)).save(parent / "build" / "training_curves.png")
    out = tmp_path / "out"
    result = run_cli(command, "--data", parent, *TINY, "--out", out)
    assert_one_line_error(result, "'build' has 1 image,", "minimum of 10", str(parent), "--min-images 1", "[data] min_images")
    assert not out.exists() or not [p for p in out.rglob("*") if p.suffix in (".keras", ".tflite")]


def test_training_flags_show_in_help_and_reach_the_config(tmp_path):
    for command in ("train", "build"):
        text = run_cli(command, "--help").output
        for flag in ("--patience", "--lr", "--fine-tune-lr", "--head-epochs", "--fine-tune-epochs", "--clean-epochs", "--min-images", "--class-weights"):
            assert flag in text, (command, flag)
    result = run_cli(
        "build", "--data", tmp_path, "--weights", "none", "--dry-run", "--patience", "7", "--lr", "0.02", "--fine-tune-lr", "0.003",
        "--head-epochs", "2", "--fine-tune-epochs", "9", "--clean-epochs", "1", "--min-images", "4", "--class-weights", "balanced",
    )
    assert result.exit_code == 0, result.output + result.stderr
    resolved = json.loads(result.stdout)
    expected = {"patience": 7, "head_lr": 0.02, "fine_tune_lr": 0.003, "head_epochs": 2, "fine_tune_epochs": 9, "clean_epochs": 1, "class_weights": "balanced"}
    assert {key: resolved["train"][key] for key in expected} == expected
    assert resolved["data"]["min_images"] == 4
    defaults = json.loads(run_cli("build", "--data", tmp_path, "--weights", "none", "--dry-run").stdout)
    assert defaults["train"]["class_weights"] == "none" and defaults["data"]["min_images"] == 10


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--patience", "0"], "--patience"),
        (["--lr", "0"], "--lr"),
        (["--head-lr", "inf"], "--lr"),
        (["--fine-tune-lr", "-1"], "--fine-tune-lr"),
        (["--head-epochs", "-2"], "--head-epochs"),
        (["--fine-tune-epochs", "100000"], "--fine-tune-epochs"),
        (["--min-images", "0"], "--min-images"),
    ],
)
def test_a_bad_training_flag_is_one_line_naming_the_flag(tmp_path, args, flag):
    for command in ("train", "build"):
        assert_one_line_error(run_cli(command, "--data", tmp_path, "--weights", "none", *args), f"command line: {flag} (")


def test_a_bad_class_weights_value_names_the_flag(tmp_path):
    result = run_cli("train", "--data", tmp_path, "--class-weights", "inverse")
    assert result.exit_code != 0 and "--class-weights" in result.output + result.stderr and "balanced" in result.output + result.stderr


def test_extreme_imbalance_is_warned_about_with_the_ratio_classes_and_remedy(caplog):
    from edgetl.ml.train import report_classes

    split = _random_split((200, 10), (50, 2))
    with caplog.at_level(logging.INFO):
        assert report_classes(split, tiny_config("x")) is None
    records = {r.levelno: r.getMessage() for r in caplog.records if r.name.startswith("edgetl")}
    assert records[logging.INFO] == "2 classes (training/validation images): c0 200/50, c1 10/2"
    warning = records[logging.WARNING]
    assert "extremely imbalanced, 21:1" in warning and "'c0' with 250 images" in warning and "'c1' with 12" in warning
    assert "--class-weights balanced" in warning and "balanced accuracy" in warning

    caplog.clear()
    with caplog.at_level(logging.INFO):
        weights = report_classes(split, tiny_config("x", train={"class_weights": "balanced"}))
    assert weights == pytest.approx([210 / 400, 210 / 20])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "balanced weights answer the warning"
    assert any("balanced class weights (largest/smallest class 20.8:1): c0 0.525, c1 10.5" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.INFO):
        report_classes(_random_split((30, 10), (8, 2)), tiny_config("x"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "3:1 is not extreme"


def _tiny_classifier(classes: int = 2):
    """A few layers with the head's layer names (what the phases look for), fast to trace and fit."""
    from edgetl.core.contract import PreprocessContract
    from edgetl.ml._keras import keras

    k = keras()
    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = k.layers.GlobalAveragePooling2D(name="edgetl_pool")(x)
    x = k.layers.Dropout(0.2, name="edgetl_dropout")(x)
    outputs = k.layers.Dense(classes, activation="softmax", name="edgetl_logits")(x)
    return k.Model(inputs, outputs), PreprocessContract(input_size=32)


def _head_probabilities(split: SplitData, class_weights: str) -> np.ndarray:
    from edgetl.ml.model_io import predict_pixels
    from edgetl.ml.phases import freeze_backbone, train_head_on_features
    from edgetl.ml.train import set_seed

    set_seed(0)
    model, contract = _tiny_classifier()
    freeze_backbone(model)
    config = tiny_config("x", train={"head_epochs": 6, "head_lr": 1e-2, "class_weights": class_weights})
    history = train_head_on_features(model, split, contract, config, lambda *a: None)
    assert len(history["loss"]) == 6
    return predict_pixels(model, split.train.x, contract)


def test_balanced_class_weights_pull_a_real_fit_towards_the_small_class():
    """The same head, same seed, on noise images 10:1: unweighted, it learns to answer the large
    class; with balanced weights, both classes weigh the same in the loss and it stays near 50/50."""
    split = _random_split((100, 10), (25, 3))
    plain = _head_probabilities(split, "none")[:, 1].mean()
    balanced = _head_probabilities(split, "balanced")[:, 1].mean()
    assert plain < 0.3, plain  # measured: 0.18 (10:1 pulls it from 0.5 towards 1/11)
    assert balanced > plain + 0.1 and abs(balanced - 0.5) < 0.1, (plain, balanced)  # measured: 0.49


def test_early_stopping_is_said_and_the_bar_completes_and_epochs_are_marked(caplog):
    from edgetl.ml._keras import keras
    from edgetl.ml.phases import fit_on_images

    split = _random_split((12, 12), (4, 4))
    model, contract = _tiny_classifier()
    calls = []
    # min_delta so large that only the first epoch counts as progress: a stop after epoch 2 of 5, always
    stopper = keras().callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)
    with caplog.at_level(logging.INFO):
        history = fit_on_images(
            model, split, contract, tiny_config("x"), lr=1e-3, epochs=5, augment=False, task="phase 2 (fine-tune)",
            progress=lambda *a: calls.append(a), callbacks=[stopper],
        )
    assert history["phase_epoch"] == [1, 2] and len(history["loss"]) == 2
    best = int(np.argmin(history["val_loss"]))
    assert history["best"] == [i == best for i in range(2)] and history["discarded"] == [i > best for i in range(2)]
    said = [r.getMessage() for r in caplog.records if "early stopping" in r.getMessage()]
    assert len(said) == 1 and said[0] == (
        f"phase 2 (fine-tune): early stopping after epoch 2 of 5: val_loss did not improve for {1 - best} epochs; restored epoch {best + 1}"
    )
    assert [r.levelno for r in caplog.records if "early stopping" in r.getMessage()] == [logging.INFO]
    assert calls[-1] == ("phase 2 (fine-tune)", 2, 2, "stopped early after epoch 2 of 5"), calls


def test_imbalanced_training_from_the_cli_shows_classes_weights_and_balanced_accuracy(tmp_path):
    """One real tiny run, without -v: the classes line and the class weights are shown, the
    summary gives balanced accuracy, and the run records counts, weights and the epoch markers."""
    from edgetl.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", images_per_class=110, image_size=32, shapes=("circle", "square"), noise=0.0)
    for extra in sorted((data / "square").iterdir())[10:]:
        extra.unlink()
    out = tmp_path / "run"
    result = run_cli(
        "train", "--data", data, *TINY, "--out", out, "--head-epochs", "3", "--fine-tune-epochs", "0", "--clean-epochs", "0",
        "--patience", "1", "--no-augment", "--batch-size", "16", "--val-split", "0.25", "--class-weights", "balanced",
    )
    assert result.exit_code == 0, result.output + result.stderr
    err = " ".join(result.stderr.split())  # rich wraps long log lines
    assert "2 classes (training/validation images): circle 82/28, square 7/3" in err
    assert "balanced class weights (largest/smallest class 11.0:1): circle 0.543, square 6.36" in err
    assert re.search(r"validation top-1 \d+\.\d% \(balanced accuracy \d+\.\d%, classes imbalanced 11\.0:1\)", " ".join(result.stdout.split()))

    meta = json.loads((out / "edgetl.json").read_text())
    assert meta["train_counts"] == [82, 7] and meta["val_counts"] == [28, 3]
    assert meta["class_weights"] == pytest.approx([89 / (2 * 82), 89 / (2 * 7)])
    assert meta["config"]["train"]["class_weights"] == "balanced" and meta["config"]["train"]["patience"] == 1
    assert 0.0 <= meta["val_balanced_accuracy"] <= 1.0

    history = json.loads((out / "history.json").read_text())
    n = len(history["loss"])
    assert all(len(history[key]) == n for key in ("phase", "phase_epoch", "best", "discarded", "val_loss"))
    assert set(history["phase"]) == {"head"}  # phase 2 (a full-network fit, slow to trace) is left to the tests above
    for phase in ("head",):
        rows = [i for i in range(n) if history["phase"][i] == phase]
        assert [history["phase_epoch"][i] for i in rows] == list(range(1, len(rows) + 1))
        best = [i for i in rows if history["best"][i]]
        assert len(best) == 1 and best[0] == min(rows, key=lambda i: history["val_loss"][i])
        assert [history["discarded"][i] for i in rows] == [i > best[0] for i in rows]
