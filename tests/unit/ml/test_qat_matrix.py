"""Every registered backbone through QAT -> full-integer int8 TFLite -> LiteRT (and -> ONNX int8 ->
ONNX Runtime), at its smallest size.

Real tfmot, real converter, real LiteRT. Each backbone is trained from scratch (``weights=None``)
for a few seconds on a task any network learns fast (which colour channel dominates the image),
so its predictions are decided and int8 agreement with the QAT Keras model means something.
TFLite conversion takes 35-85 s per backbone on 2 cores (the MobileNetV3-Small case, three
conversions with the graph PTQ check, 222 s on the Intel 2-core CI machine), so every case is marked
``slow``: the default suite took 20.5 min there with it. CI runs the slow ones too. A guard test fails when a backbone is registered but not listed here.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.ml.backbones.spec import BACKBONES

#: The matrix: every registered backbone, and whether it is slow to convert here.
MATRIX = {
    "mobilenet_v2": True,  # the shared session chain (conftest) already takes MobileNetV2 through QAT, int8 and ONNX
    "mobilenet_v3_small": True,  # was the default suite's hard-swish case; 222 s here, and CI runs -m slow
    "efficientnet_lite0": True,  # plain recipe like mobilenet_v2; slow to keep the default suite under 15 min
    "mobilenet_v3_large": True,
    "efficientnet_b0": True,
    "efficientnet_v2_b0": True,
    "vgg16": True,  # 15M weights; tests/e2e/test_vgg16_preset.py also builds it through QAT to int8 TFLite and ONNX
}


def test_every_registered_backbone_is_in_the_matrix():
    assert sorted(MATRIX) == BACKBONES.names()


def colour_task(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is the dominant colour channel (3 classes), with pixel noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    base = rng.uniform(0, 90, (n, 1, 1, 3))
    base[np.arange(n), 0, 0, y] = rng.uniform(160, 255, n)
    x = base + rng.normal(0, 20, (n, size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def _case(name: str):
    # The heavy cases are `slow` and `matrix`: 2-5 minutes each on 2 cores, run by hand
    # (`pytest -m matrix`); CI's slow run leaves them out to stay within its hour.
    return pytest.param(name, marks=[pytest.mark.slow, pytest.mark.matrix] if MATRIX[name] else [], id=name)


@pytest.mark.parametrize("name", [_case(n) for n in MATRIX])
def test_qat_int8_litert(name, tmp_path):
    from edgetl.core.types import IODType
    from edgetl.device.inspect_tflite import inspect_tflite
    from edgetl.export.tflite import export_tflite
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.phases import reestimate_batchnorm, set_batchnorm_momentum
    from edgetl.ml.quantize import calibrate_ranges, plan_quantization, quantize_model
    from edgetl.runtime.litert import LiteRTModel, op_report

    k = keras()
    k.utils.set_random_seed(0)  # same initial weights and batch order on every run
    spec = BACKBONES.get(name)
    size = spec.min_input_size
    x, y = colour_task(144, size, seed=0)
    x_train, y_train, x_test = x[:96], y[:96], x[96:]

    model, contract = build_classifier(spec, 3, size, spec.default_alpha, "none")
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    # 10 epochs: with 3, EfficientNet-Lite0 was still near chance (60% on this task) and int8 flipped its near-ties
    model.fit(contract.normalize(x_train), y_train, epochs=10, batch_size=16, verbose=0)
    reestimate_batchnorm(model, x_train, contract)

    plans = plan_quantization(model, spec.qat_recipe)
    assert {p.how for p in plans} <= {"input", "registry", "output", "batchnorm"}
    q_model = quantize_model(model, spec.qat_recipe)
    wrapped = sum(type(layer).__name__.startswith("QuantizeWrapper") for layer in q_model.layers)
    assert wrapped >= len([p for p in plans if p.how in ("registry", "output")]) - 1
    # as edgetl.ml.qat does: activation ranges start at the observed ones, not tfmot's [-6, 6]
    calibrate_ranges(q_model, [contract.normalize(x_train[i : i + 32]) for i in range(0, len(x_train), 32)])
    q_model.compile(optimizer=k.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    q_model.fit(contract.normalize(x_train), y_train, epochs=2, batch_size=16, verbose=0)

    artifact = export_tflite(q_model, "tflite-int8", tmp_path / "model.tflite", representative=x_train[:32], contract=contract, io_dtype=IODType.int8)
    runtime = LiteRTModel(artifact)
    assert runtime.inputs[0].dtype == "int8" and runtime.outputs[0].dtype == "int8"
    # edgetl converts a frozen inference function: the same flatbuffer as from_keras_model's SavedModel route
    from tests.helpers import savedmodel_route, structure

    assert structure(artifact.read_bytes()) == structure(savedmodel_route(q_model, "tflite-int8", x_train[:32], contract))
    graph = op_report(artifact)
    assert graph["full_integer"], f"float ops in {name}: {graph['float_ops'][:3]}"
    if spec.qat_recipe == "mobilenet_v3":
        # hard-swish stays ADD(ReLU6)/MUL/MUL in int8: XNNPACK has no int8 HARD_SWISH and would leave
        # one partition per activation (MobileNetV3 int8 slower than fp32); this way it takes every op
        assert "HARD_SWISH" not in graph["ops"]
        xnnpack = inspect_tflite(artifact)["xnnpack"]
        assert xnnpack.get("partitions") == 1 and set(xnnpack.get("fallback", {})) <= {"SOFTMAX"}, xnnpack  # int8 softmax: the last op

    if spec.qat_recipe == "mobilenet_v3":
        _check_graph_ptq(model, contract, x_train, x_test, tmp_path)

    keras_probs = q_model.predict(contract.normalize(x_test), verbose=0)
    int8_probs = runtime.predict(contract.normalize(x_test))
    keras_top1, int8_top1 = keras_probs.argmax(1), int8_probs.argmax(1)
    assert len(np.unique(keras_top1)) >= 2, "the QAT model predicts one class only: the agreement below would mean nothing"
    agreement = float(np.mean(keras_top1 == int8_top1))
    top2 = np.sort(keras_probs, axis=1)[:, -2:]
    # QAT for seconds leaves near-ties that int8 rounding may flip; where the Keras model is clear, it must agree.
    decided = (top2[:, 1] - top2[:, 0]) >= 0.3
    assert agreement >= 0.85, f"{name}: int8 agrees with QAT Keras on {agreement:.2f}"
    if decided.sum() >= 10:
        assert np.mean(keras_top1[decided] == int8_top1[decided]) >= 0.9

    # The same int8 model as ONNX: every conv runs as int8 in ONNX Runtime and it agrees with LiteRT.
    from edgetl.export.onnx import export_onnx
    from edgetl.runtime.onnxruntime import ORTModel

    onnx_path, details = export_onnx("onnx-int8", tmp_path / "model.onnx", tflite_int8=artifact, class_names=["r", "g", "b"], contract=contract)
    assert details["graph"]["int8_convs"] == details["graph"]["convs"] > 0
    onnx_probs = ORTModel(onnx_path).predict(contract.normalize(x_test))
    assert np.mean(onnx_probs.argmax(1) == int8_top1) >= 0.99


def _check_graph_ptq(float_model, contract, x_train, x_test, tmp_path):
    """PTQ of a MobileNetV3 goes through the calibrated QAT graph: the converter's own PTQ fuses
    hard-swish into int8 HARD_SWISH, which XNNPACK does not run (19-21 partitions, int8 slower than
    fp32, benchmarks/RESULTS.md). This int8 model keeps one partition and agrees with float."""
    from edgetl.device.inspect_tflite import inspect_tflite
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.quantize import graph_ptq_model, is_quantized
    from edgetl.runtime.litert import LiteRTModel, op_report

    before = [w.copy() for w in float_model.get_weights()]
    graph = graph_ptq_model(float_model, x_train[:64], contract)
    assert graph is not None and is_quantized(graph) and not is_quantized(float_model)
    assert all(np.array_equal(a, b) for a, b in zip(before, float_model.get_weights(), strict=True)), "the float model changed"
    path = export_tflite(graph, "tflite-int8", tmp_path / "ptq.tflite", representative=x_train[:32], contract=contract)
    report = op_report(path)
    assert report["full_integer"] and "HARD_SWISH" not in report["ops"]
    xnnpack = inspect_tflite(path)["xnnpack"]
    assert xnnpack.get("partitions") == 1, xnnpack
    float_top1 = float_model.predict(contract.normalize(x_test), verbose=0).argmax(1)
    assert len(np.unique(float_top1)) >= 2
    assert np.mean(LiteRTModel(path).predict(contract.normalize(x_test)).argmax(1) == float_top1) >= 0.85
