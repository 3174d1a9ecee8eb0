"""GPU check, run once on a machine with a GPU: phase-2 training speed with and without mixed
precision and XLA, and the input pipeline's speed alone.

What it measures, all through edgetl's own training code (``edgetl.ml``):

1. Phase 2 (the top of the backbone unfrozen at the default block boundary, BatchNorm frozen,
   augmentation on), in four settings: plain float32, ``train.mixed_precision``, ``train.jit``
   (XLA), and both. Each setting builds its classifier afresh (under the ``mixed_float16`` policy
   when mixed precision is on, as ``edgetl train`` does) and fits it with
   :func:`edgetl.ml.phases.fit_on_images`, which compiles with ``jit_compile`` from the config.
   Images/s is the median over epochs 2..N of (training images / the epoch's training time); the
   training time of an epoch runs from its start to the start of its validation pass (Keras syncs
   the step results there), so validation is not counted. The first epoch (graph tracing, XLA
   compilation, cuDNN autotuning) is reported on its own.
2. The input pipeline alone: :func:`edgetl.ml.phases.make_dataset` with shuffling and
   augmentation, iterated without a model. If it is not well above the training speed, the GPU
   waits for the CPU and mixed precision/XLA cannot help much.

Usage:
    python benchmarks/gpu_check.py                       # MobileNetV2 1.0 at 224 px, generated images
    python benchmarks/gpu_check.py --data photos/        # your own folder (one subfolder per class)
    python benchmarks/gpu_check.py --smoke               # tiny sizes, runs on a CPU in about a minute

Prints a Markdown table and writes ``<out>/gpu_check.json`` with the machine, the versions, the GPUs
(from ``edgetl doctor``'s diagnosis) and every figure. Weights are random (``--weights none``):
speed does not depend on weight values. On a CPU, mixed precision is expected to be slower.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The four settings: name -> (mixed_precision, jit).
SETTINGS = {"plain": (False, False), "mixed precision": (True, False), "xla": (False, True), "mixed precision + xla": (True, True)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="image folder (one subfolder per class); default: generated shapes")
    p.add_argument("--model", default="mobilenet_v2", help="registered backbone (default mobilenet_v2)")
    p.add_argument("--alpha", type=float, help="width multiplier (default: the backbone's)")
    p.add_argument("--input-size", type=int, help="input side in px (default: the backbone's)")
    p.add_argument("--weights", default="none", help="none (default), imagenet or a path: speed does not depend on it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4, help="phase-2 epochs per setting; the first is reported apart (default 4)")
    p.add_argument("--images-per-class", type=int, default=256, help="generated images per class, 4 classes (default 256)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of: {', '.join(SETTINGS)}")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for gpu_check.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (MobileNetV2 0.35 at 32 px, 2 epochs): checks the script on a CPU")
    args = p.parse_args(argv)
    if args.smoke:
        args.alpha = args.alpha or 0.35
        args.input_size = args.input_size or 32
        args.batch_size, args.epochs, args.images_per_class = 16, 2, 24
    unknown = [s for s in args.settings.split(",") if s.strip() not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first epoch compiles, the others are timed")
    return args


def machine_facts() -> dict[str, Any]:
    """Machine, versions, TensorFlow build, GPUs and driver: what ``edgetl doctor --json`` reports."""
    from edgetl.pipeline.doctor import diagnose

    facts = diagnose().facts
    keep = ("python", "edgetl", "platform", "packages", "tensorflow", "gpus", "nvidia_driver", "mixed_precision")
    return {key: facts.get(key) for key in keep}


def make_config(args: argparse.Namespace, data: Path, spec, mixed: bool, jit: bool):
    """A BuildConfig for one setting: phase 2 at the pretrained default depth, augmentation on, nothing else."""
    from edgetl.core.config import validate

    return validate(
        {
            "model": {"name": args.model, "weights": args.weights, "alpha": args.alpha, "input_size": args.input_size},
            "data": {"path": str(data), "batch_size": args.batch_size, "val_split": 0.1, "seed": 0},
            "train": {
                "head_epochs": 0, "fine_tune_epochs": args.epochs, "augment": True, "clean_epochs": 0,
                # phase 2 as with pretrained weights: from the backbone's default block boundary, BatchNorm frozen
                "unfreeze_from": spec.unfreeze_from, "mixed_precision": mixed, "jit": jit,
            },
        },
        "gpu_check",
    )


class _EpochTimer:
    """Keras callback: each epoch's training time (epoch start to validation start) and the whole epoch's."""

    def __new__(cls):
        from edgetl.ml._keras import keras

        class Timer(keras().callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.train_s: list[float] = []
                self._start = self._test = None

            def on_epoch_begin(self, epoch, logs=None):
                self._start, self._test = time.perf_counter(), None

            def on_test_begin(self, logs=None):  # the step results were synced just before validation starts
                if self._start is not None and self._test is None:
                    self._test = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                end = self._test if self._test is not None else time.perf_counter()
                self.train_s.append(end - self._start)

        return Timer()


def run_setting(args: argparse.Namespace, data: Path, split, name: str) -> dict[str, Any]:
    """Phase 2 under one setting; returns its figures."""
    from edgetl.ml import distribute
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.phases import fine_tune_lr, fit_on_images, freeze_backbone, unfreeze_index, unfreeze_top
    from edgetl.ml.train import resolve_model_options, set_seed

    mixed, jit = SETTINGS[name]
    k = keras()
    k.backend.clear_session()
    spec, input_size, alpha = resolve_model_options(make_config(args, data, _Default(), mixed, jit))
    config = make_config(args, data, spec, mixed, jit)
    set_seed(config.data.seed)
    with distribute.precision(mixed):
        model, contract = build_classifier(spec, len(split.class_names), input_size, alpha, config.model.weights, config.model.dropout)
    freeze_backbone(model)
    trainable = unfreeze_top(model, unfreeze_index(model, spec, config), keep_batchnorm_frozen=True)
    timer = _EpochTimer()
    start = time.perf_counter()
    fit_on_images(
        model, split, contract, config, lr=fine_tune_lr(config), epochs=args.epochs, augment=True,
        task="phase 2 (fine-tune)", progress=lambda *a, **kw: None, callbacks=[timer],
    )
    total = time.perf_counter() - start
    n = len(split.train.y)
    later = timer.train_s[1:]
    return {
        "setting": name, "mixed_precision": mixed, "jit": jit,
        "images_per_s": n / statistics.median(later),
        "epoch_train_s": timer.train_s, "first_epoch_s": timer.train_s[0], "fit_s": total,
        "compute_dtype": next(layer.compute_dtype for layer in model.layers if layer.weights),
        "output_dtype": model.output.dtype.name,  # the softmax's: float32 under mixed precision, as the loss wants
        "optimizer": type(model.optimizer).__name__,
        "trainable_layers": len(trainable), "train_images": n,
    }


class _Default:
    """Stands in for a spec before one is resolved: the config then leaves ``unfreeze_from`` unset."""

    unfreeze_from = None


def input_pipeline(args: argparse.Namespace, split, contract) -> dict[str, Any]:
    """:func:`make_dataset` with shuffling and augmentation, iterated without a model, one epoch more than
    training runs (the first builds the pipeline and is left out, like training's first epoch). Each
    epoch's iterator is made before its clock starts, as Keras makes it before ``on_epoch_begin``."""
    from edgetl.ml.phases import make_dataset

    ds = make_dataset(split.train, contract, args.batch_size, shuffle=True, augment=True, seed=0)
    times, count = [], 0
    for _ in range(args.epochs + 1):
        batches = iter(ds)
        start = time.perf_counter()
        count = sum(int(x.shape[0]) for x, _y in batches)
        times.append(time.perf_counter() - start)
    return {"setting": "input pipeline alone", "images_per_s": count / statistics.median(times[1:]), "epoch_s": times, "images": count}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from edgetl.data.split import load_split
    from edgetl.data.synthetic import make_shapes_dataset
    from edgetl.ml.train import resolve_model_options

    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="edgetl-gpu-check-") as tmp:
        data = args.data
        if data is None:
            size = args.input_size or 224
            data = make_shapes_dataset(Path(tmp) / "shapes", images_per_class=args.images_per_class, image_size=size, seed=0)
        spec, input_size, _alpha = resolve_model_options(make_config(args, data, _Default(), False, False))
        split = load_split(make_config(args, data, spec, False, False).data, input_size)
        contract = spec.contract(input_size)
        results = [input_pipeline(args, split, contract)]
        for name in (s.strip() for s in args.settings.split(",")):
            print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
            results.append(run_setting(args, data, split, name))
    plain = next((r["images_per_s"] for r in results if r["setting"] == "plain"), None)
    for r in results[1:]:
        r["speedup_vs_plain"] = r["images_per_s"] / plain if plain else None
    report = {
        "what": "phase-2 training images/s (median of epochs 2..N, training time only) and the input pipeline's images/s alone",
        "model": {"name": spec.name, "alpha": args.alpha if args.alpha is not None else spec.default_alpha, "input_size": input_size},
        "batch_size": args.batch_size, "epochs": args.epochs, "train_images": len(split.train.y), "val_images": len(split.val.y),
        "data": str(args.data) if args.data else f"generated shapes, {args.images_per_class} per class",
        "smoke": args.smoke, "machine": facts, "results": results,
    }
    print(table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'gpu_check.json'}")
    return report


def table(report: dict[str, Any]) -> str:
    gpus = report["machine"].get("gpus") or []
    where = ", ".join(g.get("device_name") or g["name"] for g in gpus) or f"CPU ({report['machine']['platform']['processor']})"
    m = report["model"]
    lines = [
        f"{m['name']} alpha {m['alpha']} at {m['input_size']} px, batch {report['batch_size']}, {report['train_images']} training images, "
        f"on {where}",
        "",
        "| setting | images/s | vs plain | first epoch s | compute dtype | output dtype |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in report["results"]:
        if "first_epoch_s" not in r:
            lines.append(f"| {r['setting']} | {r['images_per_s']:.0f} | | | | |")
            continue
        speed = f"{r['speedup_vs_plain']:.2f}x" if r.get("speedup_vs_plain") else ""
        lines.append(
            f"| {r['setting']} | {r['images_per_s']:.0f} | {speed} | {r['first_epoch_s']:.1f} | {r['compute_dtype']} | {r['output_dtype']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
