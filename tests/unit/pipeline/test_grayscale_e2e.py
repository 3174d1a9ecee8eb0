"""Grayscale, non-square end to end: train (CLI flags) -> int8 TFLite and ONNX -> eval, predict -> C and Python packages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from tests.helpers import compile_and_run_c_package

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 48, 32  # MobileNetV2 needs at least 32 px on each side


@pytest.fixture(scope="module")
def gray_run(shapes_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gray")
    out = folder / "float"
    settings = folder / "edgetl.toml"  # the tiny test settings (tests/helpers.py TINY_SETTINGS); size and channels as flags
    settings.write_text('[train]\nschedule = "cosine"\n')
    result = CliRunner().invoke(app, [
        "train", "--data", str(shapes_dir), "--out", str(out), "--model", "mobilenet_v2", "--alpha", "0.35", "--weights", "none",
        "--input-size", f"{WIDTH}x{HEIGHT}", "--channels", "1", "--val-split", "0.25", "--seed", "0", "--batch-size", "16",
        "--head-epochs", "3", "--lr", "3e-3", "--fine-tune-epochs", "30", "--patience", "8", "--no-augment", "--config", str(settings),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_gray_non_square_contract(gray_run):
    meta = json.loads((gray_run / "edgetl.json").read_text())
    pre = meta["preprocessing"]
    assert "input_size" not in pre
    assert (pre["input_height"], pre["input_width"], pre["channels"], pre["channel_order"], pre["mean"]) == (HEIGHT, WIDTH, 1, "L", [127.5])
    assert meta["config"]["model"]["channels"] == 1 and meta["config"]["model"]["input_size"] == f"{WIDTH}x{HEIGHT}"


def test_int8_tflite_onnx_eval_predict_and_packages(gray_run, shapes_dir, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgetl.pipeline.api import evaluate, export_model, package
    from edgetl.runtime.formats import model_info_for

    qat_run = tmp_path / "qat"
    result = CliRunner().invoke(app, ["qat", "--model", str(gray_run), "--out", str(qat_run), "--epochs", "2", "--lr", "1e-4"])
    assert result.exit_code == 0, result.output
    float_top1 = json.loads((gray_run / "edgetl.json").read_text())["val_accuracy"]
    artifact, meta = export_model(qat_run, "tflite-int8", data=shapes_dir, out=tmp_path / "int8", samples=32)
    interpreter = Interpreter(model_path=str(artifact))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, HEIGHT, WIDTH, 1]
    accuracy = meta["accuracy"]
    # These tiny settings reach about 1/3 on 4 classes, RGB or gray, square or not (the point is the plumbing);
    # the int8 model must keep what the QAT Keras model it came from knows.
    assert float_top1 > 0.25, float_top1
    assert abs(accuracy["artifact_top1"] - accuracy["source_keras_top1"]) <= 0.1, accuracy

    alone = tmp_path / "alone"  # the embedded metadata, with no edgetl.json beside the file
    alone.mkdir()
    shutil.copy(artifact, alone / artifact.name)
    embedded = model_info_for(alone / artifact.name).contract
    assert embedded.input_shape == (HEIGHT, WIDTH, 1) and embedded.channel_order == "L" and embedded.input_size is None

    report = evaluate(artifact, shapes_dir, split="val")  # the held-out images the export measured: the same figure
    assert report.metrics.top1 == pytest.approx(accuracy["artifact_top1"], abs=1e-9)

    from edgetl.device.predict import predict_images

    image = next(p for p in sorted((shapes_dir / "circle").iterdir()) if p.is_file())
    predicted = predict_images(artifact, [image], top_k=2)
    top = predicted.predictions[0][1]
    assert len(top) == 2 and top[0].score >= top[1].score

    timed = CliRunner().invoke(app, ["bench", str(artifact), "--runs", "5", "--warmup", "1", "--threads", "1", "--out", str(tmp_path / "bench")])
    assert timed.exit_code == 0, timed.output
    bench_doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert f"[1, {HEIGHT}, {WIDTH}, 1]" in json.dumps(bench_doc).replace("\n", "")

    onnx_file, _ = export_model(gray_run, "onnx-fp32", data=shapes_dir, out=tmp_path / "onnx", samples=16)
    import onnx

    graph_input = onnx.load(str(onnx_file)).graph.input[0]
    assert [d.dim_value or d.dim_param for d in graph_input.type.tensor_type.shape.dim][1:] == [HEIGHT, WIDTH, 1]
    onnx_contract = model_info_for(onnx_file).contract
    assert onnx_contract.input_shape == (HEIGHT, WIDTH, 1)

    python_pkg = tmp_path / "py"
    package(artifact, "python", python_pkg)
    script = (python_pkg / "predict.py").read_text()
    assert f"WIDTH, HEIGHT = {WIDTH}, {HEIGHT}" in script and "MODE = 'L'" in script
    namespace: dict = {"__file__": str(python_pkg / "predict.py"), "__name__": "predict"}
    exec(compile(script, "predict.py", "exec"), namespace)  # the packaged script, as a user runs it
    x = namespace["preprocess"](image)
    assert x.shape == (1, HEIGHT, WIDTH, 1)
    scores = namespace["scores"](x)
    assert int(np.argmax(scores)) == top[0].index  # the app script preprocesses as edgetl does

    c_pkg = tmp_path / "c"
    c_report = package(artifact, "c", c_pkg)
    settings = (c_pkg / "model_settings.h").read_text()
    for line in (f"constexpr int kInputHeight = {HEIGHT};", f"constexpr int kInputWidth = {WIDTH};", "constexpr int kInputChannels = 1;",
                 f"constexpr int kImageWidth = {WIDTH};", "constexpr float kMean[1] = {127.5f};", "kInputLookup[1][256]"):
        assert line in settings, line
    assert "kImageSize" not in settings.split("// no kImageSize")[0].split("constexpr int kImageChannels")[1]
    lines = compile_and_run_c_package(c_pkg, tmp_path / "cbuild")
    assert len(lines["lookup"].split()) == 256  # one channel
    assert c_report is not None
