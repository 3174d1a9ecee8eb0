"""Foundation benchmarks, each a ratio against a baseline measured in the same run.

1. Phase-1 epoch time: the head trained on cached backbone features (edgetl's path when
   augmentation is off) vs plain Keras ``model.fit`` on the same images with the backbone frozen.
   Target: >= 10x faster per epoch.
2. LiteRT latency of full-integer int8 vs fp32 TFLite, MobileNetV2 1.0 at 224 px, batch 1,
   1 thread. Target: int8 <= 0.5x fp32.

Usage:
    python benchmarks/bench_foundation.py [--images 256] [--size 224] [--runs 200] [--out benchmarks/out]

Prints a Markdown table and writes ``<out>/foundation.json``. Weights are random (``none``):
latency does not depend on weight values, and epoch time does not depend on what is learned.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def epoch_times(args) -> dict:
    from edgetl.core.config import validate
    from edgetl.core.contract import PreprocessContract
    from edgetl.data.split import ImageData, SplitData
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES
    from edgetl.ml.phases import _compile, freeze_backbone, make_dataset, train_head_on_features

    k = keras()
    rng = np.random.default_rng(0)
    n, size, classes = args.images, args.size, 5
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    split = SplitData(
        train=ImageData(pixels[: n * 3 // 4], labels[: n * 3 // 4], []),
        val=ImageData(pixels[n * 3 // 4 :], labels[n * 3 // 4 :], []),
        class_names=[f"c{i}" for i in range(classes)],
        skipped=[],
    )
    contract = PreprocessContract(input_size=size)
    epochs = args.epochs
    config = validate({"model": {"weights": "none"}, "train": {"head_epochs": epochs}, "data": {"batch_size": 32}}, "bench")

    class EpochTimer(k.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    spec = BACKBONES.get("mobilenet_v2")
    # Baseline: plain Keras fit on images, backbone frozen (it still runs forward every epoch).
    model = build_classifier(spec, classes, size, 1.0, "none").model
    freeze_backbone(model)
    _compile(model, 1e-3)
    timer = EpochTimer()
    model.fit(
        make_dataset(split.train, contract, 32, shuffle=True, augment=False, seed=0),
        validation_data=make_dataset(split.val, contract, 32, shuffle=False, augment=False, seed=0),
        epochs=epochs, verbose=0, callbacks=[timer],
    )
    plain = timer.times

    # edgetl: features once, then the head alone. Patch the head's fit to time its epochs.
    model = build_classifier(spec, classes, size, 1.0, "none").model
    freeze_backbone(model)
    timer = EpochTimer()
    original_fit = k.Model.fit

    def timed_fit(self, *a, **kw):
        kw["callbacks"] = list(kw.get("callbacks", [])) + [timer]
        return original_fit(self, *a, **kw)

    k.Model.fit = timed_fit
    start = time.perf_counter()
    try:
        train_head_on_features(model, split, contract, config, lambda *a, **kw: None)
    finally:
        k.Model.fit = original_fit
    total_cached = time.perf_counter() - start
    cached = timer.times
    steady = slice(1, None)  # the first epoch of each includes tracing
    plain_epoch = float(np.median(plain[steady]))
    cached_epoch = float(np.median(cached[steady]))
    return {
        "images": n,
        "input_size": size,
        "epochs": epochs,
        "plain_fit_epoch_s": plain_epoch,
        "cached_features_epoch_s": cached_epoch,
        "speedup_per_epoch": plain_epoch / cached_epoch,
        "cached_total_s_including_feature_extraction": total_cached,
        "plain_total_s": float(sum(plain)),
        "speedup_whole_phase": float(sum(plain)) / total_cached,
    }


def latency_ratio(args, out: Path) -> dict:
    from edgetl.bench.harness import bench_tflite
    from edgetl.core.contract import PreprocessContract
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES

    spec = BACKBONES.get("mobilenet_v2")
    model = build_classifier(spec, 10, 224, 1.0, "none").model
    contract = PreprocessContract(input_size=224)
    rng = np.random.default_rng(0)
    representative = rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    paths = {}
    for target in ("tflite-fp32", "tflite-int8"):
        paths[target] = export_tflite(model, target, out / f"mobilenet_v2_224_{target}.tflite", representative=representative, contract=contract)
    results = {}
    for target, path in paths.items():
        (result,) = bench_tflite(path, threads=[1], warmup=args.warmup, runs=args.runs)
        results[target] = {"p50_ms": result.stats.p50_ms, "p90_ms": result.stats.p90_ms, "p99_ms": result.stats.p99_ms, "size_bytes": path.stat().st_size}
    results["int8_over_fp32_p50"] = results["tflite-int8"]["p50_ms"] / results["tflite-fp32"]["p50_ms"]
    results["threads"] = 1
    results["warmup"], results["runs"] = args.warmup, args.runs
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="input size for the epoch-time comparison")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    from edgetl.bench.board_runner import machine_info
    from edgetl.core.metadata import package_versions

    epochs = epoch_times(args)
    latency = latency_ratio(args, args.out)
    report = {"machine": machine_info(), "versions": package_versions(), "phase1_epoch": epochs, "tflite_latency": latency}
    (args.out / "foundation.json").write_text(json.dumps(report, indent=2))
    print("| measurement | baseline | edgetl | ratio | target |\n|---|---|---|---|---|")
    print(f"| phase-1 epoch, MobileNetV2 1.0 @ {epochs['input_size']} px, {epochs['images']} images | plain fit {epochs['plain_fit_epoch_s']:.2f} s | cached features {epochs['cached_features_epoch_s'] * 1000:.1f} ms | {epochs['speedup_per_epoch']:.0f}x faster | >= 10x |")
    print(f"| whole phase 1 ({epochs['epochs']} epochs, feature extraction included) | {epochs['plain_total_s']:.1f} s | {epochs['cached_total_s_including_feature_extraction']:.1f} s | {epochs['speedup_whole_phase']:.1f}x | - |")
    print(f"| LiteRT p50, MobileNetV2 1.0 @ 224 px, 1 thread | fp32 {latency['tflite-fp32']['p50_ms']:.2f} ms | int8 {latency['tflite-int8']['p50_ms']:.2f} ms | {latency['int8_over_fp32_p50']:.2f}x | <= 0.5x |")
    print(f"\nmachine: {report['machine'].get('cpu')} ({report['machine'].get('cores')} cores)")


if __name__ == "__main__":
    main()
