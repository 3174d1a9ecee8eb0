"""The CLI: instant help, one-line errors with non-zero exits, and the commands on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgetl.cli.app import app
from tests.helpers import assert_one_line_error

runner = CliRunner()
COMMANDS = ["train", "qat", "export", "eval", "build", "demo", "backbones", "data", "data check"]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_does_not_import_tensorflow():
    code = "import sys; import edgetl.cli.app; assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_option_help_explains_shared_options():
    out = run("build", "--help").output
    for option in ("--data", "--model", "--input-size", "--weights", "--out", "--target", "--config", "--dry-run", "--force"):
        assert option in out


def _image(path: Path, mode="RGB", size=(20, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode).save(path)


@pytest.fixture()
def two_classes(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            _image(tmp_path / "two" / cls / f"{i}.png")
    return tmp_path / "two"


def test_data_check_reports_everything(two_classes):
    (two_classes / "a" / "broken.png").write_text("not a png")
    _image(two_classes / "b" / "gray.png", mode="L", size=(31, 17))
    result = run("data", "check", two_classes, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classes"] == ["a", "b"] and report["counts"] == {"a": 3, "b": 4}
    assert report["modes"]["L"] == 1 and "31x17" in report["sizes"]
    assert [Path(u["path"]).name for u in report["unreadable"]] == ["broken.png"]
    text = run("data", "check", two_classes)
    assert text.exit_code == 0 and "broken.png" in text.output and "imbalance" in text.output


@pytest.mark.parametrize(
    "setup, fragments",
    [
        ("missing", ["does not exist"]),
        ("flat", ["subfolder"]),
        ("empty_class", ["b"]),
        ("single", ["at least 2"]),
    ],
)
def test_bad_data_folders(tmp_path, setup, fragments):
    root = tmp_path / "d"
    if setup == "flat":
        _image(root / "x.png")
    elif setup == "empty_class":
        _image(root / "a" / "1.png")
        _image(root / "a" / "2.png")
        (root / "b").mkdir()
    elif setup == "single":
        _image(root / "a" / "1.png")
    result = run("train", "--data", root, "--model", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--out", tmp_path / "run")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_strict_fails_on_corrupt_file(two_classes, tmp_path):
    (two_classes / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run("train", "--data", two_classes, "--weights", "none", "--input-size", "32", "--strict", "--out", tmp_path / "run")
    assert_one_line_error(result, "broken.jpg")


def test_unknown_backbone_and_target(two_classes, tmp_path):
    assert_one_line_error(run("train", "--data", two_classes, "--model", "resnet9000"), "resnet9000", "mobilenet_v2")
    assert_one_line_error(run("build", "--data", two_classes, "--target", "coreml", "--weights", "none"), "coreml", "tflite-int8")
    assert_one_line_error(run("build", "--data", two_classes, "--input-size", "16", "--weights", "none"), "16", "at least 32")
    assert_one_line_error(run("build", "--data", two_classes, "--alpha", "0.9", "--weights", "none"), "0.9", "0.35")
    assert_one_line_error(run("train", "--data", two_classes, "--clean-epochs", "-1", "--weights", "none"), "clean_epochs")


def test_bad_toml(two_classes, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    assert_one_line_error(run("build", "--data", two_classes, "--config", bad), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nlearning_rate = 1\n")
    assert_one_line_error(run("build", "--data", two_classes, "--config", unknown), "train.learning_rate: unknown key")


def test_dry_run_prints_resolved_config(two_classes, tmp_path):
    toml = tmp_path / "edgetl.toml"
    toml.write_text('target = "tflite-fp16"\n[model]\nalpha = 0.5\n[qat]\nepochs = 5\n')
    result = run("build", "--data", two_classes, "--config", toml, "--alpha", "0.35", "--weights", "none", "--clean-epochs", "0", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["target"] == "tflite-fp16" and resolved["model"]["alpha"] == 0.35
    assert resolved["train"]["clean_epochs"] == 0
    assert resolved["qat"]["epochs"] == 5 and resolved["model"]["input_size"] == 224
    assert not (tmp_path / "build").exists()


def test_train_refuses_folder_with_other_files(two_classes, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    result = run("train", "--data", two_classes, "--weights", "none", "--input-size", "32", "--out", out, "--head-epochs", "0", "--fine-tune-epochs", "0", "--min-images", "1")
    assert_one_line_error(result, "--force")
    assert (out / "thesis.docx").read_text() == "precious"


def test_eval_cli_json(int8_export, shapes_dir):
    result = run("eval", int8_export[0], "--data", shapes_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"top1", "top5", "per_class", "confusion"} <= set(data)
    table = run("eval", int8_export[0].parent, "--data", shapes_dir)
    assert table.exit_code == 0 and "top-1" in table.output and "confusion" in table.output


def test_eval_cli_errors(tmp_path, shapes_dir, int8_export):
    assert_one_line_error(run("eval", tmp_path / "nope.tflite", "--data", shapes_dir), "does not exist")
    (tmp_path / "edgetl.json").write_text("{}")
    junk = tmp_path / "junk.tflite"
    junk.write_text("hello")
    assert_one_line_error(run("eval", junk, "--data", shapes_dir), "edgetl.json", "not valid edgetl metadata")
    (tmp_path / "edgetl.json").write_bytes((int8_export[0].parent / "edgetl.json").read_bytes())
    assert_one_line_error(run("eval", junk, "--data", shapes_dir), "junk.tflite")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(int8_export[0].read_bytes()[:5000])
    assert_one_line_error(run("eval", truncated, "--data", shapes_dir), "truncated.tflite")


def test_backbones_lists_registry_with_params_and_macs():
    result = run("backbones")
    assert result.exit_code == 0 and "mobilenet_v2" in result.output
    rows = {r["name"]: r for r in json.loads(run("backbones", "--json").stdout)}
    mnv2 = rows["mobilenet_v2"]
    assert mnv2["params"] == 3_538_984  # keras.applications' published count, with the 1000-class top
    assert abs(mnv2["macs"] - 300e6) / 300e6 < 0.02  # 300M multiply-adds at 224 px (Sandler et al. 2018)
    assert mnv2["default_input_size"] == 224 and "tflite-int8" in mnv2["targets"]
    # Figures keras.applications and the papers publish (same GAP + dense 1000-class top).
    assert rows["efficientnet_b0"]["params"] == 5_330_564 and abs(rows["efficientnet_b0"]["macs"] - 390e6) / 390e6 < 0.02
    assert rows["efficientnet_v2_b0"]["params"] == 7_200_312 and abs(rows["efficientnet_v2_b0"]["macs"] - 720e6) / 720e6 < 0.02
    from edgetl.ml.backbones.spec import BACKBONES

    assert sorted(rows) == BACKBONES.names()
    assert rows["efficientnet_lite0"]["imagenet_weights"] is True and rows["mobilenet_v3_small"]["qat_recipe"] == "mobilenet_v3"
    for name in BACKBONES.names():
        assert name in result.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "mobilenet_v3_small", "--input-size", "16"], ["input size 16", "mobilenet_v3_small", "at least 32"]),
        (["--model", "efficientnet_lite0", "--alpha", "0.5", "--input-size", "32"], ["efficientnet_lite0 has no width multiplier", "drop --alpha"]),
        (["--model", "efficientnet_b7"], ["unknown backbone 'efficientnet_b7'", "efficientnet_lite0", "mobilenet_v3_large"]),
        (["--unfreeze-blocks", "2", "--unfreeze", "5", "--weights", "none"], ["give only one of", "--unfreeze-blocks"]),
    ],
)
def test_bad_backbone_options(two_classes, tmp_path, args, fragments):
    result = run("build", "--data", two_classes, "--out", tmp_path / "b", *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "b").exists()


def test_qat_mode_ptq_writes_calibrated_int8(trained_run, shapes_dir, tmp_path):
    result = run("qat", "--model", trained_run.out_dir, "--mode", "ptq", "--data", shapes_dir, "--out", tmp_path / "ptq", "--samples", "16")
    assert result.exit_code == 0, result.output + result.stderr
    assert "PTQ int8" in result.stdout and "float" in result.stdout
    meta = json.loads((tmp_path / "ptq" / "edgetl.json").read_text())
    assert meta["quantization_mode"] == "ptq" and meta["graph"]["full_integer"]
    assert (tmp_path / "ptq" / "model.tflite").is_file()


def test_qat_refuses_a_model_no_recipe_covers(trained_run, shapes_dir, tmp_path):
    """A user's run folder whose model has an op no QAT recipe knows: one line naming it, nothing written."""
    from edgetl.ml._keras import keras, tf

    k = keras()
    inputs = k.Input((32, 32, 3))
    x = tf().math.multiply(k.layers.Conv2D(8, 3, name="conv")(inputs), 2.0)
    model = k.Model(inputs, k.layers.Dense(len(trained_run.class_names), activation="softmax")(k.layers.GlobalAveragePooling2D()(x)))
    run_dir = tmp_path / "custom"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    (run_dir / "edgetl.json").write_text((trained_run.out_dir / "edgetl.json").read_text())
    bad = next(layer.name for layer in model.layers if type(layer).__name__ == "TFOpLambda")
    result = run("qat", "--model", run_dir, "--data", shapes_dir, "--out", tmp_path / "q")
    assert_one_line_error(result, f"layer {bad!r} (TFOpLambda tf.math.multiply)", "--mode ptq", "quantize_configs")
    assert not (tmp_path / "q").exists()


def test_demo_refuses_fewer_images_per_class_than_training_accepts():
    result = run("demo", "--images-per-class", "5", "--out", "unused-demo-folder")
    assert result.exit_code == 2
    assert "--images-per-class" in result.output and "10" in result.output
    assert not Path("unused-demo-folder").exists()
