"""`edgetl predict`: top-k labels with the artifact's own preprocessing, on real runtimes, without TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.data.images import load_images
from edgetl.data.split import load_eval_set
from edgetl.device.evaluate import load_predictor
from edgetl.device.predict import predict_images, top_k_of
from tests.helpers import TRAINING_MODULES, _nhwc_onnx_classifier, assert_one_line_error, build_tflite, import_blocker

REPO_ROOT = Path(__file__).resolve().parents[3]
CLASSES = ["circle", "square", "star", "triangle"]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def images(shapes_dir, tmp_path_factory) -> list[Path]:
    """Two images of each class from the shared dataset, plus ones that need the decoding rules:
    RGBA (composited on white), grayscale JPEG, and a non-square size (resized whole, no crop)."""
    picked = [sorted((shapes_dir / c).glob("*.png"))[i] for c in CLASSES for i in (0, 1)]
    extra = tmp_path_factory.mktemp("predict_images")
    rgba = extra / "alpha.png"
    Image.open(picked[0]).convert("RGBA").save(rgba)
    gray = extra / "gray.jpg"
    Image.open(picked[2]).convert("L").save(gray, quality=95)
    wide = extra / "wide.png"
    Image.open(picked[4]).resize((61, 29)).save(wide)
    return [*picked, rgba, gray, wide]


def test_top_k_order_and_ties():
    scores = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]], np.float32)
    top = top_k_of(scores, ["a", "b", "c", "d"], 3)
    assert [[p.label for p in row] for row in top] == [["b", "c", "a"], ["a", "b", "c"]]
    assert top[0][0].score == pytest.approx(0.4) and top[1][0].index == 0


def test_tflite_predictions_equal_evaluation(int8_export, images, tmp_path):
    """Same pixels and probabilities as `edgetl eval`: copy the images into a labelled folder and compare."""
    path, _ = int8_export
    report = predict_images(path, images, top_k=3)
    assert report.kind == "tflite" and report.top_k == 3 and not report.clamped and report.class_names == CLASSES
    assert [Path(image) for image, _ in report.predictions] == images

    folder = tmp_path / "eval" / "circle"
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        shutil.copy(image, folder / f"{i:02d}{image.suffix}")
    predict, info, _ = load_predictor(path)
    evaluated, skipped = load_eval_set(tmp_path / "eval", info.contract.input_size, class_names=info.class_names)
    assert not skipped and len(evaluated) == len(images)
    expected = predict(evaluated.x)
    for (_, top), probs in zip(report.predictions, expected, strict=True):
        ranked = np.argsort(-probs, kind="stable")[:3]
        assert [p.index for p in top] == ranked.tolist()
        assert [p.label for p in top] == [CLASSES[i] for i in ranked]
        assert [p.score for p in top] == pytest.approx(probs[ranked].tolist(), abs=0)
        assert top[0].score >= top[1].score >= top[2].score


def _reference(pixels: np.ndarray, contract: PreprocessContract, weights: dict[str, np.ndarray]) -> np.ndarray:
    x = contract.normalize(pixels).astype(np.float64)  # (N, H, W, 3)
    pooled = x.mean(axis=(1, 2)) @ weights["W"][:, :, 0, 0].T.astype(np.float64)  # a 1x1 conv commutes with the mean
    logits = pooled @ weights["D"].astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory):
    contract = PreprocessContract(input_size=32, mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0), resize="bicubic")
    meta = {"labels": json.dumps(CLASSES), "preprocessing": json.dumps(contract.to_dict())}
    path, weights = _nhwc_onnx_classifier(tmp_path_factory.mktemp("onnx_predict") / "classifier.onnx", metadata=meta)
    return path, weights, contract


def test_onnx_file_alone_uses_its_metadata_props(onnx_classifier, images):
    """No edgetl.json: labels and the contract (here a bicubic resize) come from metadata_props."""
    path, weights, contract = onnx_classifier
    report = predict_images(path, images, top_k=2)
    assert report.kind == "onnx" and report.contract["resize"] == "bicubic"
    expected = _reference(load_images(images, 32, "bicubic"), contract, weights)
    for (_, top), probs in zip(report.predictions, expected, strict=True):
        ranked = np.argsort(-probs)[:2]
        assert [p.label for p in top] == [CLASSES[i] for i in ranked]
        assert [p.score for p in top] == pytest.approx(probs[ranked], abs=1e-5)


def test_cli_table_json_folder_and_clamped_top_k(int8_export, images):
    path, _ = int8_export
    table = run("predict", path.parent, images[0], images[-1])  # an edgetl build folder stands for its model
    assert table.exit_code == 0, table.output
    assert images[0].name in table.stdout and "rank" in table.stdout and "top 3 of 4 classes" in table.stdout

    result = run("predict", path, *images[:3], "--top-k", "10", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["top_k"] == 4 and doc["requested_top_k"] == 10 and doc["num_classes"] == 4
    assert [p["image"] for p in doc["predictions"]] == [str(p) for p in images[:3]]
    assert all(sorted(t["label"] for t in p["top"]) == CLASSES for p in doc["predictions"])
    assert result.stderr.strip().startswith("note: --top-k 10 is more than the model's 4 classes")


def test_lone_tflite_reads_its_embedded_labels(int8_export, images, tmp_path):
    """A .tflite copied away from its edgetl.json predicts the same, from the metadata inside the flatbuffer."""
    path, _ = int8_export
    lone = tmp_path / "lone.tflite"
    shutil.copy(path, lone)
    beside, alone = predict_images(path, images[:3]), predict_images(lone, images[:3])
    assert [top for _, top in alone.predictions] == [top for _, top in beside.predictions]
    assert alone.contract == beside.contract


def test_bad_top_k_is_a_config_error(int8_export, images):
    with pytest.raises(ConfigError, match="--top-k 0"):
        predict_images(int8_export[0], images[:1], top_k=0)


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing image", ("nope.png", "does not exist")),
        ("text file", ("notes.txt", "not an image")),
        ("text named .png", ("fake.png", "not an image")),
        ("empty folder", ("a_folder", "no image files")),
        ("top-k 0", ("--top-k 0",)),
        ("top-k negative", ("--top-k -2",)),
        ("no metadata", ("lone.tflite", "edgetl.json")),
        ("labels of another model", ("3 classes",)),
        ("missing artifact", ("missing.tflite", "does not exist")),
        ("onnx without metadata", ("metadata_props",)),
        ("corrupt onnx", ("not an ONNX model",)),
    ],
)
def test_bad_input_is_one_line(case, fragments, int8_export, images, tmp_path):
    path, _ = int8_export
    image = images[0]
    args: list = [path, image]
    if case == "missing image":
        args = [path, image, tmp_path / "nope.png"]
    elif case == "text file":
        (tmp_path / "notes.txt").write_text("not pixels")
        args = [path, tmp_path / "notes.txt"]
    elif case == "text named .png":
        (tmp_path / "fake.png").write_text("not pixels")
        args = [path, image, tmp_path / "fake.png"]
    elif case == "empty folder":  # a folder is searched for images (see test_predict_folder.py); none there
        (tmp_path / "a_folder").mkdir()
        args = [path, tmp_path / "a_folder"]
    elif case == "top-k 0":
        args = [path, image, "--top-k", "0"]
    elif case == "top-k negative":
        args = [path, image, "--top-k", "-2"]
    elif case == "no metadata":  # neither edgetl.json beside it nor labels embedded in it
        args = [build_tflite(tmp_path / "lone.tflite", ["RELU"]), image]
    elif case == "labels of another model":
        shutil.copy(path, tmp_path / "model.tflite")
        meta = json.loads((path.parent / "edgetl.json").read_text())
        meta["class_names"] = ["a", "b", "c"]
        (tmp_path / "edgetl.json").write_text(json.dumps(meta))
        args = [tmp_path / "model.tflite", image]
    elif case == "missing artifact":
        args = [tmp_path / "missing.tflite", image]
    elif case == "onnx without metadata":
        bare, _ = _nhwc_onnx_classifier(tmp_path / "bare.onnx", metadata=None)
        args = [bare, image]
    elif case == "corrupt onnx":
        (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage" * 10)
        args = [tmp_path / "broken.onnx", image]
    assert_one_line_error(run("predict", *args), *fragments)




def test_predict_cli_never_imports_tensorflow(int8_export, onnx_classifier, images, tmp_path):
    """`edgetl[runtime]` only: TensorFlow, tf2onnx and onnx made unimportable, .tflite and .onnx still predict."""
    code = import_blocker((*TRAINING_MODULES, "onnx")) + textwrap.dedent("""
    import json, sys
    from edgetl.cli.app import main

    for artifact in sys.argv[1:3]:
        try:
            main(["predict", artifact, *sys.argv[3:], "--json"])
        except SystemExit as exc:
            assert exc.code in (0, None), f"predict exited with {exc.code}"
    try:
        import tensorflow  # noqa: F401
        raise AssertionError("the import blocker is not active")
    except ImportError:
        pass
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx"})
    assert not heavy, heavy
    print("NO-TENSORFLOW-OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code, str(int8_export[0]), str(onnx_classifier[0]), *map(str, images[:2])],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("NO-TENSORFLOW-OK")
    assert result.stdout.count('"predictions"') == 2
