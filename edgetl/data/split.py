"""Decoded image sets: the stratified train/validation split of a data folder, and a whole folder for evaluation.

:func:`load_split` loads training and validation images (a separate ``val_path`` folder, or a
seeded, stratified :func:`split_indices` of one folder); :func:`load_eval_set` loads a folder whose
classes must be among a model's. Both decode each image once, through :mod:`edgetl.data.folder`;
:func:`load_split` keeps the pixels in the decode cache (:mod:`edgetl.data.cache`, unless
``data.decode_cache`` is off), so a second load maps them from disk instead of decoding again.

Class balance, for training: :func:`check_class_counts` refuses a split a classifier cannot learn
from (a class under ``data.min_images``, a class with no validation images), :func:`imbalance`
measures it, :func:`balanced_class_weights` gives inverse-frequency loss weights and
:func:`balanced_accuracy` the mean per-class recall.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetl.core.errors import ConfigError, DataError
from edgetl.data.cache import CachedFolder, decoded_dir, load_folder, subset_entry
from edgetl.data.folder import STRICT_MAX_IMBALANCE, FolderScan, class_dirs, scan_and_load
from edgetl.data.images import Size, SkippedFile, check_input_size, image_pixel_limit

if TYPE_CHECKING:
    from edgetl.core.config import DataConfig

logger = logging.getLogger(__name__)

#: Largest/smallest class ratio over which training warns that the classes are extremely imbalanced
#: (the ratio ``edgetl data check --strict`` fails on).
EXTREME_IMBALANCE = STRICT_MAX_IMBALANCE
#: Largest/smallest class ratio over which the classes count as imbalanced: balanced accuracy is
#: shown next to top-1 (it is always recorded).
IMBALANCE_SHOWN = 1.5


@dataclass
class ImageData:
    """Decoded images and their labels.

    Attributes:
        x: uint8 pixels, shape ``(N, height, width, channels)``, RGB or grayscale; from
            :func:`load_split`, a read-only ``np.memmap`` of the decode cache.
        y: int64 class indices, shape ``(N,)``.
        paths: the file each row came from.
    """

    x: np.ndarray
    y: np.ndarray
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class SplitData:
    """Training and validation images of one data folder (or of a folder and its ``val_path``)."""

    train: ImageData
    val: ImageData
    class_names: list[str]
    skipped: list[SkippedFile]


def split_indices(labels: np.ndarray | Sequence[int], val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split of sample indices, the same for the same seed.

    Each class with ``n >= 2`` images gives ``round(n * val_split)`` of them to validation, at least 1 and
    at most ``n - 1``; a class with a single image goes to training only.

    Args:
        labels: class index of each sample.
        val_split: fraction in (0, 1) held out for validation.
        seed: random seed.

    Returns:
        ``(train_indices, val_indices)``, int64, each sorted ascending.

    Raises:
        ConfigError: ``val_split`` is not in (0, 1).
        DataError: no labels, or no class has 2 images so validation would be empty.
    """
    if not 0.0 < float(val_split) < 1.0:
        raise ConfigError(f"val_split={val_split!r} must be between 0 and 1 (exclusive), e.g. 0.2")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise DataError("no images to split; add images to the class folders")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = members.size
        n_val = 0 if n < 2 else min(max(int(np.floor(n * val_split + 0.5)), 1), n - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    if val_idx.size == 0:
        raise DataError(
            "every class has a single image, so the validation split would be empty; "
            "add images or give a separate validation folder (data.val_path)"
        )
    return np.sort(np.concatenate(train)).astype(np.int64), val_idx


def _load_folder(
    root: Path,
    data: DataConfig,
    class_names: list[str] | None,
    input_size: Size,
    resize: str,
    channels: int,
    loads: list[CachedFolder] | None,
) -> tuple[FolderScan, np.ndarray]:
    """Scan and decode one folder: through the decode cache (recorded in ``loads``), or, with ``loads``
    None (``data.decode_cache`` off), into memory."""
    if loads is None:
        scan, x = scan_and_load(
            root, strict=data.strict, class_names=class_names, verify=True, input_size=input_size, resize=resize, channels=channels
        )
        return scan, x  # type: ignore[return-value]
    load = load_folder(root, strict=data.strict, class_names=class_names, input_size=input_size, resize=resize, channels=channels)
    loads.append(load)
    return load.scan, load.x


def load_split(data: DataConfig, input_size: Size, *, resize: str = "bilinear", channels: int = 3) -> SplitData:
    """Load a data folder as training and validation images (see :func:`_load_split`), decoding
    with ``data.max_image_pixels`` as the pixel limit when it is set."""
    with image_pixel_limit(getattr(data, "max_image_pixels", None)):
        return _load_split(data, input_size, resize=resize, channels=channels)


def _load_split(data: DataConfig, input_size: Size, *, resize: str = "bilinear", channels: int = 3) -> SplitData:
    """Load a data folder as training and validation images.

    Args:
        data: the :class:`~edgetl.core.config.DataConfig`; uses ``path``, ``val_path``, ``val_split``, ``seed``
            and ``strict``. With ``val_path`` set, that folder is the validation set and must have the
            same class folders as ``path``; otherwise ``val_split`` of each class is held out.
        input_size: side (square) or ``(height, width)`` images are resized to.
        resize: filter name, one of :data:`RESAMPLING`.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        The :class:`SplitData`; ``skipped`` lists the files of both folders that were not used.

    Raises:
        DataError: no ``path``; any problem :func:`~edgetl.data.folder.scan_folder` raises for; ``val_path`` classes differ.
        ConfigError: bad ``input_size``, ``resize`` or ``val_split``.
    """
    if data.path is None:
        raise DataError("no data folder given; set data.path (or pass the folder on the command line)")
    check_input_size(input_size, channels)
    root = Path(data.path)
    loads: list[CachedFolder] | None = [] if getattr(data, "decode_cache", True) else None
    if data.val_path is not None:
        val_root = Path(data.val_path)
        train_classes = [d.name for d in class_dirs(root)]
        val_classes = [d.name for d in class_dirs(val_root)]
        if train_classes != val_classes:
            missing = sorted(set(train_classes) - set(val_classes))
            extra = sorted(set(val_classes) - set(train_classes))
            raise DataError(
                f"validation folder {val_root} has different classes from {root} "
                f"(missing: {missing}, extra: {extra}); give both folders the same class subfolders"
            )
        train_scan, train_x = _load_folder(root, data, None, input_size, resize, channels, loads)
        val_scan, val_x = _load_folder(val_root, data, train_scan.class_names, input_size, resize, channels, loads)
        split = SplitData(
            train=ImageData(train_x, train_scan.labels, train_scan.paths),
            val=ImageData(val_x, val_scan.labels, val_scan.paths),
            class_names=train_scan.class_names,
            skipped=train_scan.skipped + val_scan.skipped,
        )
    else:
        scan, x = _load_folder(root, data, None, input_size, resize, channels, loads)
        train_idx, val_idx = split_indices(scan.labels, data.val_split, data.seed)
        if loads and isinstance(x, np.memmap):  # each part its own memory map, not an in-memory copy
            train_x, val_x = subset_entry(loads[0].key, x, [train_idx, val_idx])
        else:
            train_x, val_x = x[train_idx], x[val_idx]
        split = SplitData(
            train=ImageData(train_x, scan.labels[train_idx], [scan.paths[i] for i in train_idx]),
            val=ImageData(val_x, scan.labels[val_idx], [scan.paths[i] for i in val_idx]),
            class_names=scan.class_names,
            skipped=scan.skipped,
        )
    if loads:
        decoded = sum(load.decoded for load in loads)
        logger.info(
            "decode cache %s: %d image file(s) decoded, %d image(s) in use from %s",
            "hit" if all(load.hit for load in loads) else ("miss" if not any(load.hit for load in loads) else "partly hit"),
            decoded,
            sum(len(load.scan.paths) for load in loads),
            decoded_dir(),
        )
    logger.info(
        "loaded %d training and %d validation images of %d classes from %s",
        len(split.train),
        len(split.val),
        len(split.class_names),
        root,
    )
    return split


def load_eval_set(
    root: str | Path,
    input_size: Size,
    class_names: list[str] | None = None,
    strict: bool = False,
    *,
    resize: str = "bilinear",
    channels: int = 3,
) -> tuple[ImageData, list[SkippedFile]]:
    """Load a whole folder for evaluation.

    Args:
        root: folder with one subfolder per class.
        input_size: side (square) or ``(height, width)`` images are resized to.
        class_names: the model's classes; the folder's classes must be a subset and labels index into
            this list. None: the folder's own (sorted) classes, at least 2.
        strict: raise on any unreadable image file instead of skipping it.
        resize: filter name, one of :data:`RESAMPLING`.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        ``(images, skipped_files)``.

    Raises:
        DataError: any problem :func:`~edgetl.data.folder.scan_folder` raises for, including a class folder not in ``class_names``.
        ConfigError: bad ``input_size`` or ``resize``.
    """
    check_input_size(input_size, channels)
    scan, x = scan_and_load(root, strict=strict, class_names=class_names, verify=True, input_size=input_size, resize=resize, channels=channels)
    return ImageData(x=x, y=scan.labels, paths=scan.paths), scan.skipped  # type: ignore[arg-type]


def class_counts(labels: np.ndarray | Sequence[int], num_classes: int) -> list[int]:
    """Images per class index (``num_classes`` entries, zeros included)."""
    return [int(c) for c in np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]]


def imbalance(counts: Sequence[int]) -> float:
    """Largest count divided by the smallest (``inf`` when one is 0, 1.0 with no counts)."""
    if not counts:
        return 1.0
    return float("inf") if min(counts) == 0 else max(counts) / min(counts)


def check_class_counts(split: SplitData, data: DataConfig) -> None:
    """Refuse a split no classifier should be trained on, with one line naming the class.

    A class needs ``data.min_images`` images (training and validation together) - a data folder one
    level too high (its subfolders are not the classes) shows up here - and at least one image on
    each side of the split.

    Raises:
        DataError: a class under ``data.min_images``, or a class with no training or no validation images.
    """
    names = split.class_names
    train = class_counts(split.train.y, len(names))
    val = class_counts(split.val.y, len(names))
    total = [a + b for a, b in zip(train, val, strict=True)]
    minimum = int(data.min_images)
    small = sorted((count, name) for name, count in zip(names, total, strict=True) if count < minimum)
    if small:
        (count, name), others = small[0], small[1:]
        also = f" (also under it: {', '.join(f'{n!r} {c}' for c, n in others[:5])}{', ...' if len(others) > 5 else ''})" if others else ""
        raise DataError(
            f"class {name!r} has {count} image{'' if count == 1 else 's'}, under the minimum of {minimum} per class "
            f"that training requires{also}; check that {data.path} is the folder whose subfolders are the classes, "
            f"add images, or lower the minimum with min_images={max(count, 1)} ([data] min_images in TOML)"
        )
    for side, counts, fix in (
        ("validation", val, "give a validation folder (--val DIR) or add images, at least 2 per class"),
        ("training", train, "add images to its training folder"),
    ):
        empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
        if empty:
            index = names.index(empty[0])
            raise DataError(
                f"class {empty[0]!r} has no {side} images ({total[index]} image{'' if total[index] == 1 else 's'} in all"
                f"{', all on the other side of the split' if total[index] else ''})"
                f"{f', and {len(empty) - 1} more class(es) likewise' if len(empty) > 1 else ''}: "
                f"its {side} accuracy and loss cannot be measured; {fix}"
            )


def balanced_class_weights(labels: np.ndarray | Sequence[int], num_classes: int) -> list[float]:
    """Inverse-frequency loss weights, ``n_images / (n_classes * n_images_of_class)`` (scikit-learn's
    ``"balanced"``; ``n_classes`` counts the classes present): every class then weighs as much in the
    loss in total, and a perfectly balanced set gets 1.0 everywhere. A class absent from ``labels`` gets 1.0.
    """
    counts = np.asarray(class_counts(labels, num_classes), dtype=np.float64)
    present = counts > 0
    weights = np.ones(num_classes, dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return [float(w) for w in weights]


def balanced_accuracy(labels: np.ndarray | Sequence[int], predicted: np.ndarray | Sequence[int]) -> float:
    """Mean per-class recall over the classes present in ``labels`` (NaN with no labels): a model
    that always answers the largest class scores 1 / n_classes, whatever the class sizes."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if labels.size == 0:
        return float("nan")
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))
