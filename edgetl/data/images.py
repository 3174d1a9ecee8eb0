"""Image folders -> uint8 arrays: scanning, decoding to RGB, resizing and the train/validation split.

A data folder holds one subfolder per class (sorted by name; hidden ones, starting with ``.``, are ignored);
images are found recursively inside each class folder, and files at the top level are ignored.

This module needs Pillow and numpy only, never TensorFlow: a device install (``edgetl[runtime]``) uses
:func:`read_rgb` and :func:`load_images` to feed an exported model exactly what it saw in training.

Decoding choices, part of the preprocessing contract (every path goes through :func:`to_rgb`):

* Transparent images (RGBA, LA, PA, P or L or RGB with a ``transparency`` key) are composited onto
  white (:data:`ALPHA_BACKGROUND`), as a browser or image viewer shows them on a page.
* 16-bit images (``I;16``, ``I;16B``, ``I;16L``, and ``I``, which is how Pillow returns 16-bit PNG and
  TIFF samples) are scaled to 8 bits by ``round(v / 257)``, so 65535 maps to 255 instead of being clipped.
* Float images (``F``) in 0..1 are scaled by 255; any other float range is clipped to 0..255.
* EXIF orientation is applied, so a phone photo is used the way up a person sees it.
* Animated images (GIF, WebP, APNG) contribute their first frame.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edgetl.core.errors import ConfigError, DataError
from edgetl.core.text import CLASS_NAME_RULE, class_name_problem, shown

if TYPE_CHECKING:
    from edgetl.core.config import DataConfig

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: set[str] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""Colour transparent pixels are composited onto."""

RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

_MAX_LISTED = 3  # paths quoted in one-line messages; the rest are counted
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


@dataclass
class SkippedFile:
    """A file inside a class folder that was not used.

    Attributes:
        path: the file.
        reason: one short phrase, e.g. ``"truncated image"``, ``"not an image"``.
    """

    path: Path
    reason: str


@dataclass
class FolderScan:
    """What a data folder holds: its classes, readable images and the files that were skipped.

    Attributes:
        root: the scanned folder.
        class_names: class names; ``labels`` index into this list.
        paths: readable images, class by class, each class's files in sorted path order.
        labels: int64 class index of each path.
        skipped: files that were not used and why.
        sizes: how many readable images have each ``(width, height)``.
        modes: how many readable images have each Pillow mode (``"RGB"``, ``"L"``, ...).
        counts: readable images per class name (every name in ``class_names``, possibly 0).
    """

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped: list[SkippedFile] = field(default_factory=list)
    sizes: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    modes: collections.Counter[str] = field(default_factory=collections.Counter)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def imbalance(self) -> float:
        """Largest class count divided by the smallest (``inf`` when a class is empty, 1.0 with no classes)."""
        values = list(self.counts.values())
        if not values:
            return 1.0
        if min(values) == 0:
            return float("inf")
        return max(values) / min(values)

    @property
    def empty_classes(self) -> list[str]:
        """Class names with no readable image."""
        return [name for name, count in self.counts.items() if count == 0]

    def problems(self) -> list[str]:
        """One line per thing that would stop or weaken training (empty for a usable folder)."""
        found = []
        for name in self.empty_classes:
            found.append(f"class '{name}' has no readable images ({self.root / name})")
        if len(self.class_names) < 2:
            found.append(f"{len(self.class_names)} class(es) found; a classifier needs at least 2")
        if self.skipped:
            found.append(f"{len(self.skipped)} file(s) skipped: {_describe(self.skipped)}")
        return found


@dataclass
class ImageData:
    """Decoded images and their labels.

    Attributes:
        x: uint8 pixels, shape ``(N, input_size, input_size, 3)``, RGB.
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


# --------------------------------------------------------------------------------------------- decoding


#: Environment variable with the largest image (width x height, in pixels) decoded; more is skipped.
MAX_PIXELS_ENV = "EDGETL_MAX_IMAGE_PIXELS"
#: The default limit: images with more pixels are skipped (a decompression bomb, or far more than a model needs).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
_MAX_PIXELS: contextvars.ContextVar[int | None] = contextvars.ContextVar("edgetl_max_image_pixels", default=None)


class ImageTooLargeError(ValueError):
    """An image has more pixels than the limit (a decompression bomb, or far more than a model needs)."""


def max_image_pixels() -> int:
    """The pixel limit in force: :func:`image_pixel_limit`'s, else ``$EDGETL_MAX_IMAGE_PIXELS``, else 64 MP.

    Raises:
        ConfigError: the environment variable is not a positive integer.
    """
    limit = _MAX_PIXELS.get()
    if limit is not None:
        return limit
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit() or len(text) > 12 or int(text) < 1:
        raise ConfigError(f"Received {MAX_PIXELS_ENV}={text[:40]!r}; set it to a positive number of pixels, e.g. 64000000, or unset it")
    return int(text)


@contextlib.contextmanager
def image_pixel_limit(limit: int | None) -> Iterator[None]:
    """Decode with this pixel limit inside the block (None: keep the one in force)."""
    if limit is None:
        yield
        return
    token = _MAX_PIXELS.set(int(limit))
    try:
        yield
    finally:
        _MAX_PIXELS.reset(token)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:,.0f} MP" if pixels >= 10_000_000 else f"{pixels / 1e6:.3g} MP"


def _check_pixels(size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageTooLargeError(
            f"{width}x{height} = {_megapixels(width * height)} is over the {_megapixels(limit)} limit "
            f"(data.max_image_pixels or ${MAX_PIXELS_ENV})"
        )


@contextlib.contextmanager
def _pillow_bomb_check_replaced() -> Iterator[None]:
    # edgetl checks every image's size against its own limit (reported as a skipped file); Pillow's
    # global check would warn (DecompressionBombWarning) or raise with its own limit instead.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextlib.contextmanager
def _truncated_images_rejected() -> Iterator[None]:
    # Another library may have switched the global on; a truncated file must be reported, not half-read,
    # and the caller's setting must come back unchanged.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _composite(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to 8-bit RGB (see the module docstring for the rules).

    Args:
        image: an opened (or loaded) Pillow image.

    Returns:
        An ``"RGB"`` image of the same size.

    Raises:
        ValueError: Pillow cannot convert this mode to RGB.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite(image)
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's own convert() clips 16-bit samples at 255, which turns most of the image white.
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def resample_filter(resize: str) -> Image.Resampling:
    """The Pillow filter for a contract's ``resize`` name.

    Raises:
        ConfigError: the name is not one of :data:`RESAMPLING`.
    """
    try:
        return RESAMPLING[resize.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"resize={resize!r} is not a known filter; use one of {sorted(RESAMPLING)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageTooLargeError):
        return str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    message = str(exc).lower()
    if "truncated" in message or isinstance(exc, EOFError):
        return "truncated image"
    return "corrupt image"


@dataclass
class _Decoded:
    size: tuple[int, int]
    mode: str
    pixels: np.ndarray | None  # (S, S, 3) uint8 when a size was asked for


def _decode(
    path: Path, input_size: int | None, resample: Image.Resampling | None, verify: bool, max_pixels: int | None = None
) -> _Decoded:
    """Open ``path`` once; with ``verify`` or ``input_size``, decode every pixel (this is what finds truncation).

    The size in the header is checked against ``max_pixels`` before any pixel is decoded.
    """
    with Image.open(path) as image:
        size, mode = image.size, image.mode
        _check_pixels(size, max_pixels if max_pixels is not None else max_image_pixels())
        if not verify and input_size is None:
            return _Decoded(size, mode, None)
        image.load()
        rgb = to_rgb(ImageOps.exif_transpose(image))
        if input_size is None:
            return _Decoded(size, mode, None)
        if rgb.size != (input_size, input_size):
            rgb = rgb.resize((input_size, input_size), resample)
        return _Decoded(size, mode, np.asarray(rgb, dtype=np.uint8))


def _try_decode(
    path: Path, input_size: int | None, resample: Image.Resampling | None, verify: bool, max_pixels: int | None = None
) -> _Decoded | SkippedFile:
    try:
        return _decode(path, input_size, resample, verify, max_pixels)
    except Exception as exc:  # Pillow's plugins raise many types on malformed files
        logger.debug("cannot read %s: %r", path, exc)
        return SkippedFile(path, _reason(exc))


def _workers(count: int) -> int:
    # Pillow releases the GIL while decoding and resizing, so threads give real parallelism here.
    return max(1, min(8, os.cpu_count() or 1, count))


def _decode_all(
    paths: Sequence[Path], input_size: int | None, resample: Image.Resampling | None, verify: bool
) -> list[_Decoded | SkippedFile]:
    limit = max_image_pixels()  # read here: worker threads do not see the caller's context
    with _truncated_images_rejected(), _pillow_bomb_check_replaced():
        if _workers(len(paths)) == 1:
            return [_try_decode(p, input_size, resample, verify, limit) for p in paths]
        with ThreadPoolExecutor(_workers(len(paths))) as pool:
            return list(pool.map(lambda p: _try_decode(p, input_size, resample, verify, limit), paths))


def read_rgb(path: str | Path, input_size: int, resize: str = "bilinear") -> np.ndarray:
    """Read one image as the model sees it: RGB uint8, resized (whole image, no crop) to a square.

    Args:
        path: image file.
        input_size: output height and width.
        resize: filter name, one of :data:`RESAMPLING`.

    Returns:
        uint8 array of shape ``(input_size, input_size, 3)``.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    return load_images([path], input_size, resize)[0]


def load_images(paths: Iterable[str | Path], input_size: int, resize: str = "bilinear") -> np.ndarray:
    """Decode images, convert them to RGB and resize each to ``input_size`` x ``input_size``.

    Args:
        paths: image files, in the order of the returned rows.
        input_size: output height and width in pixels.
        resize: filter name, one of :data:`RESAMPLING`.

    Returns:
        uint8 array of shape ``(N, input_size, input_size, 3)``.

    Raises:
        DataError: a file is missing or cannot be decoded (the first few are named).
        ConfigError: ``input_size`` is not positive or ``resize`` is unknown.
    """
    paths = [Path(p) for p in paths]
    _check_size(input_size)
    resample = resample_filter(resize)
    results = _decode_all(paths, input_size, resample, verify=True)
    bad = [r for r in results if isinstance(r, SkippedFile)]
    if bad:
        raise DataError(f"cannot read {len(bad)} of {len(paths)} image(s): {_describe(bad)}; fix or remove them")
    return _stack([r.pixels for r in results], input_size)  # type: ignore[union-attr]


def _check_size(input_size: int) -> None:
    if not isinstance(input_size, int | np.integer) or input_size < 1:
        raise ConfigError(f"input_size={input_size!r} must be a positive integer number of pixels")


def _stack(arrays: Sequence[np.ndarray | None], input_size: int) -> np.ndarray:
    if not arrays:
        return np.zeros((0, input_size, input_size, 3), dtype=np.uint8)
    return np.stack(arrays).astype(np.uint8, copy=False)  # type: ignore[arg-type]


def _describe(skipped: Sequence[SkippedFile]) -> str:
    listed = ", ".join(f"{s.path} ({s.reason})" for s in skipped[:_MAX_LISTED])
    more = len(skipped) - _MAX_LISTED
    return listed + (f" and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------------------------- scanning


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    """Validate ``root`` and return its class subfolders, sorted by name.

    Raises:
        DataError: root is missing, a file, or has no class subfolders.
    """
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass a folder with one subfolder per class")
    if not root.is_dir():
        raise DataError(f"data path {root} is a file, not a folder; pass a folder with one subfolder per class")
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    dirs = [p for p in entries if p.is_dir() and not _is_hidden(p.name)]
    if not dirs:
        images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise DataError(
                f"data folder {root} holds {len(images)} image(s) but no class subfolders; "
                "put each class's images in its own subfolder (e.g. data/cat/1.jpg, data/dog/2.jpg)"
            )
        raise DataError(f"data folder {root} has no class subfolders; put each class's images in its own subfolder")
    for folder in dirs:
        problem = class_name_problem(folder.name)
        if problem is not None:  # the name becomes a label: one line of labels.txt, a literal in generated code
            raise DataError(
                f"class folder {shown(str(folder), 200)}: its name {problem}; rename the folder "
                f"(a class name must be {CLASS_NAME_RULE})"
            )
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        logger.warning(
            "ignoring %d image(s) at the top level of %s (e.g. %s); only class subfolders are read",
            len(loose),
            root,
            loose[0].name,
        )
    return dirs


def _files_in(class_dir: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Image-suffixed files under ``class_dir`` (recursively, sorted), and the other files as skipped."""
    images: list[Path] = []
    others: list[SkippedFile] = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if _is_hidden(name):  # .DS_Store, AppleDouble "._x.jpg" files: never images
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                others.append(SkippedFile(path, f"not an image suffix ({path.suffix or 'none'})"))
    return images, others


def _scan(
    root: str | Path,
    *,
    strict: bool,
    class_names: list[str] | None,
    verify: bool,
    input_size: int | None = None,
    resize: str = "bilinear",
    require_usable: bool = True,
) -> tuple[FolderScan, np.ndarray | None]:
    """Scan (and, with ``input_size``, load) a folder, decoding each image once."""
    root = Path(root)
    resample = resample_filter(resize) if input_size is not None else None
    dirs = _class_dirs(root)
    folder_classes = [d.name for d in dirs]
    if class_names is None:
        names = folder_classes
    else:
        names = list(class_names)
        unknown = [c for c in folder_classes if c not in names]
        if unknown:
            raise DataError(
                f"data folder {root} has class folder(s) {unknown} that the model does not know "
                f"(its classes: {names}); remove or rename them"
            )

    candidates: list[Path] = []
    candidate_labels: list[int] = []
    skipped: list[SkippedFile] = []
    for class_dir in dirs:
        images, others = _files_in(class_dir)
        candidates.extend(images)
        candidate_labels.extend([names.index(class_dir.name)] * len(images))
        skipped.extend(others)

    results = _decode_all(candidates, input_size, resample, verify)
    paths: list[Path] = []
    labels: list[int] = []
    pixels: list[np.ndarray | None] = []
    sizes: collections.Counter[tuple[int, int]] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    unreadable: list[SkippedFile] = []
    for path, label, result in zip(candidates, candidate_labels, results, strict=True):
        if isinstance(result, SkippedFile):
            unreadable.append(result)
            continue
        paths.append(path)
        labels.append(label)
        pixels.append(result.pixels)
        sizes[result.size] += 1
        modes[result.mode] += 1
    counts = {name: 0 for name in names}
    for label in labels:
        counts[names[label]] += 1

    if strict and unreadable:
        raise DataError(
            f"{len(unreadable)} unreadable image file(s) in {root}: {_describe(unreadable)}; "
            "fix or remove them, or turn strict off to skip them"
        )
    skipped = sorted(skipped + unreadable, key=lambda s: str(s.path))
    if skipped:
        logger.warning("skipped %d file(s) in %s: %s", len(skipped), root, _describe(skipped))

    scan = FolderScan(
        root=root,
        class_names=names,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        skipped=skipped,
        sizes=sizes,
        modes=modes,
        counts=counts,
    )
    if require_usable:
        empty = [c for c in folder_classes if counts[c] == 0]
        if empty:
            raise DataError(
                f"class folder(s) {[str(root / c) for c in empty]} have no readable images; "
                "add images or remove the folder(s)"
            )
        if class_names is None and len(folder_classes) < 2:
            raise DataError(
                f"data folder {root} has {len(folder_classes)} class folder(s) ({folder_classes}); "
                "a classifier needs at least 2: add a subfolder per class"
            )
    array = _stack(pixels, input_size) if input_size is not None else None
    return scan, array


def scan_folder(
    root: str | Path, *, strict: bool = False, class_names: list[str] | None = None, verify: bool = True
) -> FolderScan:
    """List a data folder's classes and readable images.

    Args:
        root: folder with one subfolder per class.
        strict: raise on any unreadable image file instead of skipping it. Files without an image
            suffix (e.g. ``notes.txt``) are always skipped, never an error.
        class_names: the known classes (e.g. a trained model's); the folder's classes must be a subset,
            ``labels`` index into this list, and a single class folder is allowed.
        verify: decode every image fully (finds truncated files); False only reads headers.

    Returns:
        The :class:`FolderScan`.

    Raises:
        DataError: the folder is missing, a file, or has no class subfolders; a class folder has no
            readable images; fewer than 2 classes (when ``class_names`` is None); a class folder not in
            ``class_names``; with ``strict``, any unreadable image file.
    """
    scan, _ = _scan(root, strict=strict, class_names=class_names, verify=verify)
    return scan


def check_folder(root: str | Path) -> FolderScan:
    """Scan a folder for ``edgetl data check``: reports empty or single classes instead of raising.

    Args:
        root: folder with one subfolder per class.

    Returns:
        The :class:`FolderScan`; see :meth:`FolderScan.problems` for what is wrong with it.

    Raises:
        DataError: the folder is missing, a file, or has no class subfolders.
    """
    scan, _ = _scan(root, strict=False, class_names=None, verify=True, require_usable=False)
    return scan


# --------------------------------------------------------------------------------------------- splitting


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


# --------------------------------------------------------------------------------------------- loading


def _subset(x: np.ndarray, y: np.ndarray, paths: list[Path], idx: np.ndarray) -> ImageData:
    return ImageData(x=x[idx], y=y[idx], paths=[paths[i] for i in idx])


def load_split(data: DataConfig, input_size: int, *, resize: str = "bilinear") -> SplitData:
    """Load a data folder as training and validation images (see :func:`_load_split`), decoding
    with ``data.max_image_pixels`` as the pixel limit when it is set."""
    with image_pixel_limit(getattr(data, "max_image_pixels", None)):
        return _load_split(data, input_size, resize=resize)


def _load_split(data: DataConfig, input_size: int, *, resize: str = "bilinear") -> SplitData:
    """Load a data folder as training and validation images.

    Args:
        data: the :class:`~edgetl.pipeline.config.DataConfig`; uses ``path``, ``val_path``, ``val_split``, ``seed``
            and ``strict``. With ``val_path`` set, that folder is the validation set and must have the
            same class folders as ``path``; otherwise ``val_split`` of each class is held out.
        input_size: height and width images are resized to.
        resize: filter name, one of :data:`RESAMPLING`.

    Returns:
        The :class:`SplitData`; ``skipped`` lists the files of both folders that were not used.

    Raises:
        DataError: no ``path``; any problem :func:`scan_folder` raises for; ``val_path`` classes differ.
        ConfigError: bad ``input_size``, ``resize`` or ``val_split``.
    """
    if data.path is None:
        raise DataError("no data folder given; set data.path (or pass the folder on the command line)")
    _check_size(input_size)
    root = Path(data.path)
    if data.val_path is not None:
        val_root = Path(data.val_path)
        train_classes = [d.name for d in _class_dirs(root)]
        val_classes = [d.name for d in _class_dirs(val_root)]
        if train_classes != val_classes:
            missing = sorted(set(train_classes) - set(val_classes))
            extra = sorted(set(val_classes) - set(train_classes))
            raise DataError(
                f"validation folder {val_root} has different classes from {root} "
                f"(missing: {missing}, extra: {extra}); give both folders the same class subfolders"
            )
        train_scan, train_x = _scan(
            root, strict=data.strict, class_names=None, verify=True, input_size=input_size, resize=resize
        )
        val_scan, val_x = _scan(
            val_root,
            strict=data.strict,
            class_names=train_scan.class_names,
            verify=True,
            input_size=input_size,
            resize=resize,
        )
        split = SplitData(
            train=ImageData(train_x, train_scan.labels, train_scan.paths),  # type: ignore[arg-type]
            val=ImageData(val_x, val_scan.labels, val_scan.paths),  # type: ignore[arg-type]
            class_names=train_scan.class_names,
            skipped=train_scan.skipped + val_scan.skipped,
        )
    else:
        scan, x = _scan(root, strict=data.strict, class_names=None, verify=True, input_size=input_size, resize=resize)
        train_idx, val_idx = split_indices(scan.labels, data.val_split, data.seed)
        split = SplitData(
            train=_subset(x, scan.labels, scan.paths, train_idx),  # type: ignore[arg-type]
            val=_subset(x, scan.labels, scan.paths, val_idx),  # type: ignore[arg-type]
            class_names=scan.class_names,
            skipped=scan.skipped,
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
    input_size: int,
    class_names: list[str] | None = None,
    strict: bool = False,
    *,
    resize: str = "bilinear",
) -> tuple[ImageData, list[SkippedFile]]:
    """Load a whole folder for evaluation.

    Args:
        root: folder with one subfolder per class.
        input_size: height and width images are resized to.
        class_names: the model's classes; the folder's classes must be a subset and labels index into
            this list. None: the folder's own (sorted) classes, at least 2.
        strict: raise on any unreadable image file instead of skipping it.
        resize: filter name, one of :data:`RESAMPLING`.

    Returns:
        ``(images, skipped_files)``.

    Raises:
        DataError: any problem :func:`scan_folder` raises for, including a class folder not in ``class_names``.
        ConfigError: bad ``input_size`` or ``resize``.
    """
    _check_size(input_size)
    scan, x = _scan(root, strict=strict, class_names=class_names, verify=True, input_size=input_size, resize=resize)
    return ImageData(x=x, y=scan.labels, paths=scan.paths), scan.skipped  # type: ignore[arg-type]
