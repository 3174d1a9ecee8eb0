"""VGG16 with the transfer-learning tutorial's head beside the mobile backbones, at 224 px.

What the tutorial's recipe (models/seed_vgg16.toml) costs on a device: VGG16 with
GlobalAveragePooling2D -> Dense(1024, relu) -> Dense(10, softmax), next to MobileNetV2 (alpha 1.0)
and EfficientNet-Lite0 with edgetl's plain head (pooling, dropout, Dense(10)). For each:
parameters, multiply-accumulates, fp32 and int8 TFLite file sizes, and LiteRT latency at 1
thread (median and p90 of the per-round medians and p90s), measured in one run with edgetl's
own harness (:func:`edgetl.bench.harness.bench_tflite`), the models' rounds interleaved so
machine load hits all of them alike. The int8 model is the graph a QAT build exports
(``quantize_model`` + calibrated ranges, no training). Random weights: size and latency do not
depend on them.

Usage:
    PYTHONPATH=. .venv/bin/python benchmarks/bench_vgg16.py [--size 224] [--rounds 3] [--runs 30] [--out benchmarks/out/vgg16] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

#: (label, backbone, alpha, head_units): the tutorial's VGG16 head, the others with edgetl's default head.
MODELS = (
    ("vgg16 + Dense(1024) head", "vgg16", None, (1024,)),
    ("mobilenet_v2 1.0", "mobilenet_v2", 1.0, ()),
    ("efficientnet_lite0", "efficientnet_lite0", None, ()),
)
CLASSES = 10


def export_pair(backbone: str, alpha: float | None, head_units: tuple[int, ...], size: int, folder: Path, reuse: bool = False) -> dict:
    """fp32 and QAT-form int8 TFLite files of one classifier, and its parameter and MAC counts
    (``reuse``: keep files an earlier run left in ``folder``; the conversions are most of the time)."""
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.backbones import build_classifier, count_macs
    from edgetl.ml.backbones.spec import BACKBONES
    from edgetl.ml.quantize import calibrate_ranges, quantize_model
    from edgetl.runtime.litert import op_report

    spec = BACKBONES.get(backbone)
    model, contract = build_classifier(spec, CLASSES, size, alpha, "none", head_units=head_units)
    pixels = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    paths = {"fp32": folder / f"{backbone}-fp32.tflite", "int8": folder / f"{backbone}-int8.tflite"}
    if not (reuse and paths["fp32"].is_file()):
        export_tflite(model, "tflite-fp32", paths["fp32"], representative=None, contract=contract)
    if not (reuse and paths["int8"].is_file()):
        q_model = quantize_model(model, spec.qat_recipe)
        calibrate_ranges(q_model, [contract.normalize(pixels[i : i + 8]) for i in range(0, len(pixels), 8)])
        export_tflite(q_model, "tflite-int8", paths["int8"], representative=pixels, contract=contract)
    return {
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "paths": paths,
        "size_bytes": {key: path.stat().st_size for key, path in paths.items()},
        "int8_full_integer": op_report(paths["int8"])["full_integer"],
        "export_s": time.perf_counter() - start,
    }


def table(rows: list[dict], size: int) -> str:
    lines = [
        f"| model ({size} px, {CLASSES} classes) | parameters | GMACs | fp32 size | int8 size | fp32 p50 / p90 | int8 p50 / p90 | int8 full-integer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat = r["latency"]
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.2f} | {r['size_bytes']['fp32'] / 1e6:.1f} MB | "
            f"{r['size_bytes']['int8'] / 1e6:.1f} MB | {lat['fp32']['p50_ms']:.2f} / {lat['fp32']['p90_ms']:.2f} ms | "
            f"{lat['int8']['p50_ms']:.2f} / {lat['int8']['p90_ms']:.2f} ms | {'yes' if r['int8_full_integer'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    from edgetl.bench.harness import bench_tflite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model and precision")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per round (after 10 warm-up runs)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/vgg16"))
    parser.add_argument("--reuse", action="store_true", help="time the .tflite files an earlier run left in --out instead of converting again")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for label, backbone, alpha, head_units in MODELS:
        rows.append({"label": label, "backbone": backbone, "head_units": list(head_units), **export_pair(backbone, alpha, head_units, args.size, args.out, args.reuse)})
    samples: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.rounds):
        for index, row in enumerate(rows):
            for key, path in row["paths"].items():
                stats = bench_tflite(path, threads=[1], warmup=10, runs=args.runs)[0].stats.to_dict()
                samples.setdefault((index, key), []).append(stats)
    for index, row in enumerate(rows):
        row["latency"] = {
            key: {
                "p50_ms": float(np.median([s["p50_ms"] for s in samples[(index, key)]])),
                "p90_ms": float(np.median([s["p90_ms"] for s in samples[(index, key)]])),
                "rounds": samples[(index, key)],
            }
            for key in row["paths"]
        }
        row["paths"] = {key: str(path) for key, path in row["paths"].items()}
    text = table(rows, args.size)
    print(text)
    (args.out / "bench_vgg16.json").write_text(json.dumps({"size": args.size, "rounds": args.rounds, "runs": args.runs, "rows": rows}, indent=2))
    (args.out / "bench_vgg16.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
