"""Evaluation: metrics arithmetic, Keras and TFLite artifacts, --against, and no TensorFlow for .tflite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import ArtifactError
from edgetl.device.evaluate import agreement, compute_metrics, evaluate
from tests.helpers import import_blocker


def test_metrics_on_known_predictions():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = np.array([0, 2, 2, 1])
    m = compute_metrics(probs, labels, ["a", "b", "c"])
    assert m.top1 == pytest.approx(0.5)
    assert m.top_k == 3 and m.top5 == pytest.approx(1.0)
    assert m.per_class["c"] == {"accuracy": 0.5, "support": 2}
    assert m.per_class["b"]["accuracy"] == 0.0
    assert m.confusion == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert agreement(probs, probs[:, ::-1]) == pytest.approx(0.25)


def test_eval_tflite_and_against_keras(int8_export, trained_run, shapes_dir):
    path, _ = int8_export
    report = evaluate(path, shapes_dir, against=trained_run.out_dir)
    data = report.to_dict()
    assert data["num_images"] == 240 and data["kind"] == "tflite"
    assert set(data["per_class"]) == {"circle", "square", "star", "triangle"}
    assert sum(map(sum, data["confusion"])) == 240
    assert 0.0 <= data["top1"] <= data["top5"] <= 1.0
    against = data["against"]
    assert against["kind"] == "keras"
    assert against["top1_drop"] == pytest.approx(against["top1"] - data["top1"])
    assert 0.0 <= against["top1_agreement"] <= 1.0


def test_eval_keras_run_matches_training_accuracy(trained_run, shapes_dir):
    report = evaluate(trained_run.out_dir, shapes_dir)
    from edgetl.ml.model_io import predict_pixels

    pixels = np.concatenate([trained_run.split.train.x, trained_run.split.val.x])
    labels = np.concatenate([trained_run.split.train.y, trained_run.split.val.y])
    expected = np.mean(predict_pixels(trained_run.model, pixels, trained_run.contract).argmax(1) == labels)
    assert report.metrics.top1 == pytest.approx(expected)


def test_eval_without_metadata_is_a_clear_error(tmp_path, shapes_dir):
    # edgetl's own .tflite files carry their metadata (tests/unit/runtime/test_tflite_metadata.py); anyone else's need not
    from tflite_micro.python.tflite_micro import runtime

    lone = tmp_path / "lone.tflite"
    lone.write_bytes((Path(runtime.__file__).parent / "sine_float.tflite").read_bytes())
    with pytest.raises(ArtifactError, match="edgetl.json"):
        evaluate(lone, shapes_dir)


def test_tflite_eval_never_imports_tensorflow(int8_export, shapes_dir):
    code = (
        "import sys, json; from edgetl.device.evaluate import evaluate; "
        f"r = evaluate({str(int8_export[0])!r}, {str(shapes_dir)!r}); "
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TF imported'; "
        "print(json.dumps({'top1': r.metrics.top1}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 0.0 <= json.loads(out.stdout.strip().splitlines()[-1])["top1"] <= 1.0


def test_keras_eval_without_tensorflow_names_the_install_command(tmp_path):
    """The Keras predictor is registered by module path: without TensorFlow, evaluating a .keras
    file is one ConfigError line naming the install, and nothing of edgetl.ml is imported."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK")
    code = import_blocker() + (
        "from edgetl.core.errors import ConfigError\n"
        "from edgetl.device.evaluate import evaluate\n"
        "try:\n"
        f"    evaluate({str(model)!r}, {str(tmp_path)!r})\n"
        "except ConfigError as exc:\n"
        "    assert not any(m.startswith('edgetl.ml') for m in sys.modules), 'edgetl.ml imported'\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no ConfigError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    message = out.stdout.strip()
    assert "\n" not in message and str(model) in message
    assert message.endswith('pip install "edgetl[train]"')
