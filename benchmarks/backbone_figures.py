"""Measure every registered backbone once and write ``edgetl/ml/backbones/figures.json``.

For each backbone and width multiplier, at the default input size with a 1000-class head:
parameters, MACs, the pooled feature width, and the size of the model as TFLite fp32 and as
full-integer int8 (PTQ-calibrated on two random images; the sizes do not depend on the weights'
values). ``edgetl backbones`` and the flash-budget advice read the table instead of building six
models. Run after changing a backbone's architecture (a few minutes):

    python benchmarks/backbone_figures.py [--out edgetl/ml/backbones/figures.json] [--backbones mobilenet_v2 ...]

``tests/unit/ml/test_backbone_figures.py`` checks the stored counts against the real models.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import time
from pathlib import Path

import numpy as np


def measure_entry(spec, alpha) -> dict:
    from edgetl.export.tflite import convert
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.figures import STORED_CLASSES, measure

    entry = measure(spec, alpha=alpha, input_size=spec.default_input_size, classes=STORED_CLASSES)
    model, contract = build_classifier(spec, STORED_CLASSES, spec.default_input_size, alpha, "none")
    size = spec.default_input_size
    representative = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    entry["float_bytes"] = len(convert(model, "tflite-fp32", representative=None, contract=contract))
    entry["int8_bytes"] = len(convert(model, "tflite-int8", representative=representative, contract=contract))
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: edgetl/ml/backbones/figures.json")
    parser.add_argument("--backbones", nargs="*", default=None, help="only these (the others keep their stored entries)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from edgetl.ml.backbones.figures import FIGURES_FILE, STORED_CLASSES
    from edgetl.ml.backbones.spec import BACKBONES

    out = args.out or FIGURES_FILE
    old = json.loads(out.read_text(encoding="utf-8"))["entries"] if out.is_file() else []
    entries = [e for e in old if args.backbones and e["backbone"] not in args.backbones and e["backbone"] in BACKBONES.names()]
    for name, spec in BACKBONES.items():
        if args.backbones and name not in args.backbones:
            continue
        for alpha in spec.alphas or (None,):
            start = time.perf_counter()
            entries.append(measure_entry(spec, alpha))
            logging.info("%s alpha %s: %s (%.0f s)", name, alpha, entries[-1], time.perf_counter() - start)
    entries.sort(key=lambda e: (e["backbone"], e["alpha"] or 0.0))
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("tensorflow", "tf-keras")}
    table = {
        "about": "edgetl backbones at their default input size with a 1000-class head; written by benchmarks/backbone_figures.py",
        "classes": STORED_CLASSES, "versions": versions, "entries": entries,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({len(entries)} entries)")  # noqa: T201 - a script


if __name__ == "__main__":
    main()
