"""Each backbone's size and cost, measured once and stored as data (``figures.json`` beside this file).

Building every backbone to count its parameters and MACs took ``edgetl backbones`` ~50 s; the
counts do not change unless the architecture does, so they are measured by
``python benchmarks/backbone_figures.py`` (which also converts each model to TFLite fp32 and int8
for the file sizes) and read from ``figures.json`` here. ``tests/unit/ml/test_backbone_figures.py``
rebuilds the real models and checks the stored counts.

One entry per backbone and width multiplier, at the default input size, with a 1000-class head
(global average pooling + dense, as keras.applications publishes its counts). A head of ``C``
classes on ``F`` features holds ``(F + 1) * C`` parameters and costs ``F * C`` MACs, so the
figures for any class count follow from the stored ones (:func:`figures_for`); parameters do not
depend on the input size, MACs do (another size: :func:`measure`, which builds the model).

Reading the table imports no TensorFlow; :func:`measure` does.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from edgetl.ml.backbones.spec import BackboneSpec

#: The stored table (regenerate with ``python benchmarks/backbone_figures.py``).
FIGURES_FILE = Path(__file__).with_name("figures.json")

#: Head size the stored figures are for.
STORED_CLASSES = 1000


@cache
def stored_table() -> dict[str, Any]:
    """The content of ``figures.json``: ``{"classes", "versions", "entries": [...]}``."""
    return json.loads(FIGURES_FILE.read_text(encoding="utf-8"))


def stored_entry(name: str, alpha: float | None) -> dict[str, Any] | None:
    """The stored entry of backbone ``name`` at width ``alpha`` (its default size), or None."""
    for entry in stored_table()["entries"]:
        if entry["backbone"] == name and entry["alpha"] == alpha:
            return entry
    return None


def with_classes(entry: dict[str, Any], classes: int) -> dict[str, Any]:
    """``entry``'s figures with a ``classes``-way head instead of the stored 1000-way one.

    File sizes move by the head's weights: 4 bytes a weight in float, 1 byte a weight plus a
    4-byte bias in int8.
    """
    features, delta = entry["features"], classes - entry["classes"]
    out = dict(entry, classes=classes)
    out["params"] = entry["params"] + (features + 1) * delta
    out["macs"] = entry["macs"] + features * delta
    out["float_bytes"] = entry["float_bytes"] + 4 * (features + 1) * delta
    out["int8_bytes"] = entry["int8_bytes"] + (features + 4) * delta
    return out


def figures_for(spec: BackboneSpec, *, alpha: float | None = None, input_size: int | None = None, classes: int = STORED_CLASSES) -> dict[str, Any]:
    """Parameters, MACs and file sizes of ``spec`` at ``alpha``/``input_size`` with a ``classes`` head.

    From the stored table when the input size is the default one (any class count); otherwise
    the model is built (:func:`measure`: seconds to a minute) and the file sizes are taken from the
    stored entry (weights do not depend on the input size).

    Raises:
        ConfigError: an alpha or input size the backbone does not accept.
    """
    alpha = spec.default_alpha if alpha is None else alpha
    input_size = spec.default_input_size if input_size is None else input_size
    spec.check_alpha(alpha)
    spec.check_input_size(input_size)
    entry = stored_entry(spec.name, alpha)
    if entry is None or input_size != entry["input_size"]:
        measured = measure(spec, alpha=alpha, input_size=input_size, classes=STORED_CLASSES)
        entry = {**(entry or {"float_bytes": 4 * measured["params"], "int8_bytes": measured["params"]}), **measured}
    return with_classes(entry, classes)


def measure(spec: BackboneSpec, *, alpha: float | None, input_size: int, classes: int = STORED_CLASSES) -> dict[str, Any]:
    """Build the classifier (random weights) and count: ``backbone, alpha, input_size, classes, features, params, macs``."""
    from edgetl.ml.backbones import build_classifier, count_macs  # builds models (TensorFlow): only here

    model, _ = build_classifier(spec, classes, input_size, alpha, "none")
    features = int(model.get_layer("edgetl_logits").input_shape[-1])
    return {
        "backbone": spec.name, "alpha": alpha, "input_size": input_size, "classes": classes, "features": features,
        "params": int(model.count_params()), "macs": count_macs(model),
    }


def describe_backbone(
    spec: BackboneSpec, num_classes: int = 1000, *, alpha: float | None = None, input_size: int | None = None
) -> dict[str, Any]:
    """What ``edgetl backbones`` shows of ``spec``: its capabilities and its figures at ``alpha``/``input_size``
    (defaults: the backbone's) with a ``num_classes`` head.

    The figures come from the stored table (:func:`figures_for`); only an input size
    other than the default builds the model (MACs depend on it).
    """
    figures = figures_for(spec, alpha=alpha, input_size=input_size, classes=num_classes)
    return {
        "name": spec.name,
        "default_input_size": spec.default_input_size,
        "min_input_size": spec.min_input_size,
        "pretrained_sizes": list(spec.pretrained_sizes),
        "alphas": list(spec.alphas),
        "default_alpha": spec.default_alpha,
        "alpha": figures["alpha"],
        "input_size": figures["input_size"],
        "classes": figures["classes"],
        "params": figures["params"],
        "macs": figures["macs"],
        "float_bytes": figures["float_bytes"],
        "int8_bytes": figures["int8_bytes"],
        "qat_recipe": spec.qat_recipe,
        "imagenet_weights": spec.weights_file is not None or spec.imagenet_weights is not None,
        "targets": list(spec.targets),
        "description": spec.description,
    }
