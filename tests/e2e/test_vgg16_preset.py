"""End to end: the transfer-learning tutorial's recipe (models/seed_vgg16.toml) through `edgetl build`:
VGG16 with a Dense(1024, relu) head, RMSprop then SGD, QAT, int8 TFLite and its int8 ONNX companion.

Random weights at 32 px and one epoch per phase: what is checked is that the preset runs the whole
pipeline and that its artifacts carry VGG16 and the hidden head layer, not accuracy. Measured here
(2 busy cores): about 2.5 minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.matrix  # with the per-backbone matrix, by hand (-m matrix): CI's hour went to issue 16's multi-process tests
def test_seed_vgg16_builds_through_qat_to_int8_tflite_and_onnx(tmp_path):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from edgetl.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(
        tmp_path / "shapes", images_per_class=30, image_size=40, seed=0, noise=0.05, min_scale=0.5, palette="light-on-dark"
    )
    result = run_cli(
        "build", "--config", REPO / "models" / "seed_vgg16.toml", "--target", "tflite-int8", "--weights", "none",
        "--input-size", "32", "--data", data, "--out", tmp_path / "build",
        "--head-epochs", "1", "--fine-tune-epochs", "1", "--clean-epochs", "0", "--qat-epochs", "1", "--min-images", "5",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "build" / "shapes"
    target = run / "tflite-int8"
    meta = json.loads((target / "edgetl.json").read_text())

    # The recipe's settings reached the build (flags over the preset: --weights none, --input-size 32).
    assert meta["backbone"] == "vgg16"
    model_cfg, train_cfg = meta["config"]["model"], meta["config"]["train"]
    assert model_cfg["head_units"] == [1024] and model_cfg["weights"] == "none" and model_cfg["input_size"] == 32
    assert (train_cfg["head_optimizer"], train_cfg["fine_tune_optimizer"], train_cfg["unfreeze_blocks"]) == ("rmsprop", "sgd", 1)
    assert meta["preprocessing"]["mean"] == [123.68, 116.779, 103.939] and meta["preprocessing"]["std"] == [1.0, 1.0, 1.0]
    # Phase 2 trained block5's three convolutions and nothing nearer the input.
    assert json.loads((run / "float" / "edgetl.json").read_text())["phase2_trainable_layers"] == 3

    # QAT ran (its int8 model was measured against PTQ's; the better one ships) ...
    assert (run / "qat" / "qat_model.h5").is_file() and meta["stage_fingerprints"]["qat"]
    assert "qat_int8_top1" in meta["accuracy"]["int8_choice"]
    # ... to a full-integer TFLite with the hidden layer: two fully connected ops (1024 units, then the classes).
    assert meta["graph"]["full_integer"] is True and meta["graph"]["ops"]["FULLY_CONNECTED"] == 2
    assert meta["graph"]["ops"]["CONV_2D"] == 13
    interpreter = Interpreter(model_path=str(target / "model.tflite"))
    interpreter.allocate_tensors()
    assert any(tuple(t["shape"]) == (1, 1024) for t in interpreter.get_tensor_details())
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and tuple(inp["shape"]) == (1, 32, 32, 3)
    interpreter.set_tensor(inp["index"], np.random.default_rng(0).integers(-128, 128, (1, 32, 32, 3), dtype=np.int8))
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 4)

    # ... and an int8 ONNX companion that runs in ONNX Runtime as integer kernels.
    companion = meta["accuracy"]["companion"]
    assert companion["target"] == "onnx-int8" and companion["graph"]["full_integer"] is True
    assert companion["graph"]["ort_optimized_ops"]["QGemm"] == 2
    session = ort.InferenceSession(str(target / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    pixels = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    probs = session.run(None, {feed.name: (pixels - np.array([123.68, 116.779, 103.939], np.float32)).astype(np.float32)})[0]
    assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1.0) < 0.05
