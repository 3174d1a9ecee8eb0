"""The training side of ``edgetl experiment``: one image folder, one fixed validation set, and the
methods the transfer-learning FAQ compares, each trained on a balanced subset of the training pool.

=====================  ========================================================================
method                 what trains
=====================  ========================================================================
``scratch``            the whole network from random weights (``weights="none"``)
``features``           only the head, on backbone features cached once (phase 1 alone)
``fine_tune``          edgetl's recipe: phase 1 on the cached features, then phases 2-3
                       (:func:`edgetl.ml.train.fit_transfer` with ``head_epochs=0``)
``l2sp``               as ``fine_tune`` with the ``[train] l2sp`` penalty set
``first_layers``       phase 1 as above, then the FIRST N backbone layers (from the input)
                       train: the tutorial's ``model.layers[:N]``, for contrast with the top
=====================  ========================================================================

Why a cache: with the backbone frozen, its pooled features of an image never change, so they are
computed once per backbone + weights + input size (:class:`TransferLab` keeps them in memory, and
in a ``.npy`` file when given one) and every subset, seed and method reuses them. Only the
methods that change the backbone (scratch, and phase 2 of fine-tuning) run it on images again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig, TrainConfig
from edgetl.core.errors import ConfigError, DataError
from edgetl.core.fingerprint import file_sha256
from edgetl.core.progress import Progress, log_progress
from edgetl.data.split import ImageData, SplitData, balanced_accuracy, check_class_counts, load_split
from edgetl.ml._keras import keras
from edgetl.ml.backbones import block_starts, build_classifier, resolve_weights
from edgetl.ml.backbones.spec import is_head_layer
from edgetl.ml.model_io import predict_pixels
from edgetl.ml.phases import (
    BestWeights,
    backbone_layers,
    class_weights,
    fine_tune_lr,
    finish_clean,
    fit_on_images,
    is_batchnorm,
    reestimate_batchnorm,
)
from edgetl.ml.progress import keras_callback
from edgetl.ml.train import fit_transfer, resolve_model_options, set_seed

log = logging.getLogger(__name__)

#: The methods :meth:`TransferLab.run` knows.
METHODS = ("scratch", "features", "fine_tune", "l2sp", "first_layers")


def l2sp_supported() -> bool:
    """Whether this edgetl's ``[train]`` section has the ``l2sp`` setting (L2-SP fine-tuning)."""
    return "l2sp" in TrainConfig.model_fields


def with_train(config: BuildConfig, **changes: Any) -> BuildConfig:
    """A copy of ``config`` with ``[train]`` keys changed, validated as a user's would be."""
    data = config.model_dump(mode="json")
    data["train"].update(changes)
    return BuildConfig.model_validate(data)


@dataclass
class RunResult:
    """One trained and measured model: validation top-1 and balanced accuracy, wall seconds,
    and how many backbone layers trained (0: the backbone stayed frozen)."""

    top1: float
    balanced_accuracy: float
    seconds: float
    trainable_layers: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def nested_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of every class (all of them when None or fewer exist).

    Each class's images are shuffled with ``(seed, class)`` and the first ``per_class`` taken, so
    for one seed the 5-image subset lies inside the 10-image one: a larger size adds images and
    never swaps the ones a smaller size had.
    """
    labels = np.asarray(labels, dtype=np.int64)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([int(seed), int(label)]).permutation(members)
        chosen.append(order if per_class is None else order[:per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


class TransferLab:
    """The data, the backbone's cached features and the training of one experiment's runs.

    Args:
        config: resolved configuration: ``data.path`` (and ``val_path``), the model, the training recipe.
        progress: progress callback (feature computation, each fit's epochs).
        cache_dir: folder for the feature cache file (None: memory only).

    Raises:
        ConfigError: bad model options or weights; ``weights="none"`` (no pretrained features to transfer).
        DataError: an unusable folder, a class under ``data.min_images`` or without validation images.
    """

    def __init__(
        self, config: BuildConfig, *, progress: Progress = log_progress, cache_dir: Path | None = None, allow_random_weights: bool = False,
    ) -> None:
        if config.data.path is None:
            raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
        # `edgetl select` probes a backbone without pretrained weights too (and says so): its ranking still needs a figure
        if config.model.weights.lower() == "none" and not allow_random_weights:
            raise ConfigError(
                "--weights none leaves nothing to transfer (every method would train from scratch); pass --weights imagenet "
                "or --weights PATH (an .h5 file of this backbone's pretrained weights)"
            )
        self.config = config
        self.progress = progress
        self.spec, self.input_size, self.alpha = resolve_model_options(config)
        self.weights = resolve_weights(self.spec, config.model.weights, self.alpha, self.input_size)
        self.split = load_split(config.data, self.input_size, channels=config.model.channels)
        check_class_counts(self.split, config.data)
        self.class_names = self.split.class_names
        model, self.contract = self._build(config.model.weights, seed=config.data.seed)
        self.layer_names = [layer.name for layer in backbone_layers(model)]
        self.blocks = block_starts(self.spec, self.layer_names)
        self._reference, self._cache_dir = model, cache_dir
        self._cached: tuple[np.ndarray, np.ndarray] | None = None

    def compute_features(self) -> None:
        """Compute (or read from the cache file) the backbone features of every image, once.

        Separate from construction so that cheap checks on the lab (depths, subset sizes) can
        refuse bad input before this, the first costly step, starts its progress bar."""
        if self._cached is None:
            self._cached = self._features(self._reference, self._cache_dir)
            self._reference = None

    @property
    def pool_features(self) -> np.ndarray:
        self.compute_features()
        return self._cached[0]  # type: ignore[index]

    @property
    def val_features(self) -> np.ndarray:
        self.compute_features()
        return self._cached[1]  # type: ignore[index]

    # -- building and features -------------------------------------------------------------

    def _build(self, weights: str, *, seed: int):
        keras().backend.clear_session()  # one experiment builds dozens of models: free the old graphs
        set_seed(seed)
        return build_classifier(
            self.spec, len(self.class_names), self.input_size, self.alpha, weights, self.config.model.dropout, channels=self.config.model.channels
        )

    def feature_key(self) -> str:
        """What the cached features depend on: backbone, weights (a file by its bytes), input size,
        alpha, channels and the images (by path, in order)."""
        weights = self.config.model.weights
        identity = {
            "backbone": self.spec.name, "alpha": self.alpha, "input_size": self.input_size, "channels": self.config.model.channels,
            "weights": file_sha256(Path(self.weights)) if self.weights not in (None, "imagenet") else weights.lower(),
            "train": [str(p) for p in self.split.train.paths], "val": [str(p) for p in self.split.val.paths],
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _features(self, model, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        n_pool, n_val = len(self.split.train.y), len(self.split.val.y)
        cache = Path(cache_dir) / f"features-{self.feature_key()}.npy" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                # allow_pickle=False: a plain array or nothing; the file may have been edited by anyone
                cached = np.load(cache, allow_pickle=False)
                if cached.ndim == 2 and cached.shape[0] == n_pool + n_val and cached.dtype == np.float32 and np.isfinite(cached).all():
                    log.info("backbone features of %d images read from %s", len(cached), cache)
                    self.progress("features", 1, 1, "from the cache")
                    return cached[:n_pool], cached[n_pool:]
            except (OSError, ValueError):
                pass
            log.warning("ignoring the unreadable or mismatched feature cache %s; computing the features again", cache)
        extractor = keras().Model(model.input, model.get_layer("edgetl_pool").output)
        self.progress("features", 0, 2, "computing backbone features once")
        pool = predict_pixels(extractor, self.split.train.x, self.contract, 64).astype(np.float32)
        self.progress("features", 1, 2, "")
        val = predict_pixels(extractor, self.split.val.x, self.contract, 64).astype(np.float32)
        self.progress("features", 2, 2, "")
        if cache is not None:
            with _fs.atomic_path(cache) as tmp, tmp.open("wb") as handle:
                np.save(handle, np.concatenate([pool, val]), allow_pickle=False)
        return pool, val

    # -- depth --------------------------------------------------------------------------------

    def layers_unfrozen(self, depth: int | str) -> int:
        """Backbone layers from the top that ``unfreeze_blocks=depth`` trains (``"all"``: every layer).

        Raises:
            ConfigError: a depth beyond the backbone's blocks, or a backbone without named blocks.
        """
        if depth == "all":
            return len(self.layer_names)
        if not self.blocks:
            raise ConfigError(f"{self.spec.name} has no named blocks to count unfreeze depths in; use a registered backbone")
        if not isinstance(depth, int) or depth < 0 or depth > len(self.blocks):
            raise ConfigError(
                f"--depths {depth} is beyond {self.spec.name}, which has {len(self.blocks)} blocks; "
                f"pass depths from 0 to {len(self.blocks)}, or 'all'"
            )
        if depth == 0:
            return 0
        return len(self.layer_names) - self.layer_names.index(self.blocks[-depth][1])

    # -- runs -----------------------------------------------------------------------------------

    def subset(self, indices: np.ndarray) -> SplitData:
        train = self.split.train
        return SplitData(
            train=ImageData(train.x[indices], train.y[indices], [train.paths[i] for i in indices]),
            val=self.split.val, class_names=self.class_names, skipped=[],
        )

    def run(
        self, method: str, indices: np.ndarray, seed: int, *, depth: int | str | None = None, first_layers: int | None = None,
        config: BuildConfig | None = None,
    ) -> RunResult:
        """Train ``method`` on the pool images at ``indices`` and measure it on the validation set.

        Args:
            method: one of :data:`METHODS`.
            indices: rows of the training pool to train on.
            seed: initialisation, shuffling and dropout seed of this run.
            depth: ``fine_tune`` only: blocks unfrozen from the top (``"all"``: every layer;
                None: the recipe's default).
            first_layers: ``first_layers`` only: how many backbone layers, from the input, train.
            config: this run's configuration (default: the lab's); ``scratch`` uses its own epochs.
        """
        if method not in METHODS:
            raise ConfigError(f"unknown experiment method {method!r}; known: {', '.join(METHODS)}")
        self.compute_features()  # before any other model is built (each build clears the Keras session)
        cfg = config or self.config
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"seed": int(seed)})})
        start = time.perf_counter()
        if method == "features":
            predicted, trainable = self._features_only(indices, cfg), 0
        else:
            predicted, trainable = self._train_model(method, indices, cfg, depth=depth, first_layers=first_layers)
        seconds = time.perf_counter() - start
        y = self.split.val.y
        return RunResult(float(np.mean(predicted == y)), balanced_accuracy(y, predicted), seconds, trainable)

    def linear_probe(self, seed: int | None = None) -> tuple[Any, RunResult]:
        """The ``features`` method on the whole training pool, kept as one classifier: the frozen
        backbone that computed the cached features with the head trained on them (phase 1 alone),
        ready to export (``edgetl select``).

        Call it before any other run: the backbone is the one built when the lab was made.

        Returns:
            The Keras classifier and its :class:`RunResult` on the validation set.
        """
        model = self._reference
        if model is None:
            raise RuntimeError("linear_probe() needs the lab's own backbone: call it before the lab runs anything else")
        cfg = self.config if seed is None else self.config.model_copy(update={"data": self.config.data.model_copy(update={"seed": int(seed)})})
        if self.weights is None and self._cached is None:
            # random weights: BatchNorm's initial statistics (mean 0, variance 1) make near-constant features in
            # inference mode; estimate them on the training images first, as training with weights=none does
            reestimate_batchnorm(model, self.split.train.x, self.contract, seed=cfg.data.seed)
        self.compute_features()
        start = time.perf_counter()
        set_seed(cfg.data.seed)
        indices = np.arange(len(self.split.train.y))
        head = self._fit_head(model.get_layer("edgetl_dropout"), model.get_layer("edgetl_logits"), indices, cfg)
        predicted = np.argmax(head.predict(self.val_features, batch_size=256, verbose=0), axis=1)
        y = self.split.val.y
        return model, RunResult(float(np.mean(predicted == y)), balanced_accuracy(y, predicted), time.perf_counter() - start, 0)

    def _fit_head(self, dropout, dense, indices: np.ndarray, cfg: BuildConfig) -> Any:
        """Phase 1 on cached features: ``dense(dropout(features))`` trained, best epoch kept."""
        k = keras()
        features, labels = self.pool_features[indices], self.split.train.y[indices]
        feature_in = k.Input(shape=features.shape[1:], name="edgetl_features")
        head = k.Model(feature_in, dense(dropout(feature_in)), name="edgetl_head")
        head.compile(optimizer=k.optimizers.Adam(cfg.train.head_lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        epochs = cfg.train.head_epochs
        head.fit(
            features, labels, validation_data=(self.val_features, self.split.val.y), epochs=epochs,
            batch_size=cfg.data.batch_size, shuffle=True, verbose=0,
            class_weight=class_weights(cfg, labels, len(self.class_names)),
            callbacks=[BestWeights(), keras_callback(self.progress, "phase 1 (head, cached features)", epochs)],
        )
        return head

    def _features_only(self, indices: np.ndarray, cfg: BuildConfig) -> np.ndarray:
        k = keras()
        k.backend.clear_session()
        set_seed(cfg.data.seed)
        dropout = k.layers.Dropout(cfg.model.dropout, name="edgetl_dropout")
        dense = k.layers.Dense(len(self.class_names), activation="softmax", name="edgetl_logits")
        head = self._fit_head(dropout, dense, indices, cfg)
        return np.argmax(head.predict(self.val_features, batch_size=256, verbose=0), axis=1)

    def _train_model(
        self, method: str, indices: np.ndarray, cfg: BuildConfig, *, depth: int | str | None, first_layers: int | None
    ) -> tuple[np.ndarray, int]:
        split = self.subset(indices)
        if method == "scratch":
            cfg = with_train(cfg, unfreeze=None, unfreeze_from=None, unfreeze_blocks=None)  # from scratch everything trains
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": "none"})})
            model, contract = self._build("none", seed=cfg.data.seed)
            fitted = fit_transfer(model, contract, self.spec, split, cfg, progress=self.progress)
            return self._predict(model), len(fitted.trainable)
        model, contract = self._build(cfg.model.weights, seed=cfg.data.seed)
        if cfg.train.head_epochs > 0:  # phase 1 from the cache: the model's own head layers train
            self._fit_head(model.get_layer("edgetl_dropout"), model.get_layer("edgetl_logits"), indices, cfg)
        if method == "first_layers":
            trainable = self._fine_tune_first(model, contract, split, cfg, first_layers or 0)
            return self._predict(model), trainable
        changes: dict[str, Any] = {"head_epochs": 0}  # phase 1 ran above, on the cache
        if depth is not None:  # the experiment's depth replaces the recipe's (None: the configured one stays)
            changes.update(unfreeze=None, unfreeze_from=None, unfreeze_blocks=None)
            changes["unfreeze" if depth == "all" else "unfreeze_blocks"] = len(self.layer_names) if depth == "all" else int(depth)
        fitted = fit_transfer(model, contract, self.spec, split, with_train(cfg, **changes), progress=self.progress)
        return self._predict(model), len(fitted.trainable)

    def _fine_tune_first(self, model, contract, split: SplitData, cfg: BuildConfig, count: int) -> int:
        """Phase 2 with the first ``count`` backbone layers trainable (BatchNorm kept frozen, as
        edgetl's recipe does for pretrained weights, so only WHICH end trains differs), then phase 3."""
        layers = backbone_layers(model)
        for layer in model.layers:
            layer.trainable = False
        trainable = []
        for layer in layers[:count]:
            layer.trainable = not is_batchnorm(layer)
            if layer.trainable and layer.weights:
                trainable.append(layer.name)
        for layer in model.layers:  # the head, hidden layers (head_units) included
            if is_head_layer(layer.name):
                layer.trainable = True
        if cfg.train.fine_tune_epochs > 0:
            k = keras()
            fit_on_images(
                model, split, contract, cfg, lr=fine_tune_lr(cfg), epochs=cfg.train.fine_tune_epochs, augment=cfg.train.augment,
                task="phase 2 (first layers)", progress=self.progress,
                callbacks=[k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.train.patience)],
            )
            if cfg.train.clean_epochs > 0 and cfg.train.augment:
                finish_clean(model, split, contract, cfg, self.progress)
        return len(trainable)

    def _predict(self, model) -> np.ndarray:
        return np.argmax(predict_pixels(model, self.split.val.x, self.contract), axis=1)


def check_subset_sizes(lab: TransferLab, sizes: list[int | None]) -> None:
    """Refuse a per-class size that no class can fill only when it exceeds every class (a typo);
    a size above the smallest class is allowed (that class then gives all its images)."""
    counts = np.bincount(lab.split.train.y, minlength=len(lab.class_names))
    largest = int(counts.max()) if counts.size else 0
    for size in sizes:
        if size is not None and size > largest:
            raise DataError(
                f"--per-class {size} is more than any class has in the training pool (largest {largest} images); "
                f"use sizes up to {largest}, or 'all'"
            )

