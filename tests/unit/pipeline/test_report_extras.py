"""The files beside report.md (curves, confusion matrix, gallery, model card) from synthetic results,
and on a real tiny build: they exist, report.md's links resolve, the card's figures are edgetl.json's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgetl.core import fs as _fs
from edgetl.data.split import ImageData, SplitData
from edgetl.ml.curves import combine_histories, discarded_epochs, phase_segments, plot_history
from edgetl.pipeline.extras import CONFUSION, CURVES, write_build_extras
from edgetl.pipeline.model_card import CARD, class_scores
from edgetl.pipeline.plots import plot_confusion
from edgetl.pipeline.report import build_report, more_lines
from tests.helpers import tiny_config
from tests.unit.pipeline.test_model_card import synthetic_meta

PNG = b"\x89PNG\r\n\x1a\n"


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", markdown)


# ------------------------------------------------------------------------------------------- curves


def test_phase_segments_and_inferred_discarded_epochs():
    assert phase_segments(["head", "head", "fine_tune", "fine_tune", "fine_tune", "qat"]) == [
        ("head", 0, 2), ("fine_tune", 2, 5), ("qat", 5, 6)]
    # no "discarded" recorded (an older history.json): epochs after each phase's lowest val_loss
    history = {"loss": [1, 1, 1, 1, 1, 1], "val_loss": [0.9, 0.8, 0.7, 0.5, 0.6, 0.4], "phase": ["head"] * 2 + ["fine_tune"] * 3 + ["qat"]}
    assert discarded_epochs(history) == [False, False, False, False, True, False]
    assert discarded_epochs({**history, "discarded": [0, 1, 0, 0, 0, 0]}) == [False, True, False, False, False, False]


def test_combined_history_runs_float_then_qat():
    float_history = {"loss": [3, 2, 1], "val_loss": [3, 2, 2.5], "accuracy": [0.1, 0.5, 0.9], "phase": ["head", "fine_tune", "fine_tune"],
                     "discarded": [0.0, 0.0, 1.0], "lr": [0.1, 0.01, 0.01]}
    qat_history = {"loss": [0.5, 0.4], "val_loss": [0.6, 0.7], "accuracy": [0.9, 0.95]}
    combined = combine_histories((None, float_history), ("qat", qat_history))
    assert combined["phase"] == ["head", "fine_tune", "fine_tune", "qat", "qat"]
    assert combined["discarded"] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert combined["loss"] == [3, 2, 1, 0.5, 0.4] and combined["lr"] == [0.1, 0.01, 0.01, None, None]


def test_curves_png_with_phases_and_discarded_epochs(tmp_path):
    history = combine_histories(
        (None, {"loss": [3, 2, 1, 1.1], "val_loss": [3, 2, 1.5, 1.6], "accuracy": [0.1, 0.5, 0.8, 0.8], "val_accuracy": [0.1, 0.4, 0.7, 0.6],
                "phase": ["head", "fine_tune", "fine_tune", "fine_tune"], "discarded": [0, 0, 0, 1]}),
        ("qat", {"loss": [1.0], "val_loss": [1.4], "accuracy": [0.8], "val_accuracy": [0.7]}),
    )
    path = plot_history(history, tmp_path / "curves.png", title="a $weird$ name")
    assert path.read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*"))


def test_confusion_matrix_png_for_30_classes_with_odd_names(tmp_path):
    names = [f"class ${i}$ " + "long" * (i % 3) for i in range(29)] + ["<script>"]
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 5, size=(30, 30)) + np.eye(30, dtype=int) * 20
    confusion[3] = 0  # a class without validation images
    path = plot_confusion(confusion, names, tmp_path / CONFUSION)
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 1000  # room for 30 names and counts


# ----------------------------------------------------------------------------------- report + extras


def _synthetic_split(names: list[str], per_class_val: list[int], tmp_path: Path) -> SplitData:
    rng = np.random.default_rng(1)
    val_y = np.repeat(np.arange(len(names)), per_class_val)
    train_y = np.repeat(np.arange(len(names)), [3 * n for n in per_class_val])
    paths = [tmp_path / "data" / names[y] / f"{i}.png" for i, y in enumerate(val_y)]

    def images(y, p):
        return ImageData(rng.integers(0, 256, size=(len(y), 16, 16, 3), dtype=np.uint8), y, p)

    return SplitData(train=images(train_y, [Path("t")] * len(train_y)), val=images(val_y, paths), class_names=names, skipped=[])


def test_build_extras_write_the_files_report_md_links(tmp_path):
    meta = synthetic_meta()
    names = meta["class_names"]
    split = _synthetic_split(names, [10, 8, 2], tmp_path)
    probs = np.full((20, 3), 0.1)
    predicted = [0] * 8 + [1] * 2 + [0] * 3 + [1] * 5 + [0, 1]  # the synthetic confusion matrix, row by row
    probs[np.arange(20), predicted] = 0.8
    meta["config"] = {**meta["config"], "data": {"path": str(tmp_path / "data"), "val_split": 0.25, "seed": 3}}
    meta["stage_fingerprints"] = {"train": "t", "qat": "q"}
    root = tmp_path / "build" / "pets"
    folder = root / ".tflite-int8.tmp-1"
    folder.mkdir(parents=True)
    float_dir = root / "float"
    float_dir.mkdir()
    _fs.write_json(float_dir / "history.json", {"loss": [2, 1, 1.2], "val_loss": [2, 1, 1.1], "phase": ["head", "fine_tune", "fine_tune"]})
    (root / "qat").mkdir()
    _fs.write_json(root / "qat" / "history.json", {"loss": [0.9], "val_loss": [1.0]})
    _fs.write_json(root / "qat" / "edgetl.json", {"fingerprint": "q"})

    files = write_build_extras(folder, meta, split, probs, float_dir=float_dir)
    assert files == {"training_curves": CURVES, "confusion_matrix": CONFUSION, "misclassified": "misclassified.html", "model_card": CARD}
    assert meta["data"]["per_class"][names[2]] == {"train": 6, "val": 2} and meta["data"]["val_split"] == 0.25
    assert meta["scores"]["per_class"] == class_scores(meta["accuracy"]["confusion"], names)["per_class"]
    assert meta["misclassified"] == {"file": "misclassified.html", "images": 20, "misclassified": 7, "shown": 7}
    gallery = (folder / "misclassified.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/18.png" in gallery and "<script>" not in gallery  # file names relative to the data folder

    report = build_report({**meta, "accuracy": {**meta["accuracy"], "per_class": {}}, "inputs": [{}], "outputs": [{}], "note": ""})
    links = _links(report)
    assert set(links) >= set(files.values())
    for link in links:
        assert (folder / link).is_file(), link
    assert "7 of 20 validation images, 7 shown" in report
    for name in (CURVES, CONFUSION):
        assert (folder / name).read_bytes()[:8] == PNG
    card = (folder / CARD).read_text()
    assert "| `cat` | 0.667 | 0.800 | 0.727 | 10 |" in card and "seed 3" in card


def test_no_report_files_no_links():
    assert more_lines({}) == []
    lines = more_lines({"report_files": {"misclassified": "misclassified.html"}, "misclassified": {"misclassified": 0, "images": 9, "shown": 0}})
    assert lines[2] == "- [Misclassified images](misclassified.html): none: every validation image is classified correctly"


# ------------------------------------------------------------------------------------- a real build


@pytest.fixture(scope="module")
def real_build(trained_run, qat_run, shapes_dir, tmp_path_factory):
    """A tflite-int8 build reusing the session's float and QAT runs (only export, verify, the quick benchmark and the extras run)."""
    from edgetl.core.fingerprint import after_parent, stage_fingerprints
    from edgetl.pipeline.build import build

    out = tmp_path_factory.mktemp("extras-build")
    config = tiny_config(shapes_dir, out=str(out / "build"), export={"compare_ptq": False, "companion": False})
    root = out / "build" / "shapes"
    shutil.copytree(trained_run.out_dir, root / "float")
    shutil.copytree(qat_run.out_dir, root / "qat")
    qat_meta = _fs.read_json(root / "qat" / _fs.MARKER)  # made by `qat` alone: give it the fingerprint a build's QAT stage has
    qat_meta["fingerprint"] = after_parent(stage_fingerprints(config)["qat"], root / "float" / "model.keras")
    _fs.write_json(root / "qat" / _fs.MARKER, qat_meta)
    result = build(config)
    assert result.timings["qat_s"] < 30, "the QAT stage was not reused"
    return result, root


@pytest.mark.slow  # a whole build after the session's training fixtures (~30 s here: int8 conversion and verification)
def test_real_build_ships_the_card_curves_matrix_and_gallery(real_build, trained_run):
    result, root = real_build
    folder = result.out_dir
    meta = json.loads((folder / "edgetl.json").read_text())
    report = (folder / "report.md").read_text()
    for name in (CARD, CURVES, CONFUSION, "misclassified.html"):
        assert (folder / name).is_file(), name
        assert name in _links(report), name
    for link in _links(report):
        assert (folder / link).is_file(), link
    assert (folder / CURVES).read_bytes()[:8] == PNG and (folder / CONFUSION).read_bytes()[:8] == PNG

    # the training history records which epochs were thrown away; QAT follows float training in the build's curves
    history = trained_run.history
    assert len(history["discarded"]) == len(history["loss"]) and set(history["discarded"]) <= {0.0, 1.0}
    assert meta["report_files"]["training_curves"] == CURVES and meta["stage_fingerprints"]["qat"]

    # the card's figures are edgetl.json's
    card = (folder / CARD).read_text()
    acc, data = meta["accuracy"], meta["data"]
    assert data["val_images"] == acc["images"] == sum(c["val"] for c in data["per_class"].values())
    assert data["train_images"] == len(trained_run.split.train.y)
    for name, counts in data["per_class"].items():
        assert f"| `{name}` | {counts['train']} | {counts['val']} |" in card
        scores = meta["scores"]["per_class"][name]
        assert scores == class_scores(acc["confusion"], meta["class_names"])["per_class"][name]
        shown = ["n/a" if scores[k] is None else f"{scores[k]:.3f}" for k in ("precision", "recall", "f1")]
        assert f"| `{name}` | {' | '.join(shown)} | {scores['support']} |" in card
    assert f"top-1 {100 * acc['artifact_top1']:.1f}%" in card and f"| float (Keras) | {100 * acc['float_top1']:.1f}%" in card
    assert f"{100 * acc['top1_agreement_with_float']:.1f}%" in card
    assert f"{meta['latency'][0]['stats']['p50_ms']:.3f}" in card and meta["machine"]["cpu"] in card
    assert f"- tensorflow: {meta['versions']['tensorflow']}" in card

    # the gallery: as many mistakes as the confusion matrix has off its diagonal
    confusion = np.asarray(acc["confusion"])
    wrong = int(confusion.sum() - np.trace(confusion))
    assert meta["misclassified"]["misclassified"] == wrong
    page = (folder / "misclassified.html").read_text()
    assert page.count("<figure>") == min(wrong, 100)


def test_training_history_records_the_discarded_epochs(trained_run):
    """Every fit keeps its lowest-validation-loss epoch (BestWeights): the epochs after it are recorded as discarded."""
    history = trained_run.history
    saved = _fs.read_json(trained_run.out_dir / "history.json")
    assert saved["discarded"] == history["discarded"] and len(history["discarded"]) == len(history["loss"])
    inferred = discarded_epochs({key: value for key, value in history.items() if key != "discarded"})
    assert [bool(v) for v in history["discarded"]] == inferred
    for phase, first, end in phase_segments(history["phase"]):
        best = first + int(np.argmin(history["val_loss"][first:end]))
        assert not history["discarded"][best] and all(history["discarded"][best + 1 : end]), phase
