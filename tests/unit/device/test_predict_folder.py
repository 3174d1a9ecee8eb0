"""`edgetl predict ARTIFACT DIR --csv out.csv`: a folder of unlabelled images, recursive, batched, to CSV."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.core.errors import ConfigError, DataError
from edgetl.device.predict import csv_header, predict_images, predict_many, spreadsheet_safe
from tests.helpers import _nhwc_onnx_classifier, assert_one_line_error, run_cli

CLASSES = ["circle", "square", "star", "triangle"]
FORMULA_NAMES = ["=HYPERLINK(1).png", "+cmd.png", "-2+3.png", "@SUM(A1).png"]


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory):
    from edgetl.core.contract import PreprocessContract

    contract = PreprocessContract(input_size=32, mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0), resize="bilinear")
    meta = {"labels": json.dumps(CLASSES), "preprocessing": json.dumps(contract.to_dict())}
    path, _ = _nhwc_onnx_classifier(tmp_path_factory.mktemp("onnx_folder") / "classifier.onnx", metadata=meta)
    return path


@pytest.fixture(scope="module")
def photo_dir(shapes_dir, tmp_path_factory) -> Path:
    """Unlabelled images in nested folders, names a spreadsheet would run as formulas, a corrupt
    image, a text file and a hidden file."""
    root = tmp_path_factory.mktemp("unlabelled") / "photos"
    sources = [sorted((shapes_dir / c).glob("*.png"))[0] for c in CLASSES]
    (root / "a" / "deeper").mkdir(parents=True)
    shutil.copy(sources[0], root / "top.png")
    shutil.copy(sources[1], root / "a" / "one.png")
    Image.open(sources[2]).convert("RGB").save(root / "a" / "deeper" / "two.jpg", quality=95)
    for name, source in zip(FORMULA_NAMES, sources, strict=True):
        shutil.copy(source, root / "a" / name)
    (root / "a" / "broken.png").write_text("not pixels")
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_spreadsheet_safe():
    assert [spreadsheet_safe(t) for t in ("=1+1", "+a", "-a", "@a", "\tx", "ok.png", "")] == ["'=1+1", "'+a", "'-a", "'@a", "'\tx", "ok.png", ""]


def test_folder_to_csv_with_onnx(onnx_classifier, photo_dir, tmp_path):
    out = tmp_path / "out" / "predictions.csv"
    calls = []
    report = predict_many(onnx_classifier, [photo_dir], top_k=2, batch_size=3, csv_path=out, progress=lambda *a: calls.append(a))
    rows = _read(out)
    assert list(rows[0]) == csv_header(2) == ["path", "class", "confidence", "class_2", "confidence_2", "error"]
    paths = [r["path"] for r in rows]
    expected = sorted(["top.png", "a/one.png", "a/deeper/two.jpg", "a/broken.png", *[f"a/{n}" for n in FORMULA_NAMES]])
    assert sorted(p.lstrip("'") for p in paths) == expected  # recursive, relative to DIR; no .txt, no hidden file
    assert "a/=HYPERLINK(1).png" in paths  # the path starts with "a/": already safe
    assert not any(p.startswith(("=", "+", "-", "@")) for p in paths)
    broken = next(r for r in rows if r["path"] == "a/broken.png")
    assert broken["error"] == "not an image" and broken["class"] == "" and broken["confidence"] == ""
    assert report.predicted == 7 and len(report.failed) == 1 and report.ignored == ["notes.txt"]
    # the same numbers as single-image predict
    good = [r for r in rows if not r["error"]]
    single = predict_images(onnx_classifier, [photo_dir / r["path"] for r in good], top_k=2)
    for row, (_, top) in zip(good, single.predictions, strict=True):
        assert row["class"] == top[0].label and row["class_2"] == top[1].label
        assert float(row["confidence"]) == pytest.approx(top[0].score, abs=1e-6)
    assert calls[0] == ("predict", 0, 8, "") and calls[-1][1] == calls[-1][2] == 8 and len(calls) == 1 + 3  # 8 images, batches of 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]  # no temporary file left


def test_names_at_the_top_of_dir_are_quoted(onnx_classifier, photo_dir, tmp_path):
    """A file directly in DIR whose name starts like a formula gets the quote in its path cell."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in FORMULA_NAMES:
        shutil.copy(photo_dir / "a" / name, flat / name)
    out = tmp_path / "p.csv"
    predict_many(onnx_classifier, [flat], csv_path=out)
    rows = _read(out)
    assert sorted(r["path"] for r in rows) == sorted("'" + n for n in FORMULA_NAMES)
    assert list(rows[0]) == ["path", "class", "confidence", "error"]  # top-1 only unless --top-k is asked


def test_csv_label_that_starts_like_a_formula_is_quoted(photo_dir, tmp_path):
    from edgetl.core.contract import PreprocessContract

    contract = PreprocessContract(input_size=32, mean=(127.5,) * 3, std=(127.5,) * 3, resize="bilinear")
    labels = ["-minus", "+plus", "@at", "=eq"]
    meta = {"labels": json.dumps(labels), "preprocessing": json.dumps(contract.to_dict())}
    model, _ = _nhwc_onnx_classifier(tmp_path / "odd.onnx", metadata=meta)
    out = tmp_path / "odd.csv"
    predict_many(model, [photo_dir / "top.png"], top_k=4, csv_path=out)
    (row,) = _read(out)
    assert {row["class"], row["class_2"], row["class_3"], row["class_4"]} == {"'" + label for label in labels}


def test_tflite_cli_folder_csv(int8_export, photo_dir, tmp_path):
    path, _ = int8_export
    out = tmp_path / "tflite.csv"
    result = run_cli("predict", path.parent, photo_dir, "--csv", out, "--top-k", "3")
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert len(rows) == 8 and sum(1 for r in rows if r["error"]) == 1 and "class_3" in rows[0]
    assert all(r["class"] in CLASSES for r in rows if not r["error"])
    summary = " ".join(result.stderr.split())
    assert "7 image(s) predicted" in summary and "1 unreadable" in summary and "1 file(s) without an image suffix ignored" in summary
    probs = [float(r["confidence"]) for r in rows if not r["error"]]
    assert all(0.0 <= p <= 1.0 for p in probs) and np.isfinite(probs).all()


def test_single_image_predict_still_works(onnx_classifier, photo_dir):
    result = run_cli("predict", onnx_classifier, photo_dir / "top.png", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["top_k"] == 3 and len(doc["predictions"]) == 1


def test_errors(onnx_classifier, photo_dir, tmp_path):
    with pytest.raises(DataError, match="no image files"):
        predict_many(onnx_classifier, [tmp_path])
    with pytest.raises(ConfigError, match="is a folder"):
        predict_many(onnx_classifier, [photo_dir], csv_path=tmp_path)
    with pytest.raises(ConfigError, match="--batch-size 0"):
        predict_many(onnx_classifier, [photo_dir], batch_size=0)
    assert_one_line_error(run_cli("predict", onnx_classifier, tmp_path / "nope", "--csv", tmp_path / "x.csv"), "does not exist")
    assert not (tmp_path / "x.csv").exists()
