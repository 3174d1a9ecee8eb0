"""``edgetl build`` (the whole pipeline into one folder) and ``edgetl demo`` (the same on generated shapes)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgetl.cli.console import RichProgress, console, err_console, pct, setup_logging
from edgetl.cli.errors import errors_as_exit, requires_training_stack
from edgetl.cli.options import (
    CONFIG_FLAGS,
    AlphaOpt,
    AugmentOpt,
    BackboneOpt,
    BatchOpt,
    ChannelsOpt,
    ClassWeightsOpt,
    CleanEpochsOpt,
    ConfigOpt,
    DataOpt,
    DeterministicOpt,
    FineEpochsOpt,
    FineTuneLrOpt,
    FineTuneOptimizerOpt,
    ForceOpt,
    GrayscaleOpt,
    HeadEpochsOpt,
    HeadLrOpt,
    HeadOptimizerOpt,
    InputSizeOpt,
    JitOpt,
    L2spOpt,
    MinImagesOpt,
    MixedPrecisionOpt,
    NoCacheOpt,
    PatienceOpt,
    SeedOpt,
    StrategyOpt,
    StrictOpt,
    TrustModelOpt,
    UnfreezeBlocksOpt,
    UnfreezeFromOpt,
    UnfreezeOpt,
    ValOpt,
    ValSplitOpt,
    VerboseOpt,
    WeightsOpt,
    resolve,
    training_flags,
)
from edgetl.core.text import display_safe
from edgetl.core.types import IODType, PackageFor, QuantMode


def build(
    target: Annotated[str | None, typer.Option("--target", help="tflite-int8 (QAT, full-integer), tflite-int16x8 (int16 activations), tflite-dynamic (int8 weights), tflite-fp16, tflite-fp32, onnx-int8 (QAT scales, int8 in ONNX Runtime), onnx-fp32, or auto (the quantization ladder: the fastest variant meeting --max-drop, --budget-ms, --ram-budget, --flash-budget; ships into auto/).")] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset of onnx-* targets (13-18, default 17).")] = None,
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    input_size: InputSizeOpt = None,
    channels: ChannelsOpt = None,
    grayscale: GrayscaleOpt = False,
    alpha: AlphaOpt = None,
    weights: WeightsOpt = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Root of build folders (default: build); writes <out>/<name>/<target>/.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Build name (default: the data folder's name).")] = None,
    mode: Annotated[QuantMode | None, typer.Option("--mode", help="int8 ranges from QAT (default) or post-training calibration (ptq).")] = None,
    qat_epochs: Annotated[int | None, typer.Option("--qat-epochs", help="QAT epochs (default 3).")] = None,
    io_dtype: Annotated[IODType | None, typer.Option("--io-dtype", help="Input/output dtype of int8 models.")] = None,
    val: ValOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = None,
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    unfreeze: UnfreezeOpt = None,
    unfreeze_from: UnfreezeFromOpt = None,
    unfreeze_blocks: UnfreezeBlocksOpt = None,
    augment: AugmentOpt = None,
    clean_epochs: CleanEpochsOpt = None,
    head_lr: HeadLrOpt = None,
    fine_tune_lr: FineTuneLrOpt = None,
    patience: PatienceOpt = None,
    class_weights: ClassWeightsOpt = None,
    l2sp: L2spOpt = None,
    head_optimizer: HeadOptimizerOpt = None,
    fine_tune_optimizer: FineTuneOptimizerOpt = None,
    strategy: StrategyOpt = None,
    mixed_precision: MixedPrecisionOpt = False,
    jit: JitOpt = False,
    min_images: MinImagesOpt = None,
    strict: StrictOpt = None,
    package: Annotated[list[PackageFor] | None, typer.Option("--package", help="Also bundle the artifact for apps into <target>/package-<for>/ (made by the build, replaced by the next one): c (TFLite Micro, needs tflite-int8), android, ios, python; repeat for several. Budgets: \\[package] in --config.", show_default=False)] = None,
    max_drop: Annotated[float | None, typer.Option("--max-drop", help="--target auto: held-out top-1 points the shipped variant may lose against the float model.", show_default=False)] = None,
    budget_ms: Annotated[float | None, typer.Option("--budget-ms", help="--target auto: p50 latency budget on the board, in ms.", show_default=False)] = None,
    ram_budget: Annotated[str | None, typer.Option("--ram-budget", help="--target auto: TFLite Micro tensor arena budget (256KB, 1MB).", show_default=False)] = None,
    flash_budget: Annotated[str | None, typer.Option("--flash-budget", help="--target auto: model size budget (256KB, 1MB).", show_default=False)] = None,
    on: Annotated[str | None, typer.Option("--on", help="--target auto: where to measure: local (default), ssh://user@host[:port] or arm64-emulated.", show_default=False)] = None,
    threads: Annotated[str | None, typer.Option("--threads", help="--target auto: thread counts to time, e.g. 1,4 (default: 1 and the board's cores).", show_default=False)] = None,
    variants: Annotated[str | None, typer.Option("--variants", help="--target auto: the rungs to try, e.g. fp32,int8-ptq,int8-qat (default: every rung).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="--target auto: make the conversion variants on N local worker processes (dask); timing stays one at a time.", show_default=False)] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="--target auto: make them on a dask cluster: tcp://scheduler:8786 (`dask scheduler`, `dask worker ADDRESS` on each machine).", show_default=False)] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="--on ssh://: private key to log in with (default: ssh-agent and ~/.ssh/id_*).", show_default=False)] = None,
    known_hosts: Annotated[Path | None, typer.Option("--known-hosts", help="--on ssh://: known_hosts file to check the board's host key against (default ~/.ssh/known_hosts).", show_default=False)] = None,
    remote_python: Annotated[str | None, typer.Option("--remote-python", help="--on ssh://: the board's Python (default python3).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved configuration and exit.")] = False,
    deterministic: DeterministicOpt = False,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    no_cache: NoCacheOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """The whole pipeline: train -> QAT -> export -> verify -> benchmark, into one output folder."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("build")
        flags = training_flags(
            data, backbone, input_size, alpha, weights, val, val_split, seed, batch_size, head_epochs, fine_tune_epochs, unfreeze,
            unfreeze_from, augment, strict, unfreeze_blocks, clean_epochs,
            patience=patience, head_lr=head_lr, fine_tune_lr=fine_tune_lr, min_images=min_images, class_weights=class_weights,
            channels=channels, grayscale=grayscale, l2sp=l2sp, head_optimizer=head_optimizer, fine_tune_optimizer=fine_tune_optimizer,
            strategy=strategy, mixed_precision=mixed_precision, jit=jit,
        )
        flags.update({
            "train.deterministic": True if deterministic else None,
            "target": target, "out": str(out) if out else None, "name": name,
            "qat.mode": mode.value if mode else None, "qat.epochs": qat_epochs,
            "export.io_dtype": io_dtype.value if io_dtype else None, "export.opset": opset,
            "package.targets": [p.value for p in package] if package else None,
        })
        flags.update(ladder_flags(max_drop, budget_ms, ram_budget, flash_budget, on, threads, variants))
        flags.update({"ladder.workers": workers, "ladder.cluster": cluster, "ladder.identity": identity, "ladder.known_hosts": known_hosts, "ladder.remote_python": remote_python})
        cfg = resolve(config, flags, {**CONFIG_FLAGS, **LADDER_FLAGS})
        # the pipeline (pydantic, numpy, TensorFlow for the backbone checks): imported when the command runs, not for --help
        from edgetl.pipeline import api
        from edgetl.pipeline.build import build_name, check_build

        spec = check_build(cfg, trust_model=trust_model)
        if dry_run:
            # stdout stays the resolved configuration alone (JSON a script can read); where it would go, on stderr
            root = Path(cfg.out) / build_name(cfg)
            err_console.print(
                f"build name {display_safe(root.name)}: would write {display_safe(root / spec.name)}/ "
                f"(stages float/, qat/, ptq-int8/ beside it in {display_safe(root)}/)"
                + "".join(f", {display_safe(root / spec.name / ('package-' + PackageFor(p).value))}/" for p in cfg.package.targets),
                highlight=False,
            )
            console.print_json(json.dumps(cfg.to_toml_dict()))
            return
        show_build_steps(verbose)
        with RichProgress() as progress:
            result = api.build(cfg, force=force, progress=progress, trust_model=trust_model, no_cache=no_cache)
        if not result.summary.get("written", True):  # a multi-worker task other than the chief
            console.print(f"worker trained in step with the chief; it wrote nothing (the chief writes {display_safe(result.out_dir)})")
            return
        if "ladder" in result.summary:
            print_ladder_summary(result)
            return
        print_build_summary(result)


#: Configuration keys of the ladder's flags (bad values are reported by flag).
LADDER_FLAGS = {
    "ladder.max_drop": "--max-drop", "ladder.budget_ms": "--budget-ms", "ladder.ram_budget": "--ram-budget",
    "ladder.flash_budget": "--flash-budget", "ladder.on": "--on", "ladder.threads": "--threads",
    "ladder.variants": "--variants", "ladder.workers": "--workers", "ladder.cluster": "--cluster", "ladder.identity": "--identity",
    "ladder.known_hosts": "--known-hosts", "ladder.remote_python": "--remote-python",
}


def ladder_flags(max_drop, budget_ms, ram_budget, flash_budget, on, threads, variants=None) -> dict:
    """The ``[ladder]`` flags as configuration keys (None: not given)."""
    from edgetl.bench.options import parse_threads  # light: no runtime imports

    return {
        "ladder.max_drop": max_drop, "ladder.budget_ms": budget_ms, "ladder.ram_budget": ram_budget,
        "ladder.flash_budget": flash_budget, "ladder.on": on, "ladder.threads": list(parse_threads(threads)) if threads else None,
        "ladder.variants": [v.strip() for v in variants.split(",") if v.strip()] if variants else None,
    }


def print_ladder_summary(result) -> None:
    """``--target auto``: every variant of the ladder with its figures and status, then what shipped."""
    doc = result.summary["ladder"]
    t = Table(title=f"edgetl build --target auto -> {display_safe(result.out_dir)} (measured on {display_safe(doc['board']['label'])})")
    for col, justify in (("variant", "left"), ("status", "left"), ("top-1", "right"), ("drop pts", "right"), ("McNemar p", "right"), ("p50 ms", "right"), ("reason", "left")):
        t.add_column(col, justify=justify)
    for v in doc["variants"]:
        if v["status"] == "not requested":  # --variants left it out; ladder.json lists it
            continue
        acc = v.get("accuracy")
        p50 = ", ".join(f"{r['p50_ms']:.3f}@{r['threads']}" for r in v.get("latency", []))
        t.add_row(
            display_safe(v["label"]), v["status"], pct(acc["top1"]) if acc else "", f"{acc['drop_pts']:.1f}" if acc else "",
            f"{acc['mcnemar_vs_float']['p_value']:.3g}" if acc else "", p50, display_safe(v.get("reason") or ""),
        )
    console.print(t)
    win = doc["winner"]
    console.print(
        f"shipped {display_safe(win['label'])} ({win['target']}, {win['threads']} thread{'s' if win['threads'] != 1 else ''}): "
        f"p50 {win['p50_ms']:.3f} ms, top-1 {pct(win['top1'])} (drop {win['drop_pts']:.1f} pts) -> {display_safe(result.artifact)}",
        highlight=False,
    )
    console.print(f"ladder: {display_safe(result.summary['ladder_json'])}", highlight=False)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the generated images and the build.")] = Path("edgetl-demo"),
    images_per_class: Annotated[
        int, typer.Option("--images-per-class", min=10, help="Generated images per shape class (at least 10: training refuses smaller classes).")
    ] = 60,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Generate a small shapes dataset (real PNG files), fine-tune ImageNet EfficientNet-Lite0 on it through
    int8, and train the same settings from scratch to show what transfer learning bought."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("demo")
        # the pipeline (TensorFlow once the build runs): imported when the command runs, not for --help
        from edgetl.pipeline.demo import run_demo

        show_build_steps(verbose)
        start = time.perf_counter()
        with RichProgress() as progress:
            demo_result = run_demo(out, images_per_class=images_per_class, force=force, progress=progress)
        print_build_summary(demo_result.build, time.perf_counter() - start)
        gain = (demo_result.pretrained_top1 - demo_result.scratch_top1) * 100
        console.print(
            f"From scratch, same settings: float top-1 {pct(demo_result.scratch_top1)} (trained in {demo_result.scratch_s:.0f} s) "
            f"vs {pct(demo_result.pretrained_top1)} from ImageNet weights: transfer learning bought {gain:+.1f} pts",
            highlight=False,
        )


def show_build_steps(verbose: int) -> None:
    """The build's own messages (a stage reused, which int8 model ships) at INFO reach the terminal
    without -v; the stages' chatter stays behind -v."""
    if verbose == 0:
        logging.getLogger("edgetl.pipeline.build").setLevel(logging.INFO)


def print_build_summary(result, elapsed_s: float | None = None) -> None:
    """The accuracy table (float, PTQ, QAT, the artifact) and the artifact's latency table."""
    names = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
    s = result.summary
    runtime = names.get(s.get("runtime", "litert"), s.get("runtime"))
    other = s.get("companion")
    t = Table(title=f"edgetl build -> {display_safe(result.out_dir)}")
    for col, justify in (("model", "left"), ("runtime", "left"), ("top-1", "right"), ("p50 ms, 1 thread", "right")):
        t.add_column(col, justify=justify)
    t.add_row("float", "Keras", pct(s["float_top1"]), "")
    choice = s.get("int8_choice") or {}
    shipped = choice.get("shipped")
    if s.get("ptq_top1") is not None:
        t.add_row("PTQ int8", "LiteRT", pct(s["ptq_top1"]), "")
    if s["source"] == "qat":
        t.add_row("QAT", "Keras", pct(s["source_keras_top1"]), "")
    elif shipped == "ptq" and choice.get("qat_int8_top1") is not None:
        t.add_row("QAT int8 (not shipped)", runtime, pct(choice["qat_int8_top1"]), "")

    def p50(latency):
        return next((f"{e['stats']['p50_ms']:.3f}" for e in latency if e["threads"] == 1), "")

    t.add_row(result.target + (f" ({shipped.upper()}, shipped)" if shipped else ""), runtime, pct(s["artifact_top1"]), p50(s["latency"]))
    if other:
        t.add_row(f"{other['target']} (same scales)", names.get(other["runtime"], other["runtime"]), pct(other["artifact_top1"]), p50(other["latency"]))
    console.print(t)
    if s.get("class_imbalance"):  # top-1 flatters a model that favours the large classes
        console.print(
            f"classes imbalanced {s['class_imbalance']:.1f}:1; balanced accuracy (mean per-class recall): "
            f"float {pct(s['float_balanced_top1'])}, {result.target} {pct(s['artifact_balanced_top1'])}", highlight=False,
        )
    lat = Table(title=f"{Path(s['artifact']).name}: {s['size_bytes'] / 1024:.1f} KiB, {runtime} latency (ms, batch 1)")
    for col in ("threads", "p50", "p90", "p99"):
        lat.add_column(col, justify="right")
    for entry in s["latency"]:
        st = entry["stats"]
        lat.add_row(str(entry["threads"]), f"{st['p50_ms']:.3f}", f"{st['p90_ms']:.3f}", f"{st['p99_ms']:.3f}")
    console.print(lat)
    choice = s.get("int8_choice")
    if choice:
        console.print(f"shipped: {display_safe(choice['reason'])}", highlight=False)
    for target, folder in (s.get("packages") or {}).items():
        console.print(f"{target} package: {display_safe(folder)}", highlight=False)
    for path in s.get("kept") or []:
        console.print(f"kept (not made by this build): {display_safe(path)}", highlight=False)
    if elapsed_s is not None:
        console.print(f"done in {elapsed_s:.0f} s; report: {display_safe(result.out_dir / 'report.md')}")
    else:
        console.print(f"report: {display_safe(result.out_dir / 'report.md')}")
