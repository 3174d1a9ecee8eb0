"""Per-backbone QAT benchmark: float vs PTQ int8 vs QAT int8 accuracy, size, LiteRT latency.

For every registered backbone (or those named), on one generated dataset hard enough that float
accuracy stays below 100% (six shape classes, two of them near-twins, pentagon and hexagon, small
and noisy): ``edgetl build --target tflite-int8`` (train from scratch, QAT, full-integer int8,
plus the PTQ int8 comparison) and ``--target tflite-fp32`` on the same float model, then LiteRT
latency of fp32 and int8 at 1 thread measured back to back in this process.

Usage:
    python benchmarks/bench_backbones.py [--backbones mobilenet_v3_small efficientnet_b0]
        [--size 48] [--images-per-class 200] [--epochs 100] [--patience 12] [--out benchmarks/out/backbones]

Writes ``<out>/<backbone>.json`` as each finishes and prints a Markdown table at the end
(``--table`` prints the table from existing JSON files without running anything).

    python benchmarks/bench_backbones.py --latency-size 224 --out benchmarks/out/latency

measures fp32 vs int8 LiteRT latency at 224 px instead (random weights, PTQ-calibrated int8 of the
same edgetl-form graph): at 48 px the fixed per-op cost of int8 hides its arithmetic savings.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "pentagon", "hexagon")


def make_data(root: Path, args) -> Path:
    from edgetl.data.synthetic import SUPPORTED_SHAPES, make_shapes_dataset

    data = root / "data"
    if not data.is_dir():
        make_shapes_dataset(
            data, images_per_class=args.images_per_class, image_size=64, seed=3,
            shapes=SUPPORTED_SHAPES if args.all_shapes else SHAPES, noise=args.noise,
            min_scale=args.min_scale, max_scale=args.max_scale, palette="light-on-dark",
        )
    return data


def settings(backbone: str, data: Path, out: Path, args, target: str) -> dict:
    return {
        "name": backbone,
        "target": target,
        "out": str(out / "build"),
        "model": {"name": backbone, "input_size": args.size, "weights": "none", "dropout": 0.1},
        "data": {"path": str(data), "val_split": args.val_split, "seed": args.seed, "batch_size": 32},
        "train": {
            "head_epochs": 2, "head_lr": args.lr, "fine_tune_epochs": args.epochs, "augment": not args.no_augment, "patience": args.patience,
            "schedule": args.schedule, "clean_epochs": args.clean_epochs,
        },
        "qat": {"epochs": args.qat_epochs, "lr": args.qat_lr},
        "export": {"representative_samples": 200},
        "bench": {"warmup": 5, "runs": 20, "threads": [1]},
    }


def run_one(backbone: str, data: Path, out: Path, args) -> dict:
    from edgetl.bench.harness import bench_tflite
    from edgetl.core.config import validate
    from edgetl.pipeline.build import build

    start = time.perf_counter()
    int8 = build(validate(settings(backbone, data, out, args, "tflite-int8"), "bench"), force=False)
    fp32 = build(validate(settings(backbone, data, out, args, "tflite-fp32"), "bench"), force=False)
    wall = time.perf_counter() - start
    meta = json.loads((int8.out_dir / "edgetl.json").read_text())
    fp32_meta = json.loads((fp32.out_dir / "edgetl.json").read_text())
    acc = meta["accuracy"]
    ptq = acc["ptq_comparison"]
    ptq_meta = json.loads((int8.out_dir.parent / "ptq-int8" / "edgetl.json").read_text())
    # Latency: fp32 and int8 alternately, several rounds, so drift hits both alike.
    lat = {"fp32": [], "int8": []}
    for _ in range(args.rounds):
        for key, path in (("fp32", fp32.artifact), ("int8", int8.artifact)):
            lat[key].append(bench_tflite(path, threads=[1], warmup=20, runs=args.runs)[0].stats.to_dict())
    p50 = {key: float(np.median([r["p50_ms"] for r in rows])) for key, rows in lat.items()}
    return {
        "backbone": backbone,
        "input_size": args.size,
        "val_images": acc["images"],
        "float_top1": acc["float_top1"],
        "ptq_int8_top1": ptq["artifact_top1"],
        "qat_keras_top1": acc["source_keras_top1"],
        "qat_int8_top1": acc["artifact_top1"],
        "qat_int8_agreement_with_float": acc["top1_agreement_with_float"],
        "ptq_int8_agreement_with_float": ptq["top1_agreement_with_float"],
        "qat_int8_full_integer": meta["graph"]["full_integer"],
        "ptq_int8_full_integer": ptq_meta["graph"]["full_integer"],
        "float_ops": meta["graph"]["float_ops"],
        "ops": meta["graph"]["ops"],
        "size_int8_bytes": meta["size_bytes"],
        "size_fp32_bytes": fp32_meta["size_bytes"],
        "litert_p50_ms_1thread": p50,
        "int8_over_fp32": p50["int8"] / p50["fp32"],
        "latency_rounds": lat,
        "wall_s": wall,
        "timings_s": meta.get("timings_s"),
        "fine_tune_epochs": args.epochs,
        "settings": settings(backbone, data, out, args, "tflite-int8"),
        "fine_tune_epochs_run": sum(1 for phase in json.loads((int8.out_dir.parent / "float" / "history.json").read_text())["phase"] if phase == "fine_tune"),
        "phase3": json.loads((int8.out_dir.parent / "float" / "edgetl.json").read_text()).get("phase3"),
        "versions": meta.get("versions"),
    }


def latency_at(backbone: str, size: int, out: Path, args) -> dict:
    """fp32 vs int8 LiteRT latency at ``size`` px (random weights: latency does not depend on them)."""
    from edgetl.bench.harness import bench_tflite
    from edgetl.device.inspect_tflite import inspect_tflite
    from edgetl.export.tflite import export_tflite
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES
    from edgetl.ml.quantize import calibrate_ranges, quantize_model
    from edgetl.runtime.litert import op_report

    spec = BACKBONES.get(backbone)
    model, contract = build_classifier(spec, 6, size, spec.default_alpha, "none")
    pixels = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    folder = out / f"latency{size}"
    folder.mkdir(parents=True, exist_ok=True)
    # "int8": the graph a QAT build exports (quantize_model + calibrated ranges, no training needed
    # for timing); "ptq": post-training int8 of the float model (`edgetl qat --mode ptq`).
    q_model = quantize_model(model, spec.qat_recipe)
    calibrate_ranges(q_model, [contract.normalize(pixels[i : i + 8]) for i in range(0, len(pixels), 8)])
    paths = {
        "fp32": export_tflite(model, "tflite-fp32", folder / f"{backbone}-fp32.tflite", representative=None, contract=contract),
        "int8": export_tflite(q_model, "tflite-int8", folder / f"{backbone}-int8.tflite", representative=pixels, contract=contract),
        "ptq": export_tflite(model, "tflite-int8", folder / f"{backbone}-ptq.tflite", representative=pixels, contract=contract),
    }
    lat: dict[str, list] = {key: [] for key in paths}
    for _ in range(args.rounds):
        for key, path in paths.items():
            lat[key].append(bench_tflite(path, threads=[1], warmup=20, runs=args.runs)[0].stats.to_dict())
    p50 = {key: float(np.median([r["p50_ms"] for r in rows])) for key, rows in lat.items()}
    return {
        "backbone": backbone, "input_size": size, "p50_ms": p50, "int8_over_fp32": p50["int8"] / p50["fp32"],
        "ptq_over_fp32": p50["ptq"] / p50["fp32"],
        "size_bytes": {key: path.stat().st_size for key, path in paths.items()},
        "int8_full_integer": op_report(paths["int8"])["full_integer"], "rounds": lat,
        "xnnpack_partitions": {key: inspect_tflite(path)["xnnpack"].get("partitions") for key, path in paths.items()},
    }


def latency_table(rows: list[dict]) -> str:
    lines = [
        "| backbone | px | fp32 p50 | QAT-form int8 p50 | int8 / fp32 | PTQ int8 p50 | PTQ / fp32 | XNNPACK partitions fp32, int8, PTQ | size fp32 -> int8 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parts = r.get("xnnpack_partitions", {})
        lines.append(
            f"| {r['backbone']} | {r['input_size']} | {r['p50_ms']['fp32']:.2f} ms | {r['p50_ms']['int8']:.2f} ms | {r['int8_over_fp32']:.2f}x "
            f"| {r['p50_ms'].get('ptq', float('nan')):.2f} ms | {r.get('ptq_over_fp32', float('nan')):.2f}x "
            f"| {parts.get('fp32')}, {parts.get('int8')}, {parts.get('ptq')} "
            f"| {r['size_bytes']['fp32'] / 2**20:.2f} -> {r['size_bytes']['int8'] / 2**20:.2f} MiB |"
        )
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    head = (
        "| backbone | float | PTQ int8 | QAT int8 | QAT - float | QAT >= PTQ | int8/float agreement (QAT, PTQ) "
        "| full-integer | size int8 / fp32 | LiteRT 1-thread p50 fp32 -> int8 |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        drop = 100 * (r["qat_int8_top1"] - r["float_top1"])
        lines.append(
            f"| {r['backbone']} | {100 * r['float_top1']:.1f}% | {100 * r['ptq_int8_top1']:.1f}% | {100 * r['qat_int8_top1']:.1f}% "
            f"| {drop:+.1f} pts | {'yes' if r['qat_int8_top1'] >= r['ptq_int8_top1'] else 'NO'} "
            f"| {100 * r['qat_int8_agreement_with_float']:.1f}%, {100 * r['ptq_int8_agreement_with_float']:.1f}% "
            f"| {'yes' if r['qat_int8_full_integer'] and r['ptq_int8_full_integer'] else 'NO'} "
            f"| {r['size_int8_bytes'] / 2**20:.2f} / {r['size_fp32_bytes'] / 2**20:.2f} MiB "
            f"| {r['litert_p50_ms_1thread']['fp32']:.3f} -> {r['litert_p50_ms_1thread']['int8']:.3f} ms ({r['int8_over_fp32']:.2f}x) |"
        )
    return "\n".join(lines)


def main() -> None:
    from edgetl.ml.backbones.spec import BACKBONES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=None)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--images-per-class", type=int, default=200)
    parser.add_argument("--all-shapes", action="store_true", help="all eight shapes (adds cross and ring) instead of six")
    parser.add_argument("--noise", type=float, default=0.1, help="pixel noise std (fraction of 255)")
    parser.add_argument("--min-scale", type=float, default=0.35)
    parser.add_argument("--max-scale", type=float, default=0.75)
    parser.add_argument("--val-split", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=12)
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate (from scratch: the whole network trains at it)")
    parser.add_argument(
        "--no-augment", action="store_true",
        help="train on the images as they are (QAT always does): flip/rotate/zoom resampling smooths the generated pixel noise, "
        "so an augmented float model meets sharper noise at validation than it trained on",
    )
    parser.add_argument("--seed", type=int, default=0, help="data.seed: the train/validation split, initial weights and batch order (the images stay the same)")
    parser.add_argument("--schedule", default="plateau", choices=["plateau", "cosine"], help="phase 2 learning-rate schedule")
    parser.add_argument(
        "--clean-epochs", type=int, default=3,
        help="phase 3: epochs without augmentation, BatchNorm frozen, after phase 2 (train.clean_epochs; 0: off, as before 2026-11-29)",
    )
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=5e-5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/backbones"))
    parser.add_argument("--table", action="store_true", help="only print the table from existing JSON")
    parser.add_argument("--latency-size", type=int, default=None, help="instead: fp32 vs int8 latency at this size, random weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = args.backbones or BACKBONES.names()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.latency_size:
        for name in names:
            result = latency_at(name, args.latency_size, args.out, args)
            (args.out / f"latency{args.latency_size}_{name}.json").write_text(json.dumps(result, indent=2))
            logging.info("RESULT %s", json.dumps({k: v for k, v in result.items() if k != "rounds"}))
        rows = [json.loads((args.out / f"latency{args.latency_size}_{n}.json").read_text()) for n in names]
        print(latency_table(rows))  # noqa: T201 - a script's output
        return
    if not args.table:
        data = make_data(args.out, args)
        for name in names:
            result = run_one(name, data, args.out, args)
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
            logging.info("RESULT %s", json.dumps({k: v for k, v in result.items() if k not in ("latency_rounds", "ops", "versions")}))
    rows = [json.loads((args.out / f"{n}.json").read_text()) for n in names if (args.out / f"{n}.json").is_file()]
    print(table(rows))  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
