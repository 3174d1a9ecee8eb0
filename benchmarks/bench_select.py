"""Does ``edgetl select``'s cheap linear probe rank candidates as full fine-tuning would, and what does it save?

One dataset (:func:`benchmarks.real_textures.make_texture_folders`: six classes of scikit-image
photos, training crops from the left half of each photo, validation crops from the right half), a
list of candidates (at least 5 for the honesty check of issue 17), and for each:

- ``edgetl select`` (:func:`edgetl.pipeline.api.select`, one run over all candidates): the
  linear-probe validation top-1, the int8 top-1 and the int8 p50 latency here;
- a full fine-tune as ``edgetl build`` trains it (:func:`edgetl.pipeline.api.train`, the same data,
  the same weights the probe used, edgetl's default recipe with the epochs given): its validation top-1
  and wall time.

Reported: Spearman's rank correlation (``scipy.stats.spearmanr``) between probe top-1 and fine-tuned
top-1 over the candidates (and between int8 and fine-tuned), the top candidate by each, and the
wall time of ``select`` against the sum of the fine-tunes (the cost of answering by hand, one
build after another, without QAT and export). Candidates whose weights differ (ImageNet vs random)
are ranked together: that is the choice a user faces; the JSON says which weights each one used.

Usage::

    python benchmarks/bench_select.py [--candidates "..."] [--train 20] [--val 30] [--size 96]
        [--fine-tune-epochs 10] [--workers 1] [--out benchmarks/out/select]
    python benchmarks/bench_select.py --smoke      # 2 tiny candidates, a minute or two: checks the script works

Prints a Markdown table and writes ``<out>/bench_select.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/bench_select.py` finds benchmarks.*

from benchmarks.real_textures import make_texture_folders  # noqa: E402

#: Six candidates at small input sizes: mobilenet_v2 (no ImageNet weights offline here: random,
#: BatchNorm statistics estimated on the images), efficientnet_lite0 (ImageNet offline).
FULL_CANDIDATES = "mobilenet_v2:0.35@48,64 mobilenet_v2:1.0@48 mobilenet_v3_small:1.0@64 efficientnet_lite0@64,96"
SMOKE_CANDIDATES = "mobilenet_v2:0.35@32,48"


def _config(train_dir: Path, val_dir: Path, args, model: dict | None = None):
    from edgetl.core.config import validate

    settings = {
        "data": {"path": str(train_dir), "val_path": str(val_dir), "seed": args.seed, "batch_size": args.batch_size, "min_images": min(args.train, 10)},
        "train": {"head_epochs": args.head_epochs, "fine_tune_epochs": args.fine_tune_epochs, "patience": args.patience},
        "export": {"representative_samples": 100},
    }
    if model:
        settings["model"] = model
    return validate(settings, "bench_select")


def run(args) -> dict:
    from scipy.stats import spearmanr

    from edgetl.bench.options import BenchOptions
    from edgetl.core.jobs import Engine
    from edgetl.pipeline import api
    from edgetl.pipeline.select import Budgets, parse_candidates

    out = Path(args.out)
    data_root = out / "data"
    train_dir, val_dir = make_texture_folders(data_root, per_class_train=args.train, per_class_val=args.val, size=args.size, seed=args.seed)
    candidates = parse_candidates(args.candidates)

    # select: probe + int8 + latency for every candidate, as `edgetl select` runs it
    config = _config(train_dir, val_dir, args)
    config = config.model_copy(update={"train": config.train.model_copy(update={"head_epochs": args.probe_epochs})})
    start = time.perf_counter()
    result = api.select(
        config, out / "select", candidates=candidates, budgets=Budgets(), engine=Engine(workers=args.workers),
        bench=BenchOptions(threads=(1,), runs=args.runs, warmup=10, profile_runs=0), force=True,
    )
    select_s = time.perf_counter() - start
    entries = result.record["candidates"]

    # a full fine-tune per candidate, as `edgetl build` trains it, with the weights the probe used
    rows = []
    for entry in entries:
        model = {"name": entry["backbone"], "alpha": entry["alpha"], "input_size": entry["input_size"], "weights": entry["weights"]["used"]}
        logging.info("fine-tuning %s", entry["label"])
        t0 = time.perf_counter()
        trained = api.train(_config(train_dir, val_dir, args, model), out / "fine-tune" / entry["key"], force=True)
        seconds = time.perf_counter() - t0
        rows.append({
            "candidate": entry["label"], "weights": entry["weights"]["used"], "probe_top1": entry["probe"]["top1"],
            "int8_probe_top1": entry["int8"]["top1"], "p50_ms": entry["latency"]["local"]["p50_ms"], "int8_bytes": entry["size_bytes"],
            "probe_job_s": entry["timings"]["job_s"], "fine_tuned_top1": float(trained.val_accuracy), "fine_tune_s": round(seconds, 2),
        })
    probe = [r["probe_top1"] for r in rows]
    int8 = [r["int8_probe_top1"] for r in rows]
    fine = [r["fine_tuned_top1"] for r in rows]
    rho, p = spearmanr(probe, fine) if len(rows) > 1 else (float("nan"), float("nan"))
    rho8, p8 = spearmanr(int8, fine) if len(rows) > 1 else (float("nan"), float("nan"))
    fine_total = sum(r["fine_tune_s"] for r in rows)
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "data": {"kind": "scikit-image texture crops (benchmarks/real_textures.py)", "classes": 6, "train_per_class": args.train, "val_per_class": args.val, "size": args.size},
        "settings": {
            "candidates": args.candidates, "probe_epochs": args.probe_epochs, "head_epochs": args.head_epochs,
            "fine_tune_epochs": args.fine_tune_epochs, "patience": args.patience, "workers": args.workers, "bench_runs": args.runs,
        },
        "rows": rows,
        "spearman_probe_vs_fine_tuned": {"rho": _num(rho), "p_value": _num(p), "n": len(rows)},
        "spearman_int8_probe_vs_fine_tuned": {"rho": _num(rho8), "p_value": _num(p8), "n": len(rows)},
        # ties: the faster one, as select breaks them
        "top_by_probe": min(rows, key=lambda r: (-r["probe_top1"], r["p50_ms"]))["candidate"],
        "top_by_fine_tune": min(rows, key=lambda r: (-r["fine_tuned_top1"], r["p50_ms"]))["candidate"],
        "select_recommendation": (result.record.get("recommendation") or {}).get("label"),
        "select_wall_s": round(select_s, 2),
        "select_timings": result.record["timings"],
        "fine_tune_sum_s": round(fine_total, 2),
        "fine_tune_over_select": round(fine_total / select_s, 2) if select_s else None,
        "machine": result.record["boards"][0]["machine"],
    }


def _num(value: float) -> float | None:
    return None if value != value else round(float(value), 4)


def markdown(doc: dict) -> str:
    lines = [
        "| candidate | weights | probe top-1 | int8 top-1 | fine-tuned top-1 | p50 ms | probe job s | fine-tune s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['candidate']} | {r['weights']} | {100 * r['probe_top1']:.1f}% | {100 * r['int8_probe_top1']:.1f}% | "
            f"{100 * r['fine_tuned_top1']:.1f}% | {r['p50_ms']:.3f} | {r['probe_job_s']:.1f} | {r['fine_tune_s']:.1f} |"
        )
    s = doc["spearman_probe_vs_fine_tuned"]
    s8 = doc["spearman_int8_probe_vs_fine_tuned"]
    lines += [
        "",
        f"Spearman rho, probe vs fine-tuned top-1: {s['rho']} (p {s['p_value']}, n {s['n']}); int8 probe vs fine-tuned: {s8['rho']} (p {s8['p_value']}).",
        f"Top by probe: {doc['top_by_probe']}; top by fine-tune: {doc['top_by_fine_tune']}; select recommends {doc['select_recommendation']}.",
        f"select wall time {doc['select_wall_s']:.1f} s (jobs {doc['select_timings']['jobs_s']:.1f} s, latency {doc['select_timings']['latency_s']:.1f} s) "
        f"vs {doc['fine_tune_sum_s']:.1f} s for the fine-tunes: {doc['fine_tune_over_select']}x.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default=None, help=f"--candidates text (default: {FULL_CANDIDATES!r}; --smoke: {SMOKE_CANDIDATES!r})")
    parser.add_argument("--train", type=int, default=20, help="training crops per class")
    parser.add_argument("--val", type=int, default=30, help="validation crops per class")
    parser.add_argument("--size", type=int, default=96, help="crop size in pixels (each candidate resizes to its input size)")
    parser.add_argument("--probe-epochs", type=int, default=20)
    parser.add_argument("--head-epochs", type=int, default=5, help="fine-tune phase 1")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, help="fine-tune phase 2 (early stopping)")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per candidate")
    parser.add_argument("--workers", type=int, default=1, help="select's candidate jobs on N local dask workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/select")
    parser.add_argument("--smoke", action="store_true", help="2 tiny candidates, few images and epochs: checks the script works")
    args = parser.parse_args()
    if args.smoke:
        args.candidates = args.candidates or SMOKE_CANDIDATES
        args.train, args.val, args.size = 8, 6, 48
        args.probe_epochs, args.head_epochs, args.fine_tune_epochs, args.runs = 5, 2, 2, 20
        args.out = args.out if args.out != "benchmarks/out/select" else "benchmarks/out/select-smoke"
    args.candidates = args.candidates or FULL_CANDIDATES
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    doc = run(args)
    out = Path(args.out) / "bench_select.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(doc))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
