"""L2-SP vs plain fine-tuning on a few-shot real-photo task, paired by seed.

The task: :func:`benchmarks.real_textures.make_texture_folders` (six classes of scikit-image
photos; training crops from the left half of each photo, validation crops from the right half).
For each seed the same folders, the same model initialisation, the same split and the same
schedule are trained twice with :func:`edgetl.ml.train.fit_transfer`: once plainly, once with
``train.l2sp = (alpha, beta)``. Everything else is equal, and edgetl's plain fine-tuning has no
weight decay at all, so the comparison is "no regulariser" vs L2-SP (the paper's baseline is L2
toward 0 on all weights, which edgetl does not offer; not measured here).

Reported per arm: validation top-1 (inference mode) mean and standard deviation over seeds; the
paired difference (L2-SP minus plain) with a 95 % Student-t interval; and ``||w - w_source||^2``
over the weights phase 2 trained, to show that L2-SP did keep them closer to the source.

Usage::

    python benchmarks/bench_l2sp.py [--model efficientnet_lite0] [--weights imagenet] [--size 96]
        [--train 10] [--val 30] [--seeds 0 1 2] [--l2sp 0.1,0.01] [--out benchmarks/out]

Prints a Markdown table (and the command) and writes ``<out>/l2sp.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/bench_l2sp.py` finds benchmarks.*

from benchmarks.real_textures import make_texture_folders  # noqa: E402


def one_run(train_dir: Path, val_dir: Path, args, seed: int, l2sp: str | None) -> dict:
    """Train once; validation top-1, balanced accuracy, distance to the source weights, time."""
    from edgetl.core.config import validate
    from edgetl.data.split import load_split
    from edgetl.ml import l2sp as l2sp_mod
    from edgetl.ml.backbones import build_classifier, resolve_weights
    from edgetl.ml.train import fit_transfer, resolve_model_options, set_seed

    settings = {
        "model": {"name": args.model, "weights": args.weights, "input_size": args.size},
        "data": {"path": str(train_dir), "val_path": str(val_dir), "seed": seed, "batch_size": args.batch_size, "min_images": min(args.train, 10)},
        "train": {
            "head_epochs": args.head_epochs, "fine_tune_epochs": args.fine_tune_epochs, "clean_epochs": args.clean_epochs,
            "patience": args.patience, **({"l2sp": l2sp} if l2sp else {}),
            **({"unfreeze_blocks": args.unfreeze_blocks} if args.unfreeze_blocks else {}),
        },
    }
    config = validate(settings, "bench_l2sp")
    spec, input_size, alpha = resolve_model_options(config)
    resolve_weights(spec, config.model.weights, alpha, input_size)
    split = load_split(config.data, input_size, channels=config.model.channels)
    set_seed(seed)
    model, contract = build_classifier(spec, len(split.class_names), input_size, alpha, config.model.weights, config.model.dropout)
    source = l2sp_mod.snapshot(model)
    start = time.perf_counter()
    fitted = fit_transfer(model, contract, spec, split, config)
    distance = l2sp_mod.penalty_value(model, source, 1.0, 0.0)["source_sq"]  # over the weights phase 2 trained
    return {
        "val_top1": fitted.val_accuracy, "val_balanced": fitted.val_balanced_accuracy, "source_sq": distance,
        "fine_tune_epochs_run": sum(1 for p in fitted.history.get("phase", []) if p == "fine_tune"),
        "seconds": time.perf_counter() - start,
    }


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of paired differences."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet", help="pretrained weights: imagenet or a weights file (L2-SP needs a source)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=10, help="training crops per class")
    parser.add_argument("--val", type=int, default=30, help="validation crops per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--l2sp", default="0.1,0.01", help="ALPHA,BETA of the L2-SP arm")
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=15)
    parser.add_argument("--clean-epochs", type=int, default=3)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--unfreeze-blocks", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    runs: dict[str, list[dict]] = {"plain": [], "l2sp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            train_dir, val_dir = make_texture_folders(Path(tmp) / f"seed{seed}", args.train, args.val, args.size, seed)
            for arm, value in (("plain", None), ("l2sp", args.l2sp)):
                result = one_run(train_dir, val_dir, args, seed, value)
                runs[arm].append({"seed": seed, **result})
                print(f"seed {seed} {arm}: top-1 {result['val_top1']:.4f}, ||w - w_source||^2 {result['source_sq']:.4g}, {result['seconds']:.0f} s", flush=True)

    top1 = {arm: [r["val_top1"] for r in rs] for arm, rs in runs.items()}
    diffs = [b - a for a, b in zip(top1["plain"], top1["l2sp"], strict=True)]
    mean, low, high = t_interval(diffs)
    summary = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "task": f"real_textures: 6 classes, {args.train} train / {args.val} val crops per class, {args.size} px",
        "model": args.model, "weights": args.weights, "l2sp": args.l2sp, "seeds": args.seeds, "runs": runs,
        "paired_diff_top1": {"mean": mean, "ci95": [low, high], "per_seed": diffs},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "l2sp.json").write_text(json.dumps(summary, indent=2))

    def stat(values: list[float]) -> str:
        return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"

    print()
    print(f"`{summary['command']}`")
    print()
    print(f"{summary['task']}; {args.model} ({args.weights}); seeds {args.seeds}; mean ± std over seeds")
    print()
    print("| arm | val top-1 | val balanced acc. | ‖w − w_source‖² (phase-2 weights) |")
    print("|---|---|---|---|")
    for arm, rs in runs.items():
        label = "plain fine-tuning (no weight decay)" if arm == "plain" else f"L2-SP (alpha,beta = {args.l2sp})"
        print(f"| {label} | {stat(top1[arm])} | {stat([r['val_balanced'] for r in rs])} | {stat([r['source_sq'] for r in rs])} |")
    print()
    print(f"paired difference in top-1 (L2-SP − plain): {mean:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}] (n={len(diffs)}); per seed: "
          + ", ".join(f"{d:+.4f}" for d in diffs))


if __name__ == "__main__":
    main()
