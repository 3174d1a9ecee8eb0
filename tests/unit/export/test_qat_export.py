"""QAT wraps the model; int8 TFLite is full-integer; every format runs in LiteRT and agrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetl.core.errors import ConfigError


def test_qat_model_holds_quantize_wrappers(qat_run):
    names = {type(layer).__name__ for layer in qat_run.model.layers}
    assert "QuantizeLayer" in names
    assert any(name.startswith("QuantizeWrapper") for name in names)
    assert (qat_run.out_dir / "qat_model.h5").is_file()
    meta = json.loads((qat_run.out_dir / "edgetl.json").read_text())
    assert meta["kind"] == "keras-qat"


def test_qat_model_reloads(qat_run):
    from edgetl.ml.model_io import load_keras_artifact, predict_pixels

    model, info = load_keras_artifact(qat_run.out_dir)
    pixels = qat_run.split.val.x[:8]
    assert info.class_names == qat_run.class_names
    assert np.allclose(predict_pixels(model, pixels, qat_run.contract), predict_pixels(qat_run.model, pixels, qat_run.contract), atol=1e-5)


def test_int8_tflite_is_full_integer(int8_export):
    from ai_edge_litert.interpreter import Interpreter

    path, meta = int8_export
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    assert scale > 0
    float_tensors = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    assert float_tensors == [], f"float tensors in a full-integer model: {float_tensors[:5]}"
    conv_weights = [t for t in interpreter.get_tensor_details() if len(t["shape"]) == 4 and t["dtype"] == np.int8]
    assert len(conv_weights) > 50
    assert meta["inputs"][0]["dtype"] == "int8" and meta["quantization_mode"] == "qat"
    assert meta["int8_ranges"] == "learned in quantization-aware training"
    assert meta["inputs"][0]["scale"] == pytest.approx(scale)


def test_int8_agrees_with_qat_keras_model(int8_export, qat_run):
    from edgetl.ml.model_io import predict_pixels
    from edgetl.runtime.litert import LiteRTModel

    path, meta = int8_export
    pixels = np.concatenate([qat_run.split.train.x, qat_run.split.val.x])
    keras_probs = predict_pixels(qat_run.model, pixels, qat_run.contract)
    lite_probs = LiteRTModel(path).predict(qat_run.contract.normalize(pixels))
    agree = keras_probs.argmax(1) == lite_probs.argmax(1)
    # A tiny model trained from scratch for seconds is barely past chance, and int8 rounding flips
    # its near-ties; where the Keras model is decided (top-1 leads by >= 0.2) int8 must follow it.
    top2 = np.sort(keras_probs, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) >= 0.2
    assert agree.mean() >= 0.8, agree.mean()
    assert decided.sum() >= 20 and agree[decided].mean() >= 0.95, (decided.sum(), agree[decided].mean())
    assert meta["verification"]["images"] == len(qat_run.split.val.y)


def test_fp32_export_matches_keras(fp32_export, trained_run):
    path, meta = fp32_export
    assert meta["verification"]["max_abs_diff"] < 1e-4
    assert meta["inputs"][0]["dtype"] == "float32"
    assert meta["quantization_mode"] is None
    assert (path.parent / "labels.txt").read_text().split() == trained_run.class_names


def test_ptq_int8_and_uint8_io_from_float_model(trained_run, shapes_dir, tmp_path):
    from edgetl.pipeline.api import export_model
    from edgetl.runtime.litert import LiteRTModel

    path, meta = export_model(trained_run.out_dir, "tflite-int8", data=shapes_dir, out=tmp_path / "ptq", io_dtype="uint8", samples=16)
    assert meta["quantization_mode"] == "ptq"
    assert meta["int8_ranges"].startswith("TFLite converter calibration on 16 training images")  # MobileNetV2: no hard-swish
    model = LiteRTModel(path)
    assert model.inputs[0].dtype == "uint8" and model.outputs[0].dtype == "uint8"
    assert model.inputs[0].zero_point != 0  # uint8 input zero point sits mid-range
    probs = model.predict(trained_run.contract.normalize(trained_run.split.val.x))
    assert probs.dtype == np.float32 and probs.shape == (len(trained_run.split.val.y), 4)


def test_fp16_export_is_smaller_and_agrees(trained_run, fp32_export, shapes_dir, tmp_path):
    from edgetl.pipeline.api import export_model

    path, meta = export_model(trained_run.out_dir, "tflite-fp16", data=shapes_dir, out=tmp_path / "fp16")
    assert path.stat().st_size < 0.6 * fp32_export[0].stat().st_size
    assert meta["verification"]["top1_agreement"] >= 0.8


def test_qat_model_cannot_export_to_float(qat_run, shapes_dir, tmp_path):
    from edgetl.pipeline.api import export_model

    with pytest.raises(ConfigError, match="int8 targets only"):
        export_model(qat_run.out_dir, "tflite-fp32", data=shapes_dir, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unknown_target_lists_known_ones(trained_run, tmp_path):
    from edgetl.pipeline.api import export_model

    with pytest.raises(ConfigError, match="tflite-dynamic, tflite-fp16, tflite-fp32, tflite-int16x8, tflite-int8"):
        export_model(trained_run.out_dir, "coreml", out=tmp_path / "x")


def test_quantize_refuses_nested_model_clearly():
    from edgetl.core.errors import ExportError
    from edgetl.ml._keras import keras
    from edgetl.ml.qat import quantize_model

    k = keras()
    inner = k.Sequential([k.Input((8,)), k.layers.Dense(4)], name="inner")
    outer = k.Sequential([k.Input((8,)), inner, k.layers.Dense(2)])
    with pytest.raises(ExportError, match="inner"):
        quantize_model(outer)


def test_unsupported_layer_is_named():
    from edgetl.core.errors import ExportError
    from edgetl.ml._keras import keras
    from edgetl.ml.qat import quantize_model

    k = keras()
    inputs = k.Input((8, 8, 3))
    x = k.layers.Rescaling(1 / 255.0, name="my_rescaling")(inputs)
    x = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3)(x))
    model = k.Model(inputs, k.layers.Dense(2)(x))
    with pytest.raises(ExportError, match="my_rescaling.*Rescaling.*--mode ptq"):
        quantize_model(model)


def test_op_report_tells_full_integer_from_float(int8_export, fp32_export):
    from edgetl.runtime.litert import op_report

    int8 = op_report(int8_export[0])
    assert int8["full_integer"] and not int8["float_ops"] and int8["ops"].get("CONV_2D", 0) > 0
    assert int8_export[1]["graph"]["full_integer"]
    fp32 = op_report(fp32_export[0])
    assert not fp32["full_integer"] and {op["op"] for op in fp32["float_ops"]} >= {"CONV_2D", "SOFTMAX"}
