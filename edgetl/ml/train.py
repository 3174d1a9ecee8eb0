"""Freeze-then-unfreeze transfer learning.

Phase 1 trains a new head (pooling, dropout, dense softmax) on the frozen backbone. Without
augmentation the backbone's pooled features are computed once and the head is trained on that
cache: the backbone's forward pass is the whole cost of an epoch, so this is the point of
feature-based transfer (``benchmarks/bench_foundation.py`` measures the speed-up).

Phase 2 unfreezes the top of the backbone (a block boundary by default) at a lower learning
rate with early stopping on validation loss, keeping the best weights. BatchNorm layers of a
pretrained backbone stay frozen, which in tf_keras also keeps them in inference mode, so their
ImageNet statistics survive small batches.

Training from scratch (``weights="none"``) has no statistics worth keeping: the whole network
trains, BatchNorm learns in training mode with momentum 0.9 instead of Keras' 0.999 (which never
converges on a small dataset), and the statistics are re-estimated on training images at the end
(see ``shared/STACK.md``: test accuracy at chance without this).

Phase 2's learning rate is cut x0.3 whenever validation loss stalls (``train.schedule =
"plateau"``) or annealed on a cosine to 1/100 over the phase-2 epochs (``"cosine"``).

Before anything trains, the split is checked (a class under ``data.min_images``, or with no
validation images, is refused), the classes and their image counts are logged, and extreme
imbalance is warned about; ``train.class_weights = "balanced"`` weights the loss by inverse class
frequency in every phase. Validation reports top-1 and balanced accuracy (mean per-class recall).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.core.fingerprint import stage_fingerprints
from edgetl.core.metadata import ArtifactMetadata, package_versions, write_labels
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import ClassWeights, LRSchedule
from edgetl.data.split import (
    EXTREME_IMBALANCE,
    IMBALANCE_SHOWN,
    SplitData,
    balanced_accuracy,
    balanced_class_weights,
    check_class_counts,
    class_counts,
    imbalance,
    load_split,
)
from edgetl.ml import distribute, l2sp
from edgetl.ml._keras import keras, tf
from edgetl.ml.backbones import build_classifier, resolve_weights
from edgetl.ml.backbones.spec import BackboneSpec
from edgetl.ml.checkpoints import RunCheckpoints
from edgetl.ml.curves import plot_history
from edgetl.ml.model_io import MODEL_FILE, check_finite_weights, predict_pixels
from edgetl.ml.phases import (
    _merge_history,
    backbone_layers,
    cosine_lr,
    fine_tune_lr,
    finish_clean,
    fit_on_images,
    freeze_backbone,
    from_scratch,
    reestimate_batchnorm,
    set_batchnorm_momentum,
    train_head_on_features,
    unfreeze_index,
    unfreeze_top,
)
from edgetl.ml.progress import notice
from edgetl.ml.user_model import get_backbone, is_model_path

log = logging.getLogger(__name__)

#: At most this many classes are listed by name in the class-count line at the start of training.
SHOWN_CLASSES = 30

SCRATCH_BN_MOMENTUM = 0.9


@dataclass
class TrainResult:
    """A trained float model and what travels with it.

    Attributes:
        out_dir: the run folder (``model.keras``, ``labels.txt``, ``history.json``,
            ``training_curves.png``, ``logs/``, ``edgetl.json``).
        model: the trained Keras model, still in memory for the next stage.
        history: per epoch, every phase one after the other (``history.json``): lists of equal
            length ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``; ``phase`` (``"head"``,
            ``"fine_tune"``, ``"clean"``); ``phase_epoch`` (1-based within the phase); ``best``
            (True at the epoch whose weights the phase ended with) and ``discarded`` (True for the
            epochs after it, whose weights were thrown away when the best epoch was restored: all
            of a phase's epochs when none improved on its starting weights, as phase 3 can).
            ``lr`` is only phase 2's epochs (its schedule); ``l2sp`` (with ``train.l2sp``) is only
            phases 2 and 3's epochs: the L2-SP penalty at each epoch's last step (``loss`` includes it,
            ``val_loss`` does not: see :mod:`edgetl.ml.l2sp`).
        val_accuracy: top-1 on the validation split, inference mode.
        val_balanced_accuracy: mean per-class recall on the validation split (equals top-1 when
            the classes are the same size; a model that always answers one class scores 1/classes).
        class_weights: per class (``class_names`` order), the loss weights training used; None: none.
    """

    out_dir: Path
    model: Any
    class_names: list[str]
    contract: PreprocessContract
    history: dict[str, list[float]]
    val_accuracy: float
    split: SplitData
    timings: dict[str, float] = field(default_factory=dict)
    phase3: dict[str, Any] | None = None  # finish_clean's summary; None when phase 3 did not run
    val_balanced_accuracy: float = float("nan")
    class_weights: list[float] | None = None
    resumed: list[str] = field(default_factory=list)  # what this run took from an earlier, interrupted one
    training: dict[str, Any] = field(default_factory=dict)  # the strategy, replicas and scaling (edgetl.json's ``training``)

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE

    @property
    def train_counts(self) -> list[int]:
        """Training images per class (``class_names`` order)."""
        return class_counts(self.split.train.y, len(self.class_names))

    @property
    def val_counts(self) -> list[int]:
        """Validation images per class (``class_names`` order)."""
        return class_counts(self.split.val.y, len(self.class_names))

    @property
    def imbalance(self) -> float:
        """Largest class (training + validation images) over the smallest."""
        return imbalance([a + b for a, b in zip(self.train_counts, self.val_counts, strict=True)])

    @property
    def imbalanced(self) -> bool:
        """Whether the classes differ enough in size for balanced accuracy to be shown beside top-1."""
        return self.imbalance > IMBALANCE_SHOWN


def resolve_model_options(config: BuildConfig, *, trust_model: bool = False) -> tuple[BackboneSpec, int | tuple[int, int], float | None]:
    """Backbone spec, input size (a side, or ``(height, width)`` when not square) and alpha, with every
    cheap check done before any training.

    ``config.model.name`` is a registered backbone or the user's own Keras model file
    (:mod:`edgetl.ml.user_model`, opened with no code from it run unless ``trust_model``).
    """
    l2sp.check_l2sp(config.train.l2sp, config.model.weights)  # `train` and `build`, before any image is read
    hw = config.model.input_hw
    square = hw is None or hw[0] == hw[1]
    if not square and is_model_path(config.model.name):
        raise ConfigError(f"--input-size {config.model.input_size}: a --model file takes a square input; pass one side, e.g. --input-size {max(hw)}")  # type: ignore[arg-type]
    spec = get_backbone(config.model.name, input_size=hw[0] if hw is not None and square else None, trust_model=trust_model)
    input_size: int | tuple[int, int] = spec.default_input_size if hw is None else (hw[0] if square else hw)
    alpha = config.model.alpha if config.model.alpha is not None else spec.default_alpha
    spec.check_input_size(input_size)
    spec.check_alpha(alpha)
    return spec, input_size, alpha


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's global generators (initialisation, dropout, shuffles)."""
    keras().utils.set_random_seed(seed)


@contextmanager
def deterministic_ops(enabled: bool):
    """TensorFlow op determinism (``enable_op_determinism``) while the block runs, if ``enabled``.

    The switch is process-wide, so the previous state comes back afterwards: a notebook or test
    that trains once deterministically does not run everything after it in that mode.
    """
    if not enabled:
        yield
        return

    tensorflow = tf()  # imported with Keras 2 selected, before its internals below
    # The public API only enables determinism; the module behind it can also read and undo it.
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    tensorflow.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not before:
            tf_config.disable_op_determinism()


def train(
    config: BuildConfig,
    out_dir: Path,
    *,
    force: bool = False,
    progress: Progress = log_progress,
    run_fingerprint: str | None = None,
    trust_model: bool = False,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    keep_checkpoints: bool = False,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and write the run folder.

    Args:
        config: resolved configuration (``data.path`` required).
        out_dir: run folder to write.
        force: replace a folder that holds a different run.
        progress: callback for progress bars.
        run_fingerprint: identity of this run (the pipeline's stage fingerprint); default: the config's.
        trust_model: with ``--model FILE``, load the file even if it carries code (Lambda layers).
        checkpoint_dir: where every epoch is checkpointed (:mod:`edgetl.ml.checkpoints`); default
            ``.<out_dir name>.resume/`` beside ``out_dir``. A run killed part way resumes from it.
        resume: False (``--no-cache``): ignore earlier checkpoints and start over.
        keep_checkpoints: leave the checkpoints when the run is written (the caller clears them).

    Returns:
        The trained model with its metadata and validation accuracy.

    Raises:
        ConfigError: unknown backbone, bad size/alpha/weights or unfreeze options.
        DataError: an unusable image folder; a class with fewer than ``data.min_images`` images,
            or with no training or validation images after the split.
        OutputExistsError: ``out_dir`` holds something else and ``force`` is off.
    """
    with deterministic_ops(config.train.deterministic):
        return _train(
            config, out_dir, force=force, progress=progress, run_fingerprint=run_fingerprint, trust_model=trust_model,
            checkpoint_dir=checkpoint_dir, resume=resume, keep_checkpoints=keep_checkpoints,
        )


def _train(
    config: BuildConfig, out_dir: Path, *, force: bool, progress: Progress, run_fingerprint: str | None, trust_model: bool = False,
    checkpoint_dir: Path | None = None, resume: bool = True, keep_checkpoints: bool = False,
) -> TrainResult:
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    spec, input_size, alpha = resolve_model_options(config, trust_model=trust_model)
    if run_fingerprint is None:
        run_fingerprint = stage_fingerprints(config)["train"]
    resolve_weights(spec, config.model.weights, alpha, input_size)
    distribute.check_strategy(config)
    split = load_split(config.data, input_size, channels=config.model.channels)
    check_class_counts(split, config.data)
    set_seed(config.data.seed)
    strategy = distribute.make_strategy(config.train.strategy)
    dist = distribute.describe(strategy, config)
    with strategy.scope(), distribute.precision(config.train.mixed_precision):  # may fetch ImageNet weights: fail before writing anything
        model, contract = build_classifier(
            spec, len(split.class_names), input_size, alpha, config.model.weights, config.model.dropout, channels=config.model.channels,
            head_units=config.model.head_units,
        )
    if checkpoint_dir is None:
        checkpoint_dir = Path(out_dir).parent / f".{Path(out_dir).name}.resume"
    with contextlib.ExitStack() as scratch_out:
        own_checkpoints = None
        if not dist.chief:  # a non-chief worker saves checkpoints too (saving takes part in collectives), into its own scratch folder
            own_checkpoints = Path(scratch_out.enter_context(tempfile.TemporaryDirectory(prefix="edgetl-worker-"))) / "checkpoints"
        checkpoints = RunCheckpoints(checkpoint_dir, run_fingerprint, write_folder=own_checkpoints, resume=resume)
        result = _fit_and_write(config, out_dir, force, progress, run_fingerprint, spec, split, model, contract, strategy, dist, checkpoints)
        if not keep_checkpoints:
            checkpoints.clear()
        return result


def log_distribution(dist: distribute.Distribution) -> None:
    where = f"worker {dist.worker_index} of {dist.workers}{' (chief: writes the files)' if dist.chief else ' (writes nothing)'}, " if dist.workers > 1 else ""
    notice.info(
        "training with %s: %s%d replica(s), %d images per step (%d per replica), learning rates x%g%s%s",
        dist.strategy, where, dist.replicas, dist.global_batch, dist.per_replica_batch, dist.lr_scale,
        ", mixed precision (float16 compute)" if dist.mixed_precision else "", ", XLA" if dist.jit else "",
    )


def _fit_and_write(config, out_dir, force, progress, run_fingerprint, spec, split, model, contract, strategy, dist, checkpoints) -> TrainResult:
    out_dir = _fs.prepare_output_dir(Path(out_dir), run_fingerprint, force=force, what="training run")
    log_distribution(dist)  # once every check has passed, as the class counts below
    weights_used = report_classes(split, config)  # once every check has passed: a refusal stays one line
    if from_scratch(config) and (config.train.patience < 6 or config.train.fine_tune_epochs < 20):
        # a training run's advice; fit_transfer stays quiet (experiments and the demo's baseline choose short runs on purpose)
        log.warning(
            "training from scratch usually needs 10+ epochs before validation loss moves: with patience %d "
            "and %d fine-tune epochs it may stop early; pass e.g. --fine-tune-epochs 35 --patience 8",
            config.train.patience, config.train.fine_tune_epochs,
        )
    with strategy.scope():
        fitted = fit_transfer(
            model, contract, spec, split, distribute.scaled(config, dist.replicas), progress=progress,
            log_dir=out_dir / "logs" if dist.chief else None, checkpoints=checkpoints,
        )
        if config.train.mixed_precision:
            model = distribute.as_float32(model)
    result = TrainResult(
        out_dir, model, split.class_names, contract, fitted.history, fitted.val_accuracy, split, fitted.timings,
        fitted.phase3, fitted.val_balanced_accuracy, weights_used,
    )
    result.resumed = list(checkpoints.resumed)
    result.training = dist.to_dict()
    write_run(result, spec, config, run_fingerprint, fitted.trainable, dist)
    return result


@dataclass
class Fitted:
    """What :func:`fit_transfer` leaves beside the trained model (see :class:`TrainResult`)."""

    history: dict[str, list[float]]
    timings: dict[str, float]
    phase3: dict[str, Any] | None
    trainable: list[str]
    val_accuracy: float
    val_balanced_accuracy: float


def fit_transfer(
    model, contract: PreprocessContract, spec: BackboneSpec, split: SplitData, config: BuildConfig, *,
    progress: Progress = log_progress, log_dir: Path | None = None, checkpoints: RunCheckpoints | None = None,
) -> Fitted:
    """Phases 1-3 on an in-memory split: the head on the frozen backbone, the top unfrozen, the
    clean finish; then top-1 and balanced accuracy on the split's validation images.

    ``model`` comes from :func:`build_classifier` and is trained in place. No file is written
    except TensorBoard logs under ``log_dir`` (None: none) and ``checkpoints`` (every epoch; a fit
    an earlier run began resumes from its last epoch). Experiments call this on subsets.
    """
    checkpoints = checkpoints or RunCheckpoints.off()
    timings: dict[str, float] = {}
    scratch = from_scratch(config)
    l2sp.check_l2sp(config.train.l2sp, config.model.weights)
    # L2-SP's source: the pretrained weights as built, before phase 1 touches anything.
    source = l2sp.snapshot(model) if config.train.l2sp is not None else None
    if scratch:
        set_batchnorm_momentum(model, SCRATCH_BN_MOMENTUM)
    history: dict[str, list[float]] = {}
    log.info(
        "training %s (%s weights, %s) on %d images, validating on %d, %d classes",
        spec.name, config.model.weights, contract.size_text, len(split.train.y), len(split.val.y), len(split.class_names),
    )

    # Phase 1: the head on a frozen backbone.
    freeze_backbone(model)
    start = time.perf_counter()
    if config.train.head_epochs > 0:
        if config.train.head_augment:
            fitted = fit_on_images(
                model, split, contract, config, lr=config.train.head_lr, epochs=config.train.head_epochs,
                augment=True, task="phase 1 (head)", progress=progress, checkpoints=checkpoints,
            )
            _merge_history(history, "head", fitted)
        else:
            _merge_history(history, "head", train_head_on_features(model, split, contract, config, progress, checkpoints))
        check_finite_weights(model, "phase 1 (head)", f"head_lr={config.train.head_lr:g}")
    timings["phase1_s"] = time.perf_counter() - start

    # Phases 2 and 3 fine-tune, with L2-SP when asked (detached afterwards: nothing of it is saved).
    with _l2sp_phases(model, source, config) as penalty:
        trainable, phase3 = _fine_tune(model, contract, spec, split, config, progress, log_dir, history, timings, scratch, penalty, checkpoints)

    predicted = np.argmax(predict_pixels(model, split.val.x, contract), axis=1)
    val_acc = float(np.mean(predicted == split.val.y))
    val_balanced = balanced_accuracy(split.val.y, predicted)
    log.info("validation (inference mode): top-1 %.4f, balanced accuracy %.4f", val_acc, val_balanced)
    return Fitted(history, timings, phase3, trainable, val_acc, val_balanced)


@contextmanager
def _l2sp_phases(model, source, config: BuildConfig):
    """L2-SP attached to ``model`` while the block runs (``config.train.l2sp``); yields a function
    that logs the penalty (a no-op when L2-SP is off)."""
    if source is None or config.train.l2sp is None:
        yield lambda phase: None
        return
    alpha, beta = config.train.l2sp
    log.info("L2-SP on in phases 2 and 3: alpha %g toward the pretrained backbone weights, beta %g on the head's", alpha, beta)
    with l2sp.attached(model, source, alpha, beta) as value:
        yield lambda phase: log.info("%s: %s", phase, l2sp.describe(value(), alpha, beta))


def _fine_tune(
    model, contract, spec, split, config, progress, log_dir, history, timings, scratch, penalty, checkpoints
) -> tuple[list[str], dict[str, Any] | None]:
    """Phases 2 and 3 of :func:`fit_transfer`, adding to ``history`` and ``timings``; returns phase 2's
    trainable layers and phase 3's summary (None: it did not run). ``penalty(phase)`` logs L2-SP."""
    phase3: dict[str, Any] | None = None
    # Phase 2: unfreeze the top of the backbone at a lower learning rate.
    start = time.perf_counter()
    first = unfreeze_index(model, spec, config)
    trainable = unfreeze_top(model, first, keep_batchnorm_frozen=not scratch)
    log.info("phase 2 trains %d backbone layers from %s", len(trainable), backbone_layers(model)[first].name if trainable else "-")
    if config.train.fine_tune_epochs > 0:
        k = keras()
        lr, epochs, schedule = fine_tune_lr(config), config.train.fine_tune_epochs, config.train.schedule
        if schedule is LRSchedule.cosine:
            decay = k.callbacks.LearningRateScheduler(cosine_lr(lr, epochs))
        else:  # smaller steps once validation loss stalls, before early stopping gives up
            decay = k.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, config.train.patience // 2), min_lr=1e-6)
        log.info("phase 2: up to %d epochs, learning rate %g, %s schedule, early stopping after %d epochs without progress", epochs, lr, schedule, config.train.patience)
        fitted = fit_on_images(
            model, split, contract, config, lr=lr, epochs=epochs,
            augment=config.train.augment, task="phase 2 (fine-tune)", progress=progress, checkpoints=checkpoints,
            callbacks=[
                k.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.patience),
                decay,
                *([k.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0)] if log_dir is not None else []),
            ],
        )
        _merge_history(history, "fine_tune", fitted)
        check_finite_weights(model, "phase 2 (fine-tune)", f"fine_tune_lr={fine_tune_lr(config):g}")
        penalty("phase 2 (fine-tune)")
    if scratch:
        reestimate_batchnorm(model, split.train.x, contract, seed=config.data.seed)
    timings["phase2_s"] = time.perf_counter() - start

    # Phase 3: end on the images as they are, in the conditions QAT fine-tunes in.
    if config.train.clean_epochs > 0 and config.train.augment and config.train.fine_tune_epochs > 0:
        start = time.perf_counter()
        fitted, phase3 = finish_clean(model, split, contract, config, progress, checkpoints)
        _merge_history(history, "clean", fitted)
        check_finite_weights(model, "phase 3 (clean)", f"clean_lr={phase3['lr']:g}")
        penalty("phase 3 (clean)")
        timings["phase3_s"] = time.perf_counter() - start
    return trainable, phase3



def report_classes(split: SplitData, config: BuildConfig) -> list[float] | None:
    """Log the classes with their training/validation image counts (always shown), warn on extreme
    imbalance, and return the class weights training will use (None: none)."""
    names = split.class_names
    train, val = class_counts(split.train.y, len(names)), class_counts(split.val.y, len(names))
    listed = ", ".join(f"{name} {a}/{b}" for name, a, b in list(zip(names, train, val, strict=True))[:SHOWN_CLASSES])
    more = f", ... and {len(names) - SHOWN_CLASSES} more" if len(names) > SHOWN_CLASSES else ""
    notice.info("%d classes (training/validation images): %s%s", len(names), listed, more)
    total = [a + b for a, b in zip(train, val, strict=True)]
    balanced = ClassWeights(config.train.class_weights) is ClassWeights.balanced
    ratio = imbalance(total)
    if ratio > EXTREME_IMBALANCE and not balanced:
        largest, smallest = int(np.argmax(total)), int(np.argmin(total))
        log.warning(
            "classes are extremely imbalanced, %.0f:1 (largest %r with %d images, smallest %r with %d; over %gx): a model "
            "can score a high top-1 by mostly answering the large classes; train with balanced class weights "
            "(--class-weights balanced, [train] class_weights = \"balanced\") or add images to the small classes, "
            "and judge the model by its balanced accuracy",
            ratio, names[largest], total[largest], names[smallest], total[smallest], EXTREME_IMBALANCE,
        )
    if not balanced:
        return None
    weights = balanced_class_weights(split.train.y, len(names))
    shown = ", ".join(f"{name} {w:.3g}" for name, w in list(zip(names, weights, strict=True))[:SHOWN_CLASSES])
    notice.info("balanced class weights (largest/smallest class %.1f:1): %s%s", ratio, shown, more)
    return weights


def write_run(
    result: TrainResult, spec: BackboneSpec, config: BuildConfig, run_fingerprint: str, trainable: list[str],
    dist: distribute.Distribution | None = None,
) -> None:
    """Write the run folder; ``edgetl.json`` goes last and marks it complete.

    ``history.json`` is :attr:`TrainResult.history`; ``edgetl.json`` records, beside the model's
    metadata, ``val_accuracy`` (top-1), ``val_balanced_accuracy``, ``train_counts`` and
    ``val_counts`` (per class, ``class_names`` order) and ``class_weights`` (the same order; null: none).
    """
    out = result.out_dir
    with _fs.atomic_path(out / MODEL_FILE) as tmp:
        result.model.save(tmp)
    write_labels(out / "labels.txt", result.class_names)
    _fs.write_json(out / "history.json", result.history)
    plot_history(result.history, out / "training_curves.png")
    ArtifactMetadata.create(
        kind="keras-float",
        fingerprint=run_fingerprint,
        model_file=MODEL_FILE,
        backbone=spec.name,
        input_size=result.contract.input_size,
        alpha=config.model.alpha if config.model.alpha is not None else spec.default_alpha,
        weights=config.model.weights,
        class_names=result.class_names,
        preprocessing=result.contract.to_dict(),
        val_accuracy=result.val_accuracy,
        val_balanced_accuracy=result.val_balanced_accuracy,
        num_train=int(len(result.split.train.y)),
        num_val=int(len(result.split.val.y)),
        train_counts=result.train_counts,
        val_counts=result.val_counts,
        class_weights=result.class_weights,
        skipped_files=[str(s.path) for s in result.split.skipped],
        phase2_trainable_layers=len(trainable),
        timings_s=result.timings,
        phase3=result.phase3,
        deterministic=config.train.deterministic,
        **({"training": dist.to_dict()} if dist is not None else {}),
        **({"resumed": result.resumed} if result.resumed else {}),  # what an interrupted earlier run left and this one continued
        versions=package_versions(),
        config=config.to_toml_dict(),
    ).write(out)
