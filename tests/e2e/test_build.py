"""End to end: `edgetl build --target tflite-int8` on a generated image folder, via the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app

runner = CliRunner()

TINY_TOML = """
[model]
alpha = 0.35
input_size = 32
weights = "none"

[data]
val_split = 0.25
seed = 1
batch_size = 16

[train]
head_epochs = 2
fine_tune_epochs = 2
augment = false

[qat]
epochs = 1

[export]
representative_samples = 16

[bench]
warmup = 5
runs = 50
"""


@pytest.fixture(scope="module")
def built(shapes_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = root / "edgetl.toml"
    config.write_text(TINY_TOML)
    args = ["build", "--target", "tflite-int8", "--data", str(shapes_dir), "--model", "mobilenet_v2", "--config", str(config), "--out", str(root / "build")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + result.stderr
    return root, args, result


def test_build_writes_one_complete_folder(built):
    root, _, result = built
    target = root / "build" / "shapes" / "tflite-int8"
    meta = json.loads((target / "edgetl.json").read_text())
    names = {p.name for p in target.iterdir()}
    assert {"edgetl.json", "labels.txt", "model.onnx", "model.tflite", "report.md"} <= names
    assert names - {"edgetl.json", "labels.txt", "model.onnx", "model.tflite", "report.md"} <= set((meta.get("report_files") or {}).values())
    assert meta["inputs"][0]["dtype"] == "int8" and meta["inputs"][0]["shape"][1:] == [32, 32, 3]
    assert meta["outputs"][0]["dtype"] == "int8" and meta["outputs"][0]["scale"] > 0
    assert meta["preprocessing"]["mean"] == [127.5] * 3 and meta["preprocessing"]["channel_order"] == "RGB"
    assert meta["class_names"] == ["circle", "square", "star", "triangle"]
    accuracy = meta["accuracy"]
    for key in ("float_top1", "artifact_top1", "top1_drop", "source_keras_top1", "per_class"):
        assert key in accuracy
    assert accuracy["images"] == 60
    assert meta["size_bytes"] == (target / "model.tflite").stat().st_size
    threads = sorted(entry["threads"] for entry in meta["latency"])
    assert threads[0] == 1 and all(entry["stats"]["runs"] >= 50 for entry in meta["latency"])
    for entry in meta["latency"]:
        s = entry["stats"]
        assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    assert {"tensorflow", "tensorflow-model-optimization", "ai-edge-litert"} <= set(meta["versions"])
    assert meta["config"]["model"]["alpha"] == 0.35 and meta["config"]["qat"]["epochs"] == 1
    report = (target / "report.md").read_text()
    assert "## Accuracy" in report and "p99" in report
    # The better int8 model on the validation split ships (QAT on a tie), and the report says which and why.
    choice = accuracy["int8_choice"]
    assert choice["shipped"] == ("ptq" if choice["ptq_int8_top1"] > choice["qat_int8_top1"] else "qat"), choice
    assert f"{choice['shipped'].upper()} int8 (tflite-int8, LiteRT, shipped)" in report and f"Shipped: {choice['reason']}." in report
    assert accuracy["artifact_top1"] == max(choice["ptq_int8_top1"], choice["qat_int8_top1"])
    assert ".tmp-" not in report and ".tmp-" not in json.dumps(meta)
    assert "- full-integer: yes" in report and "CONV_2D" in report
    assert meta["graph"]["full_integer"] and meta["accuracy"]["top1_agreement_with_float"] >= 0.0
    # PTQ int8 of the float model, kept beside it for the side-by-side comparison.
    ptq = accuracy["ptq_comparison"]
    assert "PTQ int8 (LiteRT)" in report and 0.0 <= ptq["artifact_top1"] <= 1.0
    ptq_meta = json.loads((root / "build" / "shapes" / "ptq-int8" / "edgetl.json").read_text())
    assert ptq_meta["quantization_mode"] == "ptq" and ptq_meta["inputs"][0]["dtype"] == "int8"
    assert ptq["size_bytes"] == (root / "build" / "shapes" / "ptq-int8" / "model.tflite").stat().st_size
    assert (root / "build" / "shapes" / "float" / "model.keras").is_file()
    assert (root / "build" / "shapes" / "qat" / "qat_model.h5").is_file()
    assert not list((root / "build").rglob(".*tmp*")), "temporary files left behind"
    assert "tflite-int8" in result.stdout and "PTQ int8" in result.stdout and "LiteRT" in result.stdout
    # The same int8 model as ONNX (companion): same scales, int8 in ONNX Runtime, side by side in the report.
    other = accuracy["companion"]
    assert other["target"] == "onnx-int8" and other["file"] == "model.onnx" and other["runtime"] == "onnxruntime"
    assert other["top1_agreement_with_target"] >= 0.99
    assert other["graph"]["int8_convs"] == other["graph"]["convs"] > 0
    assert other["latency"][0]["stats"]["p50_ms"] > 0
    assert "onnx-int8, ONNX Runtime, same scales" in report and "QLinearConv" in report
    assert "onnx-int8 (same scales)" in result.stdout and "ONNX Runtime" in result.stdout


# Issue 13 moved every module: the outputs users and scripts read must not change. The golden files were
# written by the code before the move (EDGETL_WRITE_GOLDEN=1 rewrites them on purpose).
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _key_paths(value, prefix="", depth=0):
    """Key paths of a JSON document to depth 3 (lists: the union over their items, as ``[]``)."""
    paths = set()
    if depth >= 3:
        return paths
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            if key not in ("per_class", "versions", "config", "ops"):  # data-dependent keys; config is checked by the dry-run golden
                paths |= _key_paths(item, path, depth + 1)
    elif isinstance(value, list):
        for item in value:
            paths |= _key_paths(item, f"{prefix}[]", depth)
    return paths


def _check_golden(name: str, actual):
    path = GOLDEN / name
    if os.environ.get("EDGETL_WRITE_GOLDEN") == "1":
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(path.read_text()), f"{name} changed"


def test_edgetl_json_keys_are_unchanged(built):
    """Runs before the rebuild tests below, which add other targets (and their keys) to the same build."""
    root = built[0] / "build" / "shapes"
    keys = {
        folder.name: sorted(_key_paths(json.loads((folder / "edgetl.json").read_text())))
        for folder in sorted(root.iterdir()) if (folder / "edgetl.json").is_file() and folder.name in ("float", "qat", "ptq-int8", "tflite-int8")
    }
    assert set(keys) == {"float", "qat", "ptq-int8", "tflite-int8"}
    _check_golden("build_edgetl_json_keys.json", keys)


def test_rebuild_reuses_stages_and_other_config_is_refused(built, shapes_dir):
    root, args, _ = built
    start = time.perf_counter()
    again = runner.invoke(app, args + ["--target", "tflite-fp32"])
    assert again.exit_code == 0, again.output + again.stderr
    assert (root / "build" / "shapes" / "tflite-fp32" / "model.tflite").is_file()
    meta = json.loads((root / "build" / "shapes" / "tflite-fp32" / "edgetl.json").read_text())
    assert meta["verification"]["max_abs_diff"] < 1e-4
    assert time.perf_counter() - start < 120, "the float and QAT stages were not reused"
    shapes = root / "build" / "shapes"
    shown = "".join(again.stderr.split())  # rich wraps log lines anywhere, inside words too
    assert "".join(f"reusing the trained float model from {shapes / 'float'}".split()) in shown, again.stderr  # shown without -v

    onnx_build = runner.invoke(app, args + ["--target", "onnx-int8", "--opset", "17"])
    assert onnx_build.exit_code == 0, onnx_build.output + onnx_build.stderr
    onnx_dir = root / "build" / "shapes" / "onnx-int8"
    meta = json.loads((onnx_dir / "edgetl.json").read_text())
    assert meta["model_file"] == "model.onnx" and meta["runtime"] == "onnxruntime" and meta["graph"]["full_integer"]
    assert meta["latency"][0]["runtime"] == "onnxruntime"
    other = meta["accuracy"]["companion"]
    assert other["target"] == "tflite-int8" and other["top1_agreement_with_target"] >= 0.99
    assert "ONNX Runtime" in onnx_build.stdout and "tflite-int8 (same scales)" in onnx_build.stdout
    assert "## Latency (ONNX Runtime" in (onnx_dir / "report.md").read_text()

    different = runner.invoke(app, args + ["--qat-epochs", "2"])
    assert different.exit_code != 0
    assert "already holds a different build" in different.stderr and "--force" in different.stderr


def test_output_holds_other_files_without_force(shapes_dir, tmp_path):
    busy = tmp_path / "build" / "shapes" / "tflite-int8"
    busy.mkdir(parents=True)
    (busy / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["build", "--data", str(shapes_dir), "--weights", "none", "--input-size", "32", "--alpha", "0.35", "--out", str(tmp_path / "build")])
    assert result.exit_code != 0 and "--force" in result.stderr
    assert (busy / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_demo_meets_its_promise(tmp_path):
    """`edgetl demo`: ImageNet EfficientNet-Lite0 fine-tuned on 60 images per class, int8 validation
    top-1 >= 90%, and the same settings from scratch, in under 6 minutes on a 2-core CI machine.

    Since 2026-11-30 the demo is transfer learning (it trained MobileNetV2 from scratch before; the
    figures below up to that day are of that demo). The transfer demo: 191 s on the quiet AMD EPYC
    2-core machine (its from-scratch comparison included), 461 s there under load 4.5.

    Measured: 186 s on the AMD EPYC 2-core machine of earlier sessions; on the Intel Xeon 2-core
    one 421 s (train 233 s, QAT 68 s, export 75 s through from_keras_model's SavedModel round
    trip), then 207 s (train 144 s, QAT 49 s, export 4 s with the frozen-function conversion; the
    training difference is the machine's, not the code's); 296 s on an AMD EPYC 2-core machine on
    2026-11-30 (the commit before that day's changes: 329 s there, partly under load). The bound leaves room for a slower
    machine without hiding a 2x regression.
    """
    start = time.perf_counter()
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output + result.stderr
    meta = json.loads((tmp_path / "demo" / "build" / "shapes" / "tflite-int8" / "edgetl.json").read_text())
    assert meta["accuracy"]["artifact_top1"] >= 0.9, meta["accuracy"]
    assert meta["backbone"] == "efficientnet_lite0" and meta["config"]["model"]["weights"] == "imagenet"
    assert elapsed < 360, elapsed
    # What transfer bought: the same settings from random weights, trained and printed in the same run.
    versus = json.loads((tmp_path / "demo" / "transfer_vs_scratch.json").read_text())
    assert versus["scratch"]["weights"] == "none" and 0.0 <= versus["scratch"]["float_top1"] <= 1.0
    assert versus["pretrained"]["float_top1"] > versus["scratch"]["float_top1"], versus
    assert "From scratch, same settings: float top-1" in result.output


DRY_RUNS = {
    "default": [],
    "c-package": ["--package", "c", "--val-split", "0.3", "--batch-size", "8"],
    "onnx-ptq": ["--target", "onnx-int8", "--mode", "ptq", "--opset", "13", "--alpha", "0.5", "--input-size", "96"],
    "fp16-no-aug": ["--target", "tflite-fp16", "--no-augment", "--fine-tune-epochs", "2", "--head-epochs", "1", "--qat-epochs", "4", "--seed", "7", "--package", "android", "--clean-epochs", "0"],
}


def test_build_dry_run_output_is_unchanged(shapes_dir):
    outputs = {}
    for name, extra in DRY_RUNS.items():
        result = runner.invoke(app, ["build", "--dry-run", "--data", str(shapes_dir), "--weights", "none", *extra], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output + result.stderr
        target = "onnx-int8" if "onnx-int8" in extra else "tflite-fp16" if "tflite-fp16" in extra else "tflite-int8"
        assert f"build name shapes: would write {Path('build') / 'shapes' / target}/" in result.stderr, result.stderr  # name and folder
        outputs[name] = json.loads(result.stdout.replace(str(shapes_dir), "<data>"))
    _check_golden("build_dry_run.json", outputs)
