"""MODEL_CARD.md from a small synthetic build result: every figure comes from the metadata."""

from __future__ import annotations

import copy

import pytest

from edgetl.pipeline.model_card import class_scores, limitations, render_model_card

NAMES = ["cat", "dog | wolf", "<script>alert(1)</script>"]
# rows: true class, columns: predicted; the third class is never predicted
CONFUSION = [[8, 2, 0], [3, 5, 0], [1, 1, 0]]


def synthetic_meta() -> dict:
    """A build's edgetl.json, cut down to what the card reads."""
    return {
        "name": "pets",
        "target": "tflite-int8",
        "model_file": "model.tflite",
        "dtype": "int8",
        "runtime": "litert",
        "backbone": "mobilenet_v2",
        "class_names": NAMES,
        "size_bytes": 123456,
        "preprocessing": {"input_size": 96, "resize": "bilinear", "channel_order": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3},
        "int8_ranges": "learned in quantization-aware training",
        "quantization_mode": "qat",
        "fingerprint": "abc123",
        "versions": {"edgetl": "0.1.0", "tensorflow": "2.21.0", "ai-edge-litert": "2.3.0"},
        "config": {"model": {"weights": "none", "alpha": 0.35}},
        "accuracy": {
            "split": "validation", "images": 20, "float_top1": 0.70, "float_top5": 1.0, "artifact_top1": 0.65, "artifact_top5": 1.0,
            "top1_drop": 0.05, "top1_agreement_with_source": 0.95, "top1_agreement_with_float": 0.85, "source": "qat",
            "source_keras_top1": 0.65, "confusion": CONFUSION,
        },
        "latency": [{"runtime": "litert", "threads": 1, "runtime_version": "2.3.0", "stats": {
            "p50_ms": 1.234, "p90_ms": 1.5, "p99_ms": 2.0, "mean_ms": 1.3, "runs": 50, "warmup": 5}}],
        "machine": {"cpu": "Test CPU 9000", "cores": 4, "machine": "x86_64", "distro": "Debian 12", "python": "3.11.7"},
        "data": {
            "path": "/data/pets", "val_path": None, "val_split": 0.2, "seed": 7, "train_images": 80, "val_images": 20, "skipped_files": 2,
            "per_class": {NAMES[0]: {"train": 50, "val": 10}, NAMES[1]: {"train": 25, "val": 8}, NAMES[2]: {"train": 5, "val": 2}},
        },
    }


def test_class_scores_from_the_confusion_matrix():
    scores = class_scores(CONFUSION, NAMES)
    cat, dog, never = (scores["per_class"][n] for n in NAMES)
    assert cat["precision"] == pytest.approx(8 / 12) and cat["recall"] == pytest.approx(8 / 10)
    assert cat["f1"] == pytest.approx(2 * 8 / (2 * 8 + 4 + 2))
    assert dog["precision"] == pytest.approx(5 / 8) and dog["recall"] == pytest.approx(5 / 8)
    assert never["precision"] is None and never["recall"] == 0.0 and never["f1"] == 0.0 and never["support"] == 2
    assert scores["macro_recall"] == pytest.approx((0.8 + 5 / 8 + 0) / 3)
    assert scores["macro_precision"] == pytest.approx((8 / 12 + 5 / 8 + 0) / 3)


def test_a_class_without_images_has_no_recall_and_is_left_out_of_the_averages():
    scores = class_scores([[3, 0], [0, 0]], ["a", "b"])
    assert scores["per_class"]["b"]["recall"] is None and scores["per_class"]["b"]["f1"] is None
    assert scores["macro_recall"] == 1.0


def test_card_numbers_come_from_the_metadata():
    card = render_model_card(synthetic_meta())
    for heading in ("## Intended use", "## Data", "## Accuracy of the shipped artifact", "## int8 vs float", "## Latency", "## Limitations", "## Versions"):
        assert heading in card, heading
    # data summary and per-class counts
    assert "`/data/pets`" in card and "100 used, 80 for training and 20 for validation" in card and "seed 7" in card
    assert "| `cat` | 50 | 10 |" in card
    # per-class precision/recall/F1 (the pipe in a class name does not break the table)
    assert "| `cat` | 0.667 | 0.800 | 0.727 | 10 |" in card
    assert "| `dog \\| wolf` | 0.625 | 0.625 | 0.625 | 8 |" in card
    assert "| n/a | 0.000 | 0.000 | 2 |" in card
    # int8 vs float, latency, machine, versions
    assert "65.0%" in card and "70.0%" in card and "5.0 pts lower than float" in card and "85.0%" in card
    assert "1.234" in card and "Test CPU 9000" in card and "4 logical cores" in card
    assert "- tensorflow: 2.21.0" in card and "- runtime measured: LiteRT 2.3.0" in card


def test_limitations_follow_the_figures():
    meta = synthetic_meta()
    found = " ".join(limitations(meta))
    assert "Small validation set: 20 images" in found and "5.0 points" in found
    assert "Imbalanced classes: `cat` has 50 training images" in found and "(10.0x)" in found
    assert "Weak classes" in found and "`dog | wolf`" in found
    assert "`dog | wolf` taken for `cat` 3x" in found  # the most frequent confusion first
    assert "int8 top-1 is 5.0 points lower than float" in found
    assert "Trained from scratch" in found and "96x96" in found

    balanced = copy.deepcopy(meta)
    balanced["accuracy"].update(images=400, top1_drop=0.0, confusion=[[200, 0, 0], [0, 100, 0], [0, 0, 100]])
    balanced["data"]["per_class"] = {n: {"train": 400, "val": 100 + 100 * (n == "cat")} for n in NAMES}
    balanced["config"]["model"]["weights"] = "imagenet"
    quiet = " ".join(limitations(balanced))
    for absent in ("Small validation set", "Imbalanced", "Weak classes", "confusions", "Quantization costs", "from scratch"):
        assert absent not in quiet, absent
    assert "Input size" in quiet and "Data domain" in quiet


def test_a_float_artifact_says_it_is_not_int8():
    meta = synthetic_meta()
    meta.update(dtype="float32", target="tflite-fp32", quantization_mode=None)
    meta["accuracy"]["source"] = "float"
    card = render_model_card(meta)
    assert "is float32, not int8" in card and "95.0%" in card
