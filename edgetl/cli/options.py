"""Options that mean the same thing in every command that takes them, and flags -> configuration.

Each ``*Opt`` is an ``Annotated`` type: a command declares ``data: DataOpt = None`` and gets the
same flag name and help text as every other command with ``--data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgetl.core.types import ClassWeights, Optimizer, Strategy

DataOpt = Annotated[Path | None, typer.Option("--data", help="Image folder with one subfolder per class (class name = folder name).")]
BackboneOpt = Annotated[str | None, typer.Option("--model", help="Backbone to fine-tune (see `edgetl backbones`), e.g. mobilenet_v2, or your own Keras model file (.keras/.h5): its head is replaced.")]
SquareInputSizeOpt = Annotated[int | None, typer.Option("--input-size", help="Square input size in pixels (default: the backbone recipe's).")]
InputSizeOpt = Annotated[
    str | None,
    typer.Option("--input-size", help="Input size in pixels: one side (square, e.g. 96) or WIDTHxHEIGHT (e.g. 96x64); default: the backbone recipe's."),
]
ChannelsOpt = Annotated[
    int | None,
    typer.Option("--channels", help="Input channels: 3 (RGB, default) or 1 (grayscale: smaller first layer and input buffer, for microcontrollers)."),
]
GrayscaleOpt = Annotated[bool, typer.Option("--grayscale", help="Same as --channels 1.")]
AlphaOpt = Annotated[float | None, typer.Option("--alpha", help="MobileNet width multiplier, e.g. 0.35, 0.5, 1.0.")]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="'imagenet' (efficientnet_lite0: offline from the pretrained extra; others: ~/.keras/models, downloaded if online), 'none' (train from scratch) or a weights file (.h5; .pth for efficientnet_lite0)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="edgetl.toml with any of the settings; flags override it.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an output folder that holds a different run or build.")]
StrictOpt = Annotated[bool | None, typer.Option("--strict", help="Fail on unreadable image files instead of skipping them.")]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")]
TrustModelOpt = Annotated[
    bool,
    typer.Option("--trust-model", help="Load a Keras model even if it carries Python code (Lambda layers, custom modules), which then runs: only for files you trust."),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option("--deterministic", help="TensorFlow op determinism: the same --seed gives the same weights, metrics and model bytes (slower). Default: \\[train] deterministic, else off."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]

# Training options shared by `train` and `build`.
ValOpt = Annotated[Path | None, typer.Option("--val", help="Separate validation folder (same classes); default: a seeded split of --data.")]
ValSplitOpt = Annotated[float | None, typer.Option("--val-split", help="Fraction of --data held out for validation (default 0.2).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for the split, shuffling and initialisation (default 42).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Training batch size (default 32).")]
HeadEpochsOpt = Annotated[int | None, typer.Option("--head-epochs", help="Phase 1 epochs: new head on the frozen backbone.")]
FineEpochsOpt = Annotated[int | None, typer.Option("--fine-tune-epochs", help="Phase 2 epochs (early stopping on validation loss).")]
UnfreezeOpt = Annotated[int | None, typer.Option("--unfreeze", help="Phase 2 trains the top N backbone layers (default: from the backbone's recipe block).")]
UnfreezeFromOpt = Annotated[str | None, typer.Option("--unfreeze-from", help="Phase 2 trains from this layer name to the top, e.g. block_13_expand.")]
UnfreezeBlocksOpt = Annotated[int | None, typer.Option("--unfreeze-blocks", help="Phase 2 trains the top N blocks of the backbone (blocks as `edgetl backbones` names them).")]
AugmentOpt = Annotated[bool | None, typer.Option("--augment/--no-augment", help="Light augmentation (flip, rotation, zoom, contrast) in phase 2; on by default.")]
CleanEpochsOpt = Annotated[int | None, typer.Option("--clean-epochs", help="Phase 3 after an augmented phase 2: epochs on un-augmented images, BatchNorm frozen, kept only if validation loss falls (default 3; 0: off).")]
PatienceOpt = Annotated[int | None, typer.Option("--patience", help="Phase 2 stops early after this many epochs without a lower validation loss, keeping the best epoch (default 3; \\[train] patience).")]
HeadLrOpt = Annotated[float | None, typer.Option("--lr", "--head-lr", help="Phase 1 (head) learning rate (default 1e-3; \\[train] head_lr).")]
FineTuneLrOpt = Annotated[float | None, typer.Option("--fine-tune-lr", help="Phase 2 learning rate (default: --lr / 10 for pretrained weights, --lr from scratch; \\[train] fine_tune_lr).")]
MinImagesOpt = Annotated[int | None, typer.Option("--min-images", help="Refuse to train when a class has fewer images (default 10, as `edgetl data check --strict`; \\[data] min_images).")]
ClassWeightsOpt = Annotated[
    ClassWeights | None,
    typer.Option("--class-weights", help="balanced: weight each class's loss by inverse frequency, for imbalanced classes; none: every image counts the same (default; \\[train] class_weights).", show_default=False),
]
HeadOptimizerOpt = Annotated[
    Optimizer | None,
    typer.Option("--head-optimizer", help="Phase 1 (head) optimizer: adam (default), rmsprop, or sgd (momentum 0.9) (\\[train] head_optimizer).", show_default=False),
]
FineTuneOptimizerOpt = Annotated[
    Optimizer | None,
    typer.Option("--fine-tune-optimizer", help="Phase 2 and 3 optimizer: adam (default), rmsprop, or sgd (momentum 0.9; give it a low --fine-tune-lr) (\\[train] fine_tune_optimizer).", show_default=False),
]
L2spOpt = Annotated[
    str | None,
    typer.Option(
        "--l2sp", metavar="ALPHA[,BETA]",
        help="L2-SP in phases 2 and 3: pull the fine-tuned backbone toward its pretrained weights (ALPHA/2*||w - w_pretrained||^2) and decay the new head (BETA/2*||w||^2, default 0.01), e.g. 0.01 or 0.01,0.001; not with --weights none (\\[train] l2sp).",
    ),
]
StrategyOpt = Annotated[
    Strategy | None,
    typer.Option(
        "--strategy",
        help="auto (default: MirroredStrategy over several GPUs, else one device), one, mirrored, or multiworker "
        "(MultiWorkerMirroredStrategy from TF_CONFIG; only the chief writes); --batch-size is per replica and learning rates "
        "scale with the replicas (\\[train] strategy).",
        show_default=False,
    ),
]
MixedPrecisionOpt = Annotated[
    bool,
    typer.Option("--mixed-precision", help="mixed_float16 compute with a float32 softmax and loss scaling (GPUs); the saved model, QAT and export stay float32 (\\[train] mixed_precision).", show_default=False),
]
JitOpt = Annotated[bool, typer.Option("--jit", help="XLA-compiled training steps (\\[train] jit).", show_default=False)]
NoCacheOpt = Annotated[
    bool,
    typer.Option("--no-cache", help="Reuse nothing: train every stage again, resume no checkpoint, decode the images again."),
]

#: Configuration key -> the flag of ``train`` and ``build`` that sets it: a bad value is reported by its flag.
CONFIG_FLAGS: dict[str, str] = {
    "data.path": "--data", "model.name": "--model", "model.input_size": "--input-size", "model.channels": "--channels", "model.alpha": "--alpha",
    "model.weights": "--weights", "data.val_path": "--val", "data.val_split": "--val-split", "data.seed": "--seed",
    "data.batch_size": "--batch-size", "data.strict": "--strict", "data.min_images": "--min-images",
    "train.head_epochs": "--head-epochs", "train.fine_tune_epochs": "--fine-tune-epochs", "train.clean_epochs": "--clean-epochs",
    "train.unfreeze": "--unfreeze", "train.unfreeze_from": "--unfreeze-from", "train.unfreeze_blocks": "--unfreeze-blocks",
    "train.augment": "--augment", "train.patience": "--patience", "train.head_lr": "--lr", "train.fine_tune_lr": "--fine-tune-lr",
    "train.class_weights": "--class-weights", "train.l2sp": "--l2sp",
    "train.head_optimizer": "--head-optimizer", "train.fine_tune_optimizer": "--fine-tune-optimizer",
    "train.strategy": "--strategy", "train.mixed_precision": "--mixed-precision", "train.jit": "--jit",
    "target": "--target", "out": "--out", "name": "--name", "qat.mode": "--mode", "qat.epochs": "--qat-epochs",
    "export.io_dtype": "--io-dtype", "export.opset": "--opset", "package.targets": "--package",
}


def training_flags(
    data: Path | None, backbone: str | None, input_size: int | str | None, alpha: float | None, weights: str | None,
    val: Path | None, val_split: float | None, seed: int | None, batch_size: int | None, head_epochs: int | None,
    fine_tune_epochs: int | None, unfreeze: int | None, unfreeze_from: str | None, augment: bool | None, strict: bool | None,
    unfreeze_blocks: int | None = None, clean_epochs: int | None = None, *, patience: int | None = None,
    head_lr: float | None = None, fine_tune_lr: float | None = None, min_images: int | None = None,
    class_weights: ClassWeights | None = None, channels: int | None = None, grayscale: bool = False,
    l2sp: str | None = None,
    head_optimizer: Optimizer | None = None, fine_tune_optimizer: Optimizer | None = None,
    strategy: Strategy | None = None, mixed_precision: bool | None = None, jit: bool | None = None,
) -> dict[str, Any]:
    """The training options as dotted configuration keys (``None``: not given on the command line).

    Raises:
        ConfigError: ``--grayscale`` with ``--channels 3``.
    """
    if grayscale:
        if channels not in (None, 1):
            from edgetl.core.errors import ConfigError  # light: the error classes only

            raise ConfigError(f"--grayscale means --channels 1; drop one of them (received --channels {channels})")
        channels = 1
    return {
        "model.channels": channels,
        "data.path": str(data) if data else None, "model.name": backbone, "model.input_size": input_size,
        "model.alpha": alpha, "model.weights": weights, "data.val_path": str(val) if val else None,
        "data.val_split": val_split, "data.seed": seed, "data.batch_size": batch_size,
        "train.head_epochs": head_epochs, "train.fine_tune_epochs": fine_tune_epochs,
        "train.unfreeze": unfreeze, "train.unfreeze_from": unfreeze_from, "train.unfreeze_blocks": unfreeze_blocks,
        "train.augment": augment, "train.clean_epochs": clean_epochs,
        "data.strict": strict, "train.patience": patience, "train.head_lr": head_lr, "train.fine_tune_lr": fine_tune_lr,
        "data.min_images": min_images, "train.class_weights": class_weights.value if class_weights else None,
        "train.l2sp": l2sp,
        "train.head_optimizer": head_optimizer.value if head_optimizer else None,
        "train.fine_tune_optimizer": fine_tune_optimizer.value if fine_tune_optimizer else None,
        "train.strategy": strategy.value if strategy else None,
        "train.mixed_precision": True if mixed_precision else None,  # a flag: on, or as the config says
        "train.jit": True if jit else None,
    }


def resolve(config: Path | None, flags: dict[str, Any], flag_names: dict[str, str] | None = None):
    """The build configuration from ``--config`` (TOML) with the given flags layered on top; a bad
    flag value is reported by its flag (``flag_names``: configuration key -> flag, default :data:`CONFIG_FLAGS`)."""
    from edgetl.pipeline.config import resolve_config  # pydantic: imported when a command runs (keeps --help fast)

    return resolve_config(config, flags, CONFIG_FLAGS if flag_names is None else flag_names)
