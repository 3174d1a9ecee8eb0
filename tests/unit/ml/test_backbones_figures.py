"""The stored backbone figures (``edgetl/ml/backbones/figures.json``) against the real models.

The fast test builds one small backbone; the slow one rebuilds every stored entry and converts it
to TFLite fp32 and int8 for the file sizes (regenerate the table with
``python benchmarks/backbone_figures.py`` when it fails after an architecture change).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.ml.backbones.figures import STORED_CLASSES, figures_for, measure, stored_entry, stored_table, with_classes
from edgetl.ml.backbones.spec import BACKBONES


def test_every_backbone_and_alpha_has_an_entry():
    entries = stored_table()["entries"]
    stored = {(e["backbone"], e["alpha"]) for e in entries}
    wanted = {(name, alpha) for name, spec in BACKBONES.items() for alpha in (spec.alphas or (None,))}
    assert stored == wanted
    for e in entries:
        spec = BACKBONES.get(e["backbone"])
        assert e["input_size"] == spec.default_input_size and e["classes"] == STORED_CLASSES
        assert 0 < e["int8_bytes"] < e["float_bytes"] and e["params"] > 0 and e["macs"] > 0


def test_a_small_backbone_matches_its_real_model():
    """MobileNetV2 at alpha 0.35: the stored counts are the real model's, and the head formula gives
    the counts of a 10-class model."""
    spec = BACKBONES.get("mobilenet_v2")
    entry = stored_entry("mobilenet_v2", 0.35)
    real = measure(spec, alpha=0.35, input_size=224, classes=10)
    ten = with_classes(entry, 10)
    assert (ten["params"], ten["macs"], ten["features"]) == (real["params"], real["macs"], real["features"])
    assert figures_for(spec, alpha=0.35, classes=10)["params"] == real["params"]  # the stored table answers


@pytest.mark.slow
@pytest.mark.matrix  # every backbone x alpha with a real int8 conversion (~10 min): run by hand, `pytest -m matrix`
@pytest.mark.parametrize("key", sorted({(e["backbone"], e["alpha"]) for e in stored_table()["entries"]}, key=str), ids=lambda key: f"{key[0]}-{key[1]}")
def test_stored_entry_matches_the_real_model(key):
    from edgetl.export.tflite import convert
    from edgetl.ml.backbones import build_classifier

    name, alpha = key
    spec = BACKBONES.get(name)
    entry = stored_entry(name, alpha)
    real = measure(spec, alpha=alpha, input_size=spec.default_input_size)
    assert {k: entry[k] for k in real} == real
    model, contract = build_classifier(spec, STORED_CLASSES, spec.default_input_size, alpha, "none")
    size = spec.default_input_size
    representative = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    int8 = len(convert(model, "tflite-int8", representative=representative, contract=contract))
    assert abs(int8 - entry["int8_bytes"]) / entry["int8_bytes"] < 0.01
