"""Image files -> uint8 RGB arrays: decoding, conversion to RGB, resizing, and the pixel limit.

Scanning a data folder is :mod:`edgetl.data.folder`; the train/validation split and the evaluation
set are :mod:`edgetl.data.split`. Both decode through :func:`decode_all` here.

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

import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edgetl.core.contract import as_hw
from edgetl.core.errors import ConfigError, DataError

#: An input size: a square side in pixels, or ``(height, width)``.
Size = int | tuple[int, int]

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
    pixels: np.ndarray | None  # (H, W, C) uint8 when a size was asked for


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as 8-bit RGB (``channels`` 3) or grayscale ``"L"`` (``channels`` 1, Pillow's ITU-R 601-2
    luma of the RGB image, so alpha, palettes and 16-bit samples follow :func:`to_rgb`'s rules)."""
    rgb = to_rgb(image)
    return rgb if channels == 3 else rgb.convert("L")


def _decode(
    path: Path, input_size: Size | None, resample: Image.Resampling | None, verify: bool, max_pixels: int | None = None,
    channels: int = 3,
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
        converted = to_mode(ImageOps.exif_transpose(image), channels)
        if input_size is None:
            return _Decoded(size, mode, None)
        height, width = as_hw(input_size)
        if converted.size != (width, height):
            converted = converted.resize((width, height), resample)
        pixels = np.asarray(converted, dtype=np.uint8)
        return _Decoded(size, mode, pixels.reshape(height, width, channels))


def _try_decode(
    path: Path, input_size: Size | None, resample: Image.Resampling | None, verify: bool, max_pixels: int | None = None,
    channels: int = 3,
) -> _Decoded | SkippedFile:
    try:
        return _decode(path, input_size, resample, verify, max_pixels, channels)
    except Exception as exc:  # Pillow's plugins raise many types on malformed files
        logger.debug("cannot read %s: %r", path, exc)
        return SkippedFile(path, _reason(exc))


def _workers(count: int) -> int:
    # Pillow releases the GIL while decoding and resizing, so threads give real parallelism here.
    return max(1, min(8, os.cpu_count() or 1, count))


def decode_all(
    paths: Sequence[Path], input_size: Size | None, resample: Image.Resampling | None, verify: bool, channels: int = 3
) -> list[_Decoded | SkippedFile]:
    limit = max_image_pixels()  # read here: worker threads do not see the caller's context
    with _truncated_images_rejected(), _pillow_bomb_check_replaced():
        if _workers(len(paths)) == 1:
            return [_try_decode(p, input_size, resample, verify, limit, channels) for p in paths]
        with ThreadPoolExecutor(_workers(len(paths))) as pool:
            return list(pool.map(lambda p: _try_decode(p, input_size, resample, verify, limit, channels), paths))


def read_rgb(path: str | Path, input_size: Size, resize: str = "bilinear", channels: int = 3) -> np.ndarray:
    """Read one image as the model sees it: RGB (or gray) uint8, resized (whole image, no crop).

    Args:
        path: image file.
        input_size: output side (square) or ``(height, width)``.
        resize: filter name, one of :data:`RESAMPLING`.
        channels: 3 (RGB) or 1 (grayscale, ``"L"``).

    Returns:
        uint8 array of shape ``(height, width, channels)``.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    return load_images([path], input_size, resize, channels=channels)[0]


def load_images(paths: Iterable[str | Path], input_size: Size, resize: str = "bilinear", *, channels: int = 3) -> np.ndarray:
    """Decode images, convert them to RGB (or grayscale) and resize each whole image to the input size.

    Args:
        paths: image files, in the order of the returned rows.
        input_size: output side in pixels (square) or ``(height, width)``.
        resize: filter name, one of :data:`RESAMPLING`.
        channels: 3 (RGB) or 1 (grayscale: Pillow's ``"L"``, ITU-R 601-2 luma).

    Returns:
        uint8 array of shape ``(N, height, width, channels)``.

    Raises:
        DataError: a file is missing or cannot be decoded (the first few are named).
        ConfigError: ``input_size`` is not positive, ``channels`` not 1 or 3, or ``resize`` is unknown.
    """
    paths = [Path(p) for p in paths]
    check_input_size(input_size, channels)
    resample = resample_filter(resize)
    results = decode_all(paths, input_size, resample, verify=True, channels=channels)
    bad = [r for r in results if isinstance(r, SkippedFile)]
    if bad:
        raise DataError(f"cannot read {len(bad)} of {len(paths)} image(s): {describe_skipped(bad)}; fix or remove them")
    return stack_pixels([r.pixels for r in results], input_size, channels)  # type: ignore[union-attr]


def check_input_size(input_size: Size, channels: int = 3) -> None:
    """Raises ConfigError unless ``input_size`` is a positive integer (or a pair of them) and ``channels`` 1 or 3."""
    sides = input_size if isinstance(input_size, tuple | list) else (input_size,)
    if len(sides) not in (1, 2) or any(not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1 for v in sides):
        raise ConfigError(f"input_size={input_size!r} must be a positive integer number of pixels (or a (height, width) pair)")
    if channels not in (1, 3):
        raise ConfigError(f"channels={channels!r} must be 1 (grayscale) or 3 (RGB)")


def stack_pixels(arrays: Sequence[np.ndarray | None], input_size: Size, channels: int = 3) -> np.ndarray:
    """Decoded images as one uint8 ``(N, height, width, channels)`` array (empty when there are none)."""
    if not arrays:
        return np.zeros((0, *as_hw(input_size), channels), dtype=np.uint8)
    return np.stack(arrays).astype(np.uint8, copy=False)  # type: ignore[arg-type]


def describe_skipped(skipped: Sequence[SkippedFile]) -> str:
    """The first few skipped files with their reasons, and how many more, for a one-line message."""
    listed = ", ".join(f"{s.path} ({s.reason})" for s in skipped[:_MAX_LISTED])
    more = len(skipped) - _MAX_LISTED
    return listed + (f" and {more} more" if more > 0 else "")
