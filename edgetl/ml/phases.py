"""The training phases and their schedules, used by :func:`edgetl.ml.train.train` and by QAT:
which layers train in each phase (freeze, unfreeze the top blocks, BatchNorm handling), learning
rates (fine-tune rate, cosine schedule), the tf.data input pipeline with augmentation, fitting with
best-epoch weights (and class weights), phase 1 on cached backbone features and phase 3 on clean images.

Every fit ends with the weights of its best epoch (lowest validation loss): the history it returns
marks each epoch with ``phase_epoch`` (1-based within the fit), ``best`` (the epoch whose weights
the fit ended with) and ``discarded`` (an epoch after it, whose weights were thrown away; all of
them when no epoch beat the weights the fit started from). When early stopping ends a fit, an INFO
record on :data:`edgetl.ml.progress.notice` says so."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.core.progress import Progress
from edgetl.core.types import ClassWeights, Optimizer
from edgetl.data.split import ImageData, SplitData, balanced_class_weights
from edgetl.ml._keras import keras, tf
from edgetl.ml.backbones import block_starts
from edgetl.ml.backbones.spec import HEAD_LAYERS, BackboneSpec, is_head_layer
from edgetl.ml.checkpoints import RunCheckpoints
from edgetl.ml.model_io import predict_pixels
from edgetl.ml.progress import keras_callback, notice

log = logging.getLogger(__name__)


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


def is_batchnorm(layer) -> bool:
    return isinstance(layer, keras().layers.BatchNormalization)


def backbone_layers(model) -> list:
    return [layer for layer in model.layers if not is_head_layer(layer.name)]


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
    """Phase 1: only the head (with its hidden layers, if any) trains."""
    for layer in model.layers:
        layer.trainable = is_head_layer(layer.name)


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
    for layer in model.layers:
        if is_head_layer(layer.name):
            layer.trainable = True
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
    """Light augmentation on 0..255 pixels: flip, small rotation, zoom and contrast.

    Rotation (up to +-0.05 turn) and zoom (0.9-1.1x) are composed into one projective transform
    per image, so each image is resampled once (bilinear, reflected borders), not twice: half the
    cost of Keras's separate RandomRotation and RandomZoom layers, which is most of the input
    pipeline's work.
    """
    k = keras()
    t = tf()
    from tf_keras.src.engine.base_layer import BaseRandomLayer
    from tf_keras.src.layers.preprocessing import image_preprocessing as ip

    class RandomRotateZoom(BaseRandomLayer):
        def __init__(self, turn: float, zoom: float, **kwargs):
            super().__init__(**kwargs)
            self.turn, self.zoom = turn, zoom

        def call(self, inputs, training=True):
            if not training:
                return inputs
            shape = t.shape(inputs)
            batch, height, width = shape[0], t.cast(shape[1], t.float32), t.cast(shape[2], t.float32)
            angles = self._random_generator.random_uniform([batch], -self.turn * 2.0 * np.pi, self.turn * 2.0 * np.pi)
            zooms = self._random_generator.random_uniform([batch, 1], 1.0 - self.zoom, 1.0 + self.zoom)

            def square(m):  # 8 projective parameters (output point -> input point) as 3x3 matrices
                return t.reshape(t.concat([m, t.ones([batch, 1], t.float32)], axis=1), [-1, 3, 3])

            # rotating, then zooming the result, samples the input at R @ Z @ p
            combined = t.matmul(
                square(ip.get_rotation_matrix(angles, height, width)),
                square(ip.get_zoom_matrix(t.concat([zooms, zooms], axis=1), height, width)),
            )
            combined = combined / combined[:, 2:3, 2:3]
            transforms = t.reshape(combined, [-1, 9])[:, :8]
            out = ip.transform(inputs, transforms, fill_mode="reflect", interpolation="bilinear")
            out.set_shape(inputs.shape)
            return out

    return k.Sequential(
        [
            k.layers.RandomFlip("horizontal", seed=seed),
            RandomRotateZoom(0.05, 0.1, seed=seed + 1, name="random_rotate_zoom"),
            k.layers.RandomContrast(0.1, seed=seed + 3),
        ],
        name="edgetl_augment",
    )


#: In-memory pixel arrays above this many bytes are streamed like a memory map rather than embedded in
#: the tf.data graph (``from_tensor_slices`` copies the array into a graph constant, which fails over 2 GB).
STREAM_BYTES = 256 * 2**20


def make_dataset(images: ImageData, contract: PreprocessContract, batch_size: int, *, shuffle: bool, augment: bool, seed: int):
    """A tf.data pipeline: uint8 pixels -> (augmented) -> normalized float32, batched.

    Pixels in a memory map (the decode cache's, :mod:`edgetl.data.cache`) or over :data:`STREAM_BYTES`
    are streamed: batches of (shuffled) row indices, each gathered from the array in sorted order by
    parallel map calls, so only the batches in flight are in memory. Smaller in-memory arrays are
    sliced from a tensor. Both give the same batches when not shuffled.
    """
    t = tf()
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    aug = augmenter(seed) if augment else None
    x, y = images.x, np.asarray(images.y, dtype=np.int64)
    if isinstance(x, np.memmap) or x.nbytes > STREAM_BYTES:
        ds = t.data.Dataset.range(len(y))
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        row_shape = tuple(int(d) for d in x.shape[1:])

        def rows(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            order = np.sort(indices)  # sequential reads from the map; a batch's order within itself does not matter
            return np.ascontiguousarray(x[order]), y[order]

        def gather(indices):
            batch_x, batch_y = t.numpy_function(rows, [indices], (t.uint8, t.int64), stateful=False)
            batch_x.set_shape((None, *row_shape))
            batch_y.set_shape((None,))
            return batch_x, batch_y

        ds = ds.batch(batch_size).map(gather, num_parallel_calls=t.data.AUTOTUNE)
    else:
        ds = t.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)

    def prepare(x, y):
        x = t.cast(x, t.float32)
        if aug is not None:
            x = t.clip_by_value(aug(x, training=True), 0.0, 255.0)
        return (x - mean) / std, y

    return ds.map(prepare, num_parallel_calls=t.data.AUTOTUNE).prefetch(t.data.AUTOTUNE)


#: SGD's momentum when ``sgd`` is chosen (the transfer-learning tutorial's fine-tuning setting).
SGD_MOMENTUM = 0.9


def make_optimizer(name: Optimizer | str, lr: float):
    """The Keras optimizer ``name`` (:class:`edgetl.core.types.Optimizer`) at learning rate ``lr``."""
    k = keras()
    kind = Optimizer(name)
    if kind is Optimizer.rmsprop:
        return k.optimizers.RMSprop(lr)
    if kind is Optimizer.sgd:
        return k.optimizers.SGD(lr, momentum=SGD_MOMENTUM)
    return k.optimizers.Adam(lr)


def phase_optimizer(config: BuildConfig, task: str) -> Optimizer:
    """The configured optimizer for a fit named ``task``: ``train.head_optimizer`` in phase 1,
    ``train.fine_tune_optimizer`` in phases 2 and 3 (phase 3 continues phase 2 at a tenth of its
    rate), Adam for QAT (its learning rate, ``qat.lr``, is set for Adam)."""
    if task.startswith("phase 1"):
        return Optimizer(config.train.head_optimizer)
    if task.startswith(("phase 2", "phase 3")):
        return Optimizer(config.train.fine_tune_optimizer)
    return Optimizer.adam


def _compile(model, lr: float, optimizer: Optimizer | str = Optimizer.adam, *, jit: bool = False) -> None:
    """Compile for training; ``jit``: XLA-compiled steps (``train.jit``). Under a ``mixed_float16``
    policy Keras wraps the optimizer in a LossScaleOptimizer itself."""
    model.compile(
        optimizer=make_optimizer(optimizer, lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=bool(jit),
    )


def class_weights(config: BuildConfig, labels: np.ndarray, num_classes: int) -> dict[int, float] | None:
    """Keras ``class_weight`` for ``config.train.class_weights`` (None: every image counts the same)."""
    if ClassWeights(config.train.class_weights) is ClassWeights.none:
        return None
    return dict(enumerate(balanced_class_weights(labels, num_classes)))


def _merge_history(total: dict[str, list], phase: str, history: dict[str, list]) -> None:
    """Append one fit's epochs to ``total``, each marked with ``phase``; numbers as floats, flags as they are."""
    for key, values in history.items():
        total.setdefault(key, []).extend(v if isinstance(v, bool | int | str) else float(v) for v in values)
    total.setdefault("phase", []).extend([phase] * len(history.get("loss", next(iter(history.values()), []))))


def _mark_epochs(history: dict[str, list], best, epochs: int, task: str, monitor: str = "val_loss") -> dict[str, list]:
    """Add ``phase_epoch``, ``best`` and ``discarded`` to a fit's history and say how the fit ended.

    ``best``: the fit's :class:`BestWeights`, which left the model with its best epoch's weights, or
    with the incoming ones (no epoch beat its baseline), or with the last epoch's (no finite loss).
    """
    ran = len(history.get("loss", []))
    if best.weights is not None:
        best_epoch = best.best_epoch
    elif best.initial is not None:
        best_epoch = -1  # the incoming weights came back: every epoch was thrown away
    else:
        best_epoch = ran - 1  # nothing to restore: the last epoch's weights stay
    history["phase_epoch"] = list(range(1, ran + 1))
    history["best"] = [epoch == best_epoch for epoch in range(ran)]
    history["discarded"] = [epoch > best_epoch for epoch in range(ran)]
    kept = f"restored epoch {best_epoch + 1}" if best_epoch >= 0 else "kept the weights it started with"
    if 0 < ran < epochs:
        notice.info(
            "%s: early stopping after epoch %d of %d: %s did not improve for %d epochs; %s",
            task, ran, epochs, monitor, ran - 1 - best_epoch if best_epoch >= 0 else ran, kept,
        )
    elif ran and best_epoch != ran - 1:
        log.info("%s: ran %d epochs, lowest %s at %s; %s", task, ran, monitor, f"epoch {best_epoch + 1}" if best_epoch >= 0 else "none", kept)
    return history


class BestWeights:
    """Keep the weights of the epoch with the lowest validation loss (tf_keras' EarlyStopping
    restores them only when it actually stops early). With ``baseline`` (the loss before
    training), weights that never beat it are not kept: the model stays as it came in."""

    def __new__(cls, monitor: str = "val_loss", baseline: float = np.inf):
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


def fit_key(task: str) -> str:
    """The checkpoint name of a fit: ``"phase 2 (fine-tune)"`` -> ``"phase2"``, ``"QAT"`` -> ``"qat"``."""
    return task.split(" (")[0].replace(" ", "").lower()


def _resumed_history(state, fitted) -> dict[str, list[float]]:
    """One fit's history: the epochs of an earlier run (``state``) followed by this run's."""
    history = {k: list(v) for k, v in (state.history if state is not None else {}).items()}
    for key, values in fitted.history.items():
        history[key] = history.get(key, [])[: (state.epoch if state is not None else 0)] + [float(v) for v in values]
    return history


def fit_on_images(
    model, split: SplitData, contract: PreprocessContract, config: BuildConfig, *, lr: float, epochs: int,
    augment: bool, task: str, progress: Progress, callbacks: list | None = None, baseline: float = np.inf,
    checkpoints: RunCheckpoints | None = None,
) -> dict[str, list[float]]:
    """Compile and fit on the split's images, validating on its held-out part; keep the best epoch
    (or the incoming weights, if no epoch's validation loss beats ``baseline``). The optimizer is
    the one configured for ``task``'s phase (:func:`phase_optimizer`). With ``checkpoints``, every
    epoch is saved and a fit an earlier run began (or finished) resumes (or is skipped)."""
    checkpoints = checkpoints or RunCheckpoints.off()
    key = fit_key(task)
    done = checkpoints.finished(key, model)
    if done is not None:
        return done[0]
    _compile(model, lr, phase_optimizer(config, task), jit=config.train.jit)
    batch, seed = config.data.batch_size, config.data.seed
    best = BestWeights(baseline=baseline)
    others = list(callbacks or [])
    state = checkpoints.epoch_state(key)
    fitted = model.fit(
        make_dataset(split.train, contract, batch, shuffle=True, augment=augment, seed=seed),
        validation_data=make_dataset(split.val, contract, batch, shuffle=False, augment=False, seed=0),
        epochs=epochs,
        initial_epoch=state.epoch if state is not None else 0,
        verbose=0,
        class_weight=class_weights(config, split.train.y, len(split.class_names)),
        callbacks=[best, *others, checkpoints.callback(key, state, best, others), keras_callback(progress, task, epochs)],
    )
    history = _mark_epochs(_resumed_history(state, fitted), best, epochs, task)
    checkpoints.finish(key, model, history)
    return history


def validation_loss(model, split: SplitData, contract: PreprocessContract, batch_size: int) -> float:
    """Mean cross-entropy of ``model`` (inference mode) on the split's validation images."""
    probs = predict_pixels(model, split.val.x, contract, batch_size)
    return float(np.mean(keras().losses.sparse_categorical_crossentropy(split.val.y, probs)))


def finish_clean(
    model, split: SplitData, contract: PreprocessContract, config: BuildConfig, progress: Progress, checkpoints: RunCheckpoints | None = None,
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
        task="phase 3 (clean)", progress=progress, baseline=before, checkpoints=checkpoints,
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


def train_head_on_features(
    model, split: SplitData, contract: PreprocessContract, config: BuildConfig, progress: Progress, checkpoints: RunCheckpoints | None = None,
) -> dict[str, list[float]]:
    """Phase 1 without augmentation: backbone features computed once, head trained on them."""
    task = "phase 1 (head, cached features)"
    checkpoints = checkpoints or RunCheckpoints.off()
    done = checkpoints.finished(fit_key(task), model)
    if done is not None:
        return done[0]
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
    x = feature_in
    # The hidden layers (head_units) sit between the pooling and the dropout, in graph order.
    for layer in model.layers:
        if is_head_layer(layer.name) and layer.name not in HEAD_LAYERS:
            x = layer(x)
    head_out = model.get_layer("edgetl_logits")(model.get_layer("edgetl_dropout")(x))
    head = k.Model(feature_in, head_out, name="edgetl_head")  # shares the head's layers
    _compile(head, config.train.head_lr, phase_optimizer(config, task), jit=config.train.jit)
    best = BestWeights()
    state = checkpoints.epoch_state(fit_key(task))
    history = head.fit(
        train_features,
        split.train.y,
        validation_data=(val_features, split.val.y),
        epochs=config.train.head_epochs,
        initial_epoch=state.epoch if state is not None else 0,
        batch_size=batch,
        shuffle=True,
        verbose=0,
        class_weight=class_weights(config, split.train.y, len(split.class_names)),
        callbacks=[best, checkpoints.callback(fit_key(task), state, best, []), keras_callback(progress, task, config.train.head_epochs)],
    )
    fitted = _mark_epochs(_resumed_history(state, history), best, config.train.head_epochs, task)
    checkpoints.finish(fit_key(task), model, fitted)  # the whole model's weights: the head's layers are the model's
    return fitted
