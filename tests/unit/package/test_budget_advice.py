"""The --flash-budget advice: int8, a smaller alpha, a named smaller backbone, or none fits (from the stored figures)."""

from __future__ import annotations

import re

from edgetl.core.units import human_size
from edgetl.ml.backbones.figures import stored_entry, with_classes
from edgetl.package.budget_advice import flash_advice

CLASSES = 10


def meta(backbone: str, alpha: float | None, dtype: str = "int8") -> dict:
    return {
        "backbone": backbone, "dtype": dtype, "class_names": [f"c{i}" for i in range(CLASSES)],
        "config": {"model": {"name": backbone, "alpha": alpha, "input_size": 96}},
    }


def size(backbone: str, alpha: float | None, dtype: str = "int8") -> int:
    entry = with_classes(stored_entry(backbone, alpha), CLASSES)
    return entry["int8_bytes" if dtype == "int8" else "float_bytes"]


def test_a_float_model_is_told_int8_fits():
    model = size("mobilenet_v2", 1.0, "fp32")
    advice = flash_advice(model, size("mobilenet_v2", 1.0) + 50_000, meta("mobilenet_v2", 1.0, "fp32"))
    assert "`--target tflite-int8`" in advice and "fits" in advice, advice


def test_a_smaller_alpha_of_the_same_backbone_is_named():
    budget = (size("mobilenet_v2", 0.5) + size("mobilenet_v2", 0.75)) // 2
    advice = flash_advice(size("mobilenet_v2", 1.0), budget, meta("mobilenet_v2", 1.0))
    assert "mobilenet_v2 at --alpha 0.5 " in advice and "fits" in advice, advice
    assert "0.35" not in advice  # the largest that fits, not the smallest


def test_a_smaller_backbone_is_named_when_no_alpha_helps():
    """EfficientNet-B0 has no width multiplier: the largest other backbone under the budget is named."""
    budget = size("mobilenet_v2", 1.0) + 1000
    advice = flash_advice(size("efficientnet_b0", None), budget, meta("efficientnet_b0", None))
    named = re.findall(r"--model (\w+)(?: --alpha ([\d.]+))? \(about ([^)]+)\)", advice)
    assert named, advice
    for backbone, alpha, shown in named:
        estimate = size(backbone, float(alpha) if alpha else None)
        assert estimate <= budget and human_size(estimate) == shown, (backbone, alpha, advice)


def test_already_the_smallest_says_none_fits():
    """The case the old message got wrong: a model already at alpha 0.35 was told to use --alpha 0.35."""
    advice = flash_advice(size("mobilenet_v2", 0.35), 100_000, meta("mobilenet_v2", 0.35))
    assert "none of edgetl's backbones fits" in advice and "--alpha 0.35" not in advice, advice


def test_a_model_without_edgetl_metadata_gets_general_advice():
    advice = flash_advice(5_000_000, 1_000_000, None)
    assert "smaller backbone" in advice and "--alpha" in advice
