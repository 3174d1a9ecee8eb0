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
"""

from __future__ import annotations

import logging
import math
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
from edgetl.core.metadata import SCHEMA_VERSION, package_versions, write_labels
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import LRSchedule
from edgetl.data.images import ImageData, SplitData, load_split
from edgetl.ml.backbones import BACKBONES, HEAD_LAYERS, BackboneSpec, block_starts, build_classifier, resolve_weights
from edgetl.ml.progress import keras_callback

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
SCRATCH_BN_MOMENTUM = 0.9


@dataclass
class TrainResult:
    """A trained float model and what travels with it.

    Attributes:
        out_dir: the run folder (``model.keras``, ``labels.txt``, ``history.json``,
            ``training_curves.png``, ``logs/``, ``edgetl.json``).
        model: the trained Keras model, still in memory for the next stage.
        val_accuracy: top-1 on the validation split, inference mode.
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

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


def resolve_model_options(config: BuildConfig) -> tuple[BackboneSpec, int, float | None]:
    """Backbone spec, input size and alpha, with every cheap check done before any training."""
    spec = BACKBONES.get(config.model.name)
    input_size = config.model.input_size or spec.default_input_size
    alpha = config.model.alpha if config.model.alpha is not None else spec.default_alpha
    spec.check_input_size(input_size)
    spec.check_alpha(alpha)
    return spec, input_size, alpha


def from_scratch(config: BuildConfig) -> bool:
    return config.model.weights.lower() == "none"


def fine_tune_lr(config: BuildConfig) -> float:
    """Phase 2 learning rate: as configured, else 10x below the head's for pretrained weights
    (small steps keep ImageNet features) and the head's own when training from scratch."""
    if config.train.fine_tune_lr is not None:
        return config.train.fine_tune_lr
    return config.train.head_lr if from_scratch(config) else config.train.head_lr / 10


def cosine_lr(base: float, epochs: int, floor: float = 0.01):
    """Epoch -> learning rate, from ``base`` at the first epoch to ``floor * base`` at the last."""

    def rate(epoch: int, _current: float | None = None) -> float:
        if epochs <= 1:
            return base
        progress = min(epoch, epochs - 1) / (epochs - 1)
        return float(base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))))

    return rate


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's global generators (initialisation, dropout, shuffles)."""
    from edgetl.ml._keras import keras

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
    from edgetl.ml._keras import tf

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


def check_finite_weights(model, after: str, learning_rates: str) -> None:
    """Refuse a model whose training diverged, before anything converts or writes it (a NaN
    weight made the TFLite converter crash the process).

    Raises:
        ConfigError: some weight is NaN or infinite.
    """
    bad = total = 0
    for weights in model.get_weights():
        weights = np.asarray(weights)
        total += weights.size
        if np.issubdtype(weights.dtype, np.floating):
            bad += int(weights.size - np.count_nonzero(np.isfinite(weights)))
    if bad:
        raise ConfigError(
            f"training diverged: {bad} of {total} weights are NaN/inf after {after} ({learning_rates}); lower the learning rates"
        )


def distribution_strategy():
    """Mirrored across GPUs when there are several; the default (one device) otherwise."""
    from edgetl.ml._keras import tf

    gpus = tf().config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf().distribute.MirroredStrategy()
    log.info("training on %s", "GPU" if gpus else "CPU")
    return tf().distribute.get_strategy()


def is_batchnorm(layer) -> bool:
    from edgetl.ml._keras import keras

    return isinstance(layer, keras().layers.BatchNormalization)


def backbone_layers(model) -> list:
    return [layer for layer in model.layers if layer.name not in HEAD_LAYERS]


def unfreeze_index(model, spec: BackboneSpec, config: BuildConfig) -> int:
    """Index into the backbone's layers from which phase 2 trains.

    ``--unfreeze N`` counts layers from the top; ``--unfreeze-from NAME`` names the first one;
    ``--unfreeze-blocks N`` takes the backbone's top N blocks (its registry entry names them); otherwise the backbone's default block boundary, or everything when training from scratch.

    Raises:
        ConfigError: an unknown layer name, or both options given.
    """
    layers = backbone_layers(model)
    names = [layer.name for layer in layers]
    train_cfg = config.train
    if train_cfg.unfreeze is not None:
        return max(0, len(layers) - train_cfg.unfreeze)
    if train_cfg.unfreeze_blocks is not None:
        blocks = block_starts(spec, names)
        if not blocks:
            raise ConfigError(f"{spec.name} has no named blocks; use --unfreeze N or --unfreeze-from LAYER")
        count = min(train_cfg.unfreeze_blocks, len(blocks))
        if train_cfg.unfreeze_blocks > len(blocks):
            log.warning("%s has %d blocks; unfreezing all of them", spec.name, len(blocks))
        return names.index(blocks[-count][1])
    if train_cfg.unfreeze_from is None and from_scratch(config):
        return 0
    name = train_cfg.unfreeze_from or spec.unfreeze_from
    if name not in names:
        close = [n for n in names if n.split("_")[:2] == name.split("_")[:2]][:5] or names[-5:]
        raise ConfigError(f"layer {name!r} is not in {spec.name}; layers look like: {', '.join(close)}")
    return names.index(name)


def freeze_backbone(model) -> None:
    """Phase 1: only the head trains."""
    for layer in model.layers:
        layer.trainable = layer.name in HEAD_LAYERS


def unfreeze_top(model, start: int, *, keep_batchnorm_frozen: bool) -> list[str]:
    """Phase 2: backbone layers from ``start`` train (BatchNorm optionally kept frozen).

    Returns:
        Names of the backbone layers that train.
    """
    trainable = []
    for index, layer in enumerate(backbone_layers(model)):
        train_it = index >= start and not (keep_batchnorm_frozen and is_batchnorm(layer))
        layer.trainable = train_it
        if train_it and layer.weights:
            trainable.append(layer.name)
    for name in HEAD_LAYERS:
        model.get_layer(name).trainable = True
    return trainable


def set_batchnorm_momentum(model, momentum: float) -> None:
    for layer in model.layers:
        if is_batchnorm(layer):
            layer.momentum = momentum


def reestimate_batchnorm(
    model, pixels: np.ndarray, contract: PreprocessContract, batch_size: int = 64, max_images: int = 1024, seed: int = 0
) -> None:
    """Recompute BatchNorm moving statistics from training images; weights stay untouched.

    Each batch runs once in training mode with momentum ``k/(k+1)``, so after ``n`` batches the
    moving statistics are the plain average over all of them.
    """
    bns = [layer for layer in model.layers if is_batchnorm(layer)]
    if not bns:
        return
    saved = [(layer.trainable, layer.momentum) for layer in bns]
    for layer in bns:
        layer.trainable = True  # tf_keras runs a frozen BatchNorm in inference mode
    # Shuffled: batches of one class would average away the between-class variance.
    order = np.random.default_rng(seed).permutation(len(pixels))[:max_images]
    count = len(order)
    batches = [pixels[order[i : i + batch_size]] for i in range(0, count, batch_size)]
    for k, batch in enumerate(batches):
        for layer in bns:
            layer.momentum = k / (k + 1)
        model(contract.normalize(batch), training=True)
    for layer, (trainable, momentum) in zip(bns, saved, strict=True):
        layer.trainable = trainable
        layer.momentum = momentum
    log.info("re-estimated BatchNorm statistics of %d layers on %d images", len(bns), count)


def augmenter(seed: int):
    """Light augmentation on 0..255 pixels: flip, small rotation, zoom and contrast."""
    from edgetl.ml._keras import keras

    k = keras()
    return k.Sequential(
        [
            k.layers.RandomFlip("horizontal", seed=seed),
            k.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            k.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
            k.layers.RandomContrast(0.1, seed=seed + 3),
        ],
        name="edgetl_augment",
    )


def make_dataset(images: ImageData, contract: PreprocessContract, batch_size: int, *, shuffle: bool, augment: bool, seed: int):
    """A tf.data pipeline: uint8 pixels -> (augmented) -> normalized float32, batched."""
    from edgetl.ml._keras import tf

    t = tf()
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    ds = t.data.Dataset.from_tensor_slices((images.x, images.y))
    if shuffle:
        ds = ds.shuffle(len(images.y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmenter(seed) if augment else None

    def prepare(x, y):
        x = t.cast(x, t.float32)
        if aug is not None:
            x = t.clip_by_value(aug(x, training=True), 0.0, 255.0)
        return (x - mean) / std, y

    return ds.map(prepare, num_parallel_calls=t.data.AUTOTUNE).prefetch(t.data.AUTOTUNE)


def predict_pixels(model, pixels: np.ndarray, contract: PreprocessContract, batch_size: int = 64) -> np.ndarray:
    """Model outputs for uint8 pixels, normalized batch by batch (no full float copy in memory)."""
    outputs = [model.predict_on_batch(contract.normalize(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def accuracy(model, images: ImageData, contract: PreprocessContract, batch_size: int = 64) -> float:
    if len(images.y) == 0:
        return float("nan")
    probs = predict_pixels(model, images.x, contract, batch_size)
    return float(np.mean(np.argmax(probs, axis=1) == images.y))


def _compile(model, lr: float) -> None:
    from edgetl.ml._keras import keras

    k = keras()
    model.compile(optimizer=k.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _merge_history(total: dict[str, list[float]], phase: str, history: dict[str, list[float]]) -> None:
    for key, values in history.items():
        total.setdefault(key, []).extend(float(v) for v in values)
    total.setdefault("phase", []).extend([phase] * len(next(iter(history.values()), [])))


class BestWeights:
    """Keep the weights of the epoch with the lowest validation loss (tf_keras' EarlyStopping
    restores them only when it actually stops early). With ``baseline`` (the loss before
    training), weights that never beat it are not kept: the model stays as it came in."""

    def __new__(cls, monitor: str = "val_loss", baseline: float = np.inf):
        from edgetl.ml._keras import keras

        class _Best(keras().callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best = baseline
                self.initial = None
                self.weights = None
                self.best_epoch = -1

            def on_epoch_end(self, epoch, logs=None):
                value = (logs or {}).get(monitor)
                if value is not None and value < self.best:
                    self.best, self.best_epoch = value, epoch
                    self.weights = self.model.get_weights()

            def on_train_begin(self, logs=None):
                if np.isfinite(baseline):
                    self.initial = self.model.get_weights()

            def on_train_end(self, logs=None):
                if self.weights is not None:
                    self.model.set_weights(self.weights)
                elif self.initial is not None:
                    self.model.set_weights(self.initial)

        return _Best()


def fit_on_images(
    model, split: SplitData, contract: PreprocessContract, config: BuildConfig, *, lr: float, epochs: int,
    augment: bool, task: str, progress: Progress, callbacks: list | None = None, baseline: float = np.inf,
) -> dict[str, list[float]]:
    """Compile and fit on the split's images, validating on its held-out part; keep the best epoch
    (or the incoming weights, if no epoch's validation loss beats ``baseline``)."""
    _compile(model, lr)
    batch, seed = config.data.batch_size, config.data.seed
    fitted = model.fit(
        make_dataset(split.train, contract, batch, shuffle=True, augment=augment, seed=seed),
        validation_data=make_dataset(split.val, contract, batch, shuffle=False, augment=False, seed=0),
        epochs=epochs,
        verbose=0,
        callbacks=[BestWeights(baseline=baseline), *(callbacks or []), keras_callback(progress, task, epochs)],
    )
    return {k: [float(v) for v in values] for k, values in fitted.history.items()}


def validation_loss(model, split: SplitData, contract: PreprocessContract, batch_size: int) -> float:
    """Mean cross-entropy of ``model`` (inference mode) on the split's validation images."""
    from edgetl.ml._keras import keras

    probs = predict_pixels(model, split.val.x, contract, batch_size)
    return float(np.mean(keras().losses.sparse_categorical_crossentropy(split.val.y, probs)))


def finish_clean(
    model, split: SplitData, contract: PreprocessContract, config: BuildConfig, progress: Progress
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Phase 3: a few epochs on un-augmented images with BatchNorm in inference mode.

    Phase 2's augmentation (resampled rotations and zooms) shifts the training images away from
    the ones the model meets in use, and QAT afterwards fine-tunes on un-augmented images with
    BatchNorm frozen. Finishing the float model under the same conditions makes the float model
    better where that shift matters and makes "QAT int8 vs float" measure quantization alone.
    The epochs are kept only if they lower validation loss.

    Returns:
        The epochs' history, and a summary (learning rate, validation loss before and after, kept).
    """
    lr = config.train.clean_lr if config.train.clean_lr is not None else fine_tune_lr(config) / 10
    bns = [layer for layer in model.layers if is_batchnorm(layer)]
    saved = [layer.trainable for layer in bns]
    for layer in bns:
        layer.trainable = False  # tf_keras runs a non-trainable BatchNorm in inference mode
    before = validation_loss(model, split, contract, max(config.data.batch_size, 64))
    fitted = fit_on_images(
        model, split, contract, config, lr=lr, epochs=config.train.clean_epochs, augment=False,
        task="phase 3 (clean)", progress=progress, baseline=before,
    )
    after = validation_loss(model, split, contract, max(config.data.batch_size, 64))
    for layer, trainable in zip(bns, saved, strict=True):
        layer.trainable = trainable
    kept = after < before
    log.info(
        "phase 3: %d epochs without augmentation at %g, BatchNorm in inference mode; validation loss %.4f -> %.4f (%s)",
        config.train.clean_epochs, lr, before, min(fitted.get("val_loss", [before])), "kept" if kept else "not kept: phase 2's weights stay",
    )
    return fitted, {"epochs": config.train.clean_epochs, "lr": lr, "val_loss_before": before, "val_loss_after": after, "kept": kept}


def train_head_on_features(model, split: SplitData, contract: PreprocessContract, config: BuildConfig, progress: Progress) -> dict[str, list[float]]:
    """Phase 1 without augmentation: backbone features computed once, head trained on them."""
    from edgetl.ml._keras import keras

    k = keras()
    pool = model.get_layer("edgetl_pool")
    extractor = k.Model(model.input, pool.output)
    batch = config.data.batch_size
    progress("features", 0, 2, "computing backbone features once")
    train_features = predict_pixels(extractor, split.train.x, contract, max(batch, 64))
    progress("features", 1, 2, "")
    val_features = predict_pixels(extractor, split.val.x, contract, max(batch, 64))
    progress("features", 2, 2, "")

    feature_in = k.Input(shape=train_features.shape[1:], name="edgetl_features")
    head_out = model.get_layer("edgetl_logits")(model.get_layer("edgetl_dropout")(feature_in))
    head = k.Model(feature_in, head_out, name="edgetl_head")  # shares the head's layers
    _compile(head, config.train.head_lr)
    best = BestWeights()
    history = head.fit(
        train_features,
        split.train.y,
        validation_data=(val_features, split.val.y),
        epochs=config.train.head_epochs,
        batch_size=batch,
        shuffle=True,
        verbose=0,
        callbacks=[best, keras_callback(progress, "phase 1 (head, cached features)", config.train.head_epochs)],
    )
    return history.history


def train(
    config: BuildConfig,
    out_dir: Path,
    *,
    force: bool = False,
    progress: Progress = log_progress,
    run_fingerprint: str | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and write the run folder.

    Args:
        config: resolved configuration (``data.path`` required).
        out_dir: run folder to write.
        force: replace a folder that holds a different run.
        progress: callback for progress bars.
        run_fingerprint: identity of this run (the pipeline's stage fingerprint); default: the config's.

    Returns:
        The trained model with its metadata and validation accuracy.

    Raises:
        ConfigError: unknown backbone, bad size/alpha/weights or unfreeze options.
        DataError: an unusable image folder.
        OutputExistsError: ``out_dir`` holds something else and ``force`` is off.
    """
    with deterministic_ops(config.train.deterministic):
        return _train(config, out_dir, force=force, progress=progress, run_fingerprint=run_fingerprint)


def _train(config: BuildConfig, out_dir: Path, *, force: bool, progress: Progress, run_fingerprint: str | None) -> TrainResult:
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    spec, input_size, alpha = resolve_model_options(config)
    if run_fingerprint is None:
        from edgetl.core.fingerprint import stage_fingerprints

        run_fingerprint = stage_fingerprints(config)["train"]
    resolve_weights(spec, config.model.weights, alpha, input_size)
    split = load_split(config.data, input_size)
    set_seed(config.data.seed)
    timings: dict[str, float] = {}
    phase3: dict[str, Any] | None = None
    with distribution_strategy().scope():  # may fetch ImageNet weights: fail before writing anything
        model, contract = build_classifier(spec, len(split.class_names), input_size, alpha, config.model.weights, config.model.dropout)
    out_dir = _fs.prepare_output_dir(Path(out_dir), run_fingerprint, force=force, what="training run")
    scratch = from_scratch(config)
    if scratch:
        set_batchnorm_momentum(model, SCRATCH_BN_MOMENTUM)
        if config.train.patience < 6 or config.train.fine_tune_epochs < 20:
            log.warning(
                "training from scratch usually needs 10+ epochs before validation loss moves: with patience %d "
                "and %d fine-tune epochs it may stop early; the demo uses patience 8 and 35 epochs",
                config.train.patience, config.train.fine_tune_epochs,
            )
    history: dict[str, list[float]] = {}
    log.info(
        "training %s (%s weights, %d px) on %d images, validating on %d, %d classes",
        spec.name, config.model.weights, input_size, len(split.train.y), len(split.val.y), len(split.class_names),
    )

    # Phase 1: the head on a frozen backbone.
    freeze_backbone(model)
    start = time.perf_counter()
    if config.train.head_epochs > 0:
        if config.train.head_augment:
            fitted = fit_on_images(
                model, split, contract, config, lr=config.train.head_lr, epochs=config.train.head_epochs,
                augment=True, task="phase 1 (head)", progress=progress,
            )
            _merge_history(history, "head", fitted)
        else:
            _merge_history(history, "head", train_head_on_features(model, split, contract, config, progress))
        check_finite_weights(model, "phase 1 (head)", f"head_lr={config.train.head_lr:g}")
    timings["phase1_s"] = time.perf_counter() - start

    # Phase 2: unfreeze the top of the backbone at a lower learning rate.
    start = time.perf_counter()
    first = unfreeze_index(model, spec, config)
    trainable = unfreeze_top(model, first, keep_batchnorm_frozen=not scratch)
    log.info("phase 2 trains %d backbone layers from %s", len(trainable), backbone_layers(model)[first].name if trainable else "-")
    if config.train.fine_tune_epochs > 0:
        from edgetl.ml._keras import keras

        k = keras()
        lr, epochs, schedule = fine_tune_lr(config), config.train.fine_tune_epochs, config.train.schedule
        if schedule is LRSchedule.cosine:
            decay = k.callbacks.LearningRateScheduler(cosine_lr(lr, epochs))
        else:  # smaller steps once validation loss stalls, before early stopping gives up
            decay = k.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, config.train.patience // 2), min_lr=1e-6)
        log.info("phase 2: up to %d epochs, learning rate %g, %s schedule, early stopping after %d epochs without progress", epochs, lr, schedule, config.train.patience)
        fitted = fit_on_images(
            model, split, contract, config, lr=lr, epochs=epochs,
            augment=config.train.augment, task="phase 2 (fine-tune)", progress=progress,
            callbacks=[
                k.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.patience),
                decay,
                k.callbacks.TensorBoard(log_dir=str(out_dir / "logs"), write_graph=False, profile_batch=0),
            ],
        )
        _merge_history(history, "fine_tune", fitted)
        check_finite_weights(model, "phase 2 (fine-tune)", f"fine_tune_lr={fine_tune_lr(config):g}")
    if scratch:
        reestimate_batchnorm(model, split.train.x, contract, seed=config.data.seed)
    timings["phase2_s"] = time.perf_counter() - start

    # Phase 3: end on the images as they are, in the conditions QAT fine-tunes in.
    if config.train.clean_epochs > 0 and config.train.augment and config.train.fine_tune_epochs > 0:
        start = time.perf_counter()
        fitted, phase3 = finish_clean(model, split, contract, config, progress)
        _merge_history(history, "clean", fitted)
        check_finite_weights(model, "phase 3 (clean)", f"clean_lr={phase3['lr']:g}")
        timings["phase3_s"] = time.perf_counter() - start

    val_acc = accuracy(model, split.val, contract)
    log.info("validation top-1 (inference mode): %.4f", val_acc)
    result = TrainResult(out_dir, model, split.class_names, contract, history, val_acc, split, timings, phase3)
    write_run(result, spec, config, run_fingerprint, trainable)
    return result


def write_run(result: TrainResult, spec: BackboneSpec, config: BuildConfig, run_fingerprint: str, trainable: list[str]) -> None:
    """Write the run folder; ``edgetl.json`` goes last and marks it complete."""
    out = result.out_dir
    with _fs.atomic_path(out / MODEL_FILE) as tmp:
        result.model.save(tmp)
    write_labels(out / "labels.txt", result.class_names)
    _fs.write_json(out / "history.json", result.history)
    plot_history(result.history, out / "training_curves.png")
    _fs.write_json(
        out / _fs.MARKER,
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "keras-float",
            "fingerprint": run_fingerprint,
            "model_file": MODEL_FILE,
            "backbone": spec.name,
            "input_size": result.contract.input_size,
            "alpha": config.model.alpha if config.model.alpha is not None else spec.default_alpha,
            "weights": config.model.weights,
            "class_names": result.class_names,
            "preprocessing": result.contract.to_dict(),
            "val_accuracy": result.val_accuracy,
            "num_train": int(len(result.split.train.y)),
            "num_val": int(len(result.split.val.y)),
            "skipped_files": [str(s.path) for s in result.split.skipped],
            "phase2_trainable_layers": len(trainable),
            "timings_s": result.timings,
            "phase3": result.phase3,
            "deterministic": config.train.deterministic,
            "versions": package_versions(),
            "config": config.to_toml_dict(),
        },
    )


def plot_history(history: dict[str, list], path: Path) -> Path:
    """Loss and accuracy per epoch, phases marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if history.get(key):
                ax.plot(epochs, history[key], style, label=key)
        phases = history.get("phase", [])
        for phase, label in (("fine_tune", "fine-tune"), ("clean", "clean")):
            if phase in phases and phases.index(phase) > 0:
                ax.axvline(phases.index(phase) + 0.5, color="grey", linewidth=0.8)
                ax.text(phases.index(phase) + 0.6, ax.get_ylim()[1], label, va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with _fs.atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def load_float_model(run_dir: Path, *, trust_model: bool = False):
    """Load a run folder's float Keras model (through the safe loader: no code from the file runs
    unless ``trust_model``)."""
    from edgetl.ml.keras_safety import load_keras_model

    return load_keras_model(Path(run_dir) / MODEL_FILE, trust=trust_model)
