"""TFLite conversion time: edgetl's route (one frozen inference function) against
``TFLiteConverter.from_keras_model`` (writes the Keras model as a SavedModel and reads it back),
on the same Keras models in one run, with the flatbuffers checked identical op for op, tensor for
tensor, weight for weight.

Cases (random weights: conversion time does not depend on them):
- ``mnv2-float-int8``: MobileNetV2 1.0, float model -> PTQ int8 (converter calibration);
- ``mnv2-qat-int8``: the same model QAT-wrapped by edgetl.ml.quantize (FakeQuant ranges) -> int8;
- ``mnv3s-qat-int8``: MobileNetV3-Small, QAT-wrapped (split hard-swish recipe) -> int8;
- ``mnv2-float-fp32``: MobileNetV2 1.0 -> fp32.

Usage:
    PYTHONPATH=. python benchmarks/bench_convert.py [--size 224] [--rounds 2] [--out benchmarks/out/convert]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def make_model(case: str, size: int):
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES
    from edgetl.ml.quantize import calibrate_ranges, quantize_model

    name = "mobilenet_v3_small" if case.startswith("mnv3s") else "mobilenet_v2"
    spec = BACKBONES.get(name)
    model, contract = build_classifier(spec, 10, size, 1.0, "none")
    pixels = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    if "-qat-" in case:
        model = quantize_model(model, spec.qat_recipe)
        calibrate_ranges(model, [contract.normalize(pixels)])
    return model, contract, pixels


def main() -> None:
    from edgetl.export import tflite as exporter
    from tests.helpers import structure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=["mnv2-float-int8", "mnv2-qat-int8", "mnv3s-qat-int8", "mnv2-float-fp32"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/convert"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for case in args.cases:
        target = "tflite-" + case.rsplit("-", 1)[1]
        model, contract, pixels = make_model(case, args.size)
        representative = pixels if target == "tflite-int8" else None
        times = {"edgetl": [], "from_keras_model": []}
        outputs = {}
        for _ in range(args.rounds):  # alternate the two routes so machine load hits both alike
            start = time.perf_counter()
            outputs["edgetl"] = exporter.convert(model, target, representative=representative, contract=contract)
            times["edgetl"].append(time.perf_counter() - start)
            start = time.perf_counter()
            outputs["from_keras_model"] = exporter.convert(model, target, representative=representative, contract=contract, route="savedmodel")
            times["from_keras_model"].append(time.perf_counter() - start)
        identical = structure(outputs["edgetl"]) == structure(outputs["from_keras_model"])
        median = {k: statistics.median(v) for k, v in times.items()}
        results[case] = {
            "target": target,
            "times_s": times,
            "median_s": median,
            "ratio_edgetl_over_from_keras_model": median["edgetl"] / median["from_keras_model"],
            "identical_structure": identical,
            "ops": len(structure(outputs["edgetl"])),
        }
        print(f"{case:18s} edgetl {median['edgetl']:7.1f} s  from_keras_model {median['from_keras_model']:7.1f} s  "
              f"ratio {results[case]['ratio_edgetl_over_from_keras_model']:.3f}  identical={identical}", flush=True)
    (args.out / "convert.json").write_text(json.dumps({"size": args.size, "rounds": args.rounds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
