"""``edgetl train``, ``qat`` and ``export``: the stages that need the training stack (TensorFlow).

Each command first checks that the stack is installed (:func:`requires_training_stack`), then
calls one function of :mod:`edgetl.pipeline.api`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetl.cli.console import RichProgress, console, pct, setup_logging
from edgetl.cli.errors import errors_as_exit, requires_training_stack
from edgetl.cli.options import (
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
from edgetl.core.errors import EdgetlError
from edgetl.core.text import display_safe
from edgetl.core.types import IODType, QuantMode


def train(
    data: DataOpt = None,
    backbone: BackboneOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (model.keras, labels.txt, history.json, curves, logs).")] = Path("runs/train"),
    input_size: InputSizeOpt = None,
    channels: ChannelsOpt = None,
    grayscale: GrayscaleOpt = False,
    alpha: AlphaOpt = None,
    weights: WeightsOpt = None,
    config: ConfigOpt = None,
    val: ValOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = None,
    head_epochs: HeadEpochsOpt = None,
    fine_tune_epochs: FineEpochsOpt = None,
    clean_epochs: CleanEpochsOpt = None,
    head_lr: HeadLrOpt = None,
    fine_tune_lr: FineTuneLrOpt = None,
    patience: PatienceOpt = None,
    unfreeze: UnfreezeOpt = None,
    unfreeze_from: UnfreezeFromOpt = None,
    unfreeze_blocks: UnfreezeBlocksOpt = None,
    augment: AugmentOpt = None,
    class_weights: ClassWeightsOpt = None,
    l2sp: L2spOpt = None,
    head_optimizer: HeadOptimizerOpt = None,
    fine_tune_optimizer: FineTuneOptimizerOpt = None,
    strategy: StrategyOpt = None,
    mixed_precision: MixedPrecisionOpt = False,
    jit: JitOpt = False,
    min_images: MinImagesOpt = None,
    strict: StrictOpt = None,
    deterministic: DeterministicOpt = False,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    no_cache: NoCacheOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Freeze-then-unfreeze transfer learning: a new head on the frozen backbone, then its top layers."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("train")
        flags = training_flags(
            data, backbone, input_size, alpha, weights, val, val_split, seed, batch_size, head_epochs, fine_tune_epochs, unfreeze,
            unfreeze_from, augment, strict, unfreeze_blocks, clean_epochs,
            patience=patience, head_lr=head_lr, fine_tune_lr=fine_tune_lr, min_images=min_images, class_weights=class_weights,
            channels=channels, grayscale=grayscale, l2sp=l2sp, head_optimizer=head_optimizer, fine_tune_optimizer=fine_tune_optimizer,
            strategy=strategy, mixed_precision=mixed_precision, jit=jit,
        )
        cfg = resolve(config, {**flags, "train.deterministic": True if deterministic else None})
        # the API (pydantic, numpy; TensorFlow once api.train runs): imported when the command runs, not for --help
        from edgetl.pipeline import api

        with RichProgress() as progress:
            result = api.train(cfg, out, force=force, progress=progress, trust_model=trust_model, no_cache=no_cache)
        if result.training.get("chief") is False:
            console.print(f"worker trained in step with the chief; it wrote nothing (the chief writes {display_safe(out)})")
            return
        balanced = f" (balanced accuracy [bold]{pct(result.val_balanced_accuracy)}[/], classes imbalanced {result.imbalance:.1f}:1)" if result.imbalanced else ""
        console.print(f"trained {cfg.model.name}: validation top-1 [bold]{pct(result.val_accuracy)}[/]{balanced} -> {display_safe(result.out_dir)}")


def qat(
    model: Annotated[Path, typer.Option("--model", help="Trained float model: a `edgetl train` run folder.")],
    data: DataOpt = None,
    mode: Annotated[QuantMode, typer.Option("--mode", help="qat: quantization-aware fine-tuning (writes a QAT Keras model); ptq: post-training int8 of the float model (writes a calibrated int8 .tflite).")] = QuantMode.qat,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <model>-qat or <model>-ptq).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="QAT epochs (default 3).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="QAT learning rate (default: the backbone recipe's, 1e-5 for mobilenet_v2).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="PTQ: training images used to calibrate int8 ranges.")] = 200,
    l2sp: Annotated[str | None, typer.Option("--l2sp", metavar="ALPHA", help="L2-SP in QAT: pull the weights toward the float model's, ALPHA/2*||w - w_float||^2, e.g. 0.01 (\\[qat] l2sp).")] = None,
    config: ConfigOpt = None,
    strict: StrictOpt = None,
    deterministic: DeterministicOpt = False,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Quantize a trained float model: QAT (tfmot, same data split) or PTQ, to compare the two."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("qat")
        # numpy (metadata) and the API (TensorFlow once api.qat/api.export runs): imported when the command runs, not for --help
        from edgetl.core.metadata import read_model_info
        from edgetl.pipeline import api

        info = read_model_info(model)
        if info.extra.get("kind") != "keras-float":
            raise EdgetlError(f"{model} is not a float training run (kind {info.extra.get('kind')!r}); pass the folder `edgetl train` wrote")
        float_top1 = info.extra.get("val_accuracy")
        if mode is QuantMode.ptq:
            target = out or model.with_name(model.name + "-ptq")
            artifact, meta = api.export(model, "tflite-int8", data=data, out=target, samples=samples, force=force, trust_model=trust_model)
            console.print(
                f"PTQ int8 (LiteRT): validation top-1 [bold]{pct(meta['accuracy']['artifact_top1'])}[/] (float {pct(float_top1)}), "
                f"{meta['size_bytes'] / 1024:.1f} KiB -> {display_safe(artifact)}"
            )
            return
        run_cfg = info.extra.get("config", {})
        flags = {
            "model.name": info.backbone, "model.weights": run_cfg.get("model", {}).get("weights"),
            "model.input_size": info.contract.input_size or f"{info.contract.input_width}x{info.contract.input_height}",
            "model.channels": info.contract.channels,
            "data.path": str(data) if data else run_cfg.get("data", {}).get("path"),
            "data.val_path": run_cfg.get("data", {}).get("val_path"), "data.val_split": run_cfg.get("data", {}).get("val_split"),
            "data.seed": run_cfg.get("data", {}).get("seed"), "data.strict": strict,
            "data.min_images": run_cfg.get("data", {}).get("min_images"),
            "qat.epochs": epochs, "qat.lr": lr, "qat.mode": QuantMode.qat.value, "qat.l2sp": l2sp,
            "train.deterministic": True if deterministic else run_cfg.get("train", {}).get("deterministic"),
            "train.class_weights": run_cfg.get("train", {}).get("class_weights"),  # QAT weighs the loss as training did
        }
        cfg = resolve(config, flags, {"data.path": "--data", "data.strict": "--strict", "qat.epochs": "--epochs", "qat.lr": "--lr", "qat.l2sp": "--l2sp"})
        target = out or model.with_name(model.name + "-qat")
        with RichProgress() as progress:
            result = api.qat(model, cfg, out=target, force=force, progress=progress, trust_model=trust_model)
        console.print(
            f"QAT model (Keras, fake-quantized): validation top-1 [bold]{pct(result.val_accuracy)}[/] (float {pct(float_top1)}) -> {display_safe(target)}; "
            f"`edgetl export --model {display_safe(target)}` makes the int8 .tflite"
        )


def export(
    model: Annotated[Path, typer.Option("--model", help="Float or QAT run folder (or .keras/.h5 file with edgetl.json beside it).")],
    fmt: Annotated[str, typer.Option("--format", help="tflite-int8, tflite-int16x8, tflite-dynamic, tflite-fp16, tflite-fp32, onnx-int8 or onnx-fp32.")] = "tflite-int8",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset of onnx-* formats (13-18).")] = 17,
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <model>-<format>).")] = None,
    io_dtype: Annotated[IODType, typer.Option("--io-dtype", help="Input/output dtype of int8 models.")] = IODType.int8,
    samples: Annotated[int, typer.Option("--samples", help="Training images used to calibrate int8.")] = 200,
    trust_model: TrustModelOpt = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Convert a trained model to TFLite or ONNX. A float model exported to int8 is post-training quantized."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("export")
        # the API (pydantic, numpy; TensorFlow once api.export runs): imported when the command runs, not for --help
        from edgetl.pipeline import api

        artifact, meta = api.export(model, fmt, data=data, out=out, io_dtype=io_dtype, samples=samples, force=force, opset=opset, trust_model=trust_model)
        console.print(f"wrote {display_safe(artifact)} ({meta['size_bytes'] / 1024:.1f} KiB, {fmt}{', ' + meta['quantization_mode'] if meta.get('quantization_mode') else ''})")
