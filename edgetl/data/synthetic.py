"""A procedurally generated image folder of coloured shapes, for tests, demos and smoke runs.

Every image is a real PNG: a random background colour with gaussian pixel noise and one filled shape of a
contrasting random colour, random size, position and rotation. The same arguments give the same bytes.
``noise`` and the scale range make the task harder; the extra shapes (pentagon, hexagon, cross, ring) make a
6-8 class set whose near-neighbours (pentagon/hexagon/circle) a model has to work to tell apart.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgetl.core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

_MIN_CONTRAST = 120.0  # Euclidean RGB distance between shape and background (max is ~441)
_SUPERSAMPLE_PIXELS = 256  # draw at about this size, then box-downsample: smooth edges at any image_size

Point = tuple[float, float]


def _regular_polygon(sides: int) -> Callable[[float, float, float, float], list[Point]]:
    def vertices(cx: float, cy: float, radius: float, angle: float) -> list[Point]:
        return [
            (
                cx + radius * math.cos(angle + 2 * math.pi * k / sides),
                cy + radius * math.sin(angle + 2 * math.pi * k / sides),
            )
            for k in range(sides)
        ]

    return vertices


def _star(cx: float, cy: float, radius: float, angle: float) -> list[Point]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = angle + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _cross(cx: float, cy: float, radius: float, angle: float) -> list[Point]:
    # A plus sign whose arm ends lie on the circumscribed circle, so rotation never leaves the image.
    half = radius * 0.3
    reach = math.sqrt(radius**2 - half**2)
    outline = [
        (half, reach), (half, half), (reach, half), (reach, -half), (half, -half), (half, -reach),
        (-half, -reach), (-half, -half), (-reach, -half), (-reach, half), (-half, half), (-half, reach),
    ]  # fmt: skip
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in outline]


_POLYGONS: dict[str, Callable[[float, float, float, float], list[Point]]] = {
    "triangle": _regular_polygon(3),
    "square": _regular_polygon(4),
    "pentagon": _regular_polygon(5),
    "hexagon": _regular_polygon(6),
    "star": _star,
    "cross": _cross,
}

SUPPORTED_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "pentagon", "hexagon", "cross", "ring")


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - background) >= _MIN_CONTRAST:
            return colour
    # Rare (mid-grey background); each channel at the far end is >= 221 away.
    return np.where(background > 127, 0, 255)


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, angle: float, fill, background
) -> None:
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        inner = radius * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    else:
        draw.polygon(_POLYGONS[shape](cx, cy, radius, angle), fill=fill)


PALETTES = ("any", "light-on-dark")


def _colours(rng: np.random.Generator, palette: str) -> tuple[np.ndarray, np.ndarray]:
    """Background and shape colours. ``light-on-dark`` keeps hues random but fixes the contrast
    polarity (shape channels 155-255 on background channels 0-99), which makes the task learnable
    from scratch on a few hundred images; ``any`` is the harder, fully random set."""
    if palette == "light-on-dark":
        return rng.integers(0, 100, size=3), rng.integers(155, 256, size=3)
    background = rng.integers(0, 256, size=3)
    return background, _contrasting_colour(rng, background)


def _render(rng: np.random.Generator, shape: str, image_size: int, noise: float, min_scale: float, max_scale: float, palette: str = "any"):
    factor = max(1, _SUPERSAMPLE_PIXELS // image_size)
    side = image_size * factor
    background, colour = _colours(rng, palette)
    radius = rng.uniform(min_scale, max_scale) * side / 2
    cx, cy = rng.uniform(radius, side - radius, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(canvas)
    _draw_shape(draw, shape, cx, cy, radius, angle, tuple(int(v) for v in colour), tuple(int(v) for v in background))
    if factor > 1:
        canvas = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    pixels = np.asarray(canvas, dtype=np.float32)
    if noise > 0:
        pixels = pixels + rng.normal(0.0, noise * 255.0, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _check_args(
    seed: int,
    images_per_class: int,
    image_size: int,
    shapes: Sequence[str],
    noise: float,
    min_scale: float,
    max_scale: float,
    palette: str = "any",
) -> None:
    if palette not in PALETTES:
        raise ConfigError(f"palette={palette!r} is not one of {list(PALETTES)}")
    if isinstance(shapes, str):
        raise ConfigError(f"shapes={shapes!r} must be a list of shape names, e.g. {list(DEFAULT_SHAPES)}")
    unknown = [s for s in shapes if s not in SUPPORTED_SHAPES]
    if unknown:
        raise ConfigError(f"unknown shape(s) {unknown}; choose from {list(SUPPORTED_SHAPES)}")
    if len(set(shapes)) != len(shapes) or len(shapes) < 2:
        raise ConfigError(f"shapes={list(shapes)} must name at least 2 different shapes, each once")
    if seed < 0:
        raise ConfigError(f"seed={seed} must be a non-negative integer")
    if images_per_class < 1:
        raise ConfigError(f"images_per_class={images_per_class} must be at least 1")
    if image_size < 8:
        raise ConfigError(f"image_size={image_size} is too small to draw a shape; use 8 pixels or more")
    if noise < 0:
        raise ConfigError(f"noise={noise} must be >= 0 (a fraction of 255, e.g. 0.1)")
    if not 0 < min_scale <= max_scale <= 1:
        raise ConfigError(f"min_scale={min_scale}, max_scale={max_scale} must satisfy 0 < min_scale <= max_scale <= 1")


def make_shapes_dataset(
    root: str | Path,
    *,
    images_per_class: int = 100,
    image_size: int = 64,
    seed: int = 0,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    noise: float = 0.1,
    min_scale: float = 0.35,
    max_scale: float = 0.8,
    palette: str = "any",
    overwrite: bool = False,
) -> Path:
    """Write a class-per-folder PNG dataset of shapes: ``root/<shape>/<shape>_0000.png``.

    Each shape draws from its own random stream (seeded by ``seed`` and the shape's name), so a class's
    images do not change when other shapes are added or removed.

    Args:
        root: folder to create.
        images_per_class: images written per shape.
        image_size: width and height in pixels.
        seed: random seed; the same arguments give byte-identical files.
        shapes: shape names, from :data:`SUPPORTED_SHAPES`.
        noise: std of the gaussian pixel noise, as a fraction of 255.
        min_scale: smallest shape diameter, as a fraction of the image side.
        max_scale: largest shape diameter, as a fraction of the image side.
        palette: ``any`` (random colours, either contrast polarity) or ``light-on-dark``.
        overwrite: replace an existing non-empty ``root``.

    Returns:
        ``root`` as a Path.

    Raises:
        DataError: ``root`` exists and is a file, or is non-empty and ``overwrite`` is False.
        ConfigError: an unknown shape or an out-of-range argument.
    """
    root = Path(root)
    _check_args(seed, images_per_class, image_size, shapes, noise, min_scale, max_scale, palette)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is a file; choose a folder path for the synthetic dataset")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DataError(f"{root} exists and is not empty; choose another folder or pass overwrite=True")

    # Build beside root and rename into place, so a crash never leaves a half-written dataset at root.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for shape in shapes:
            rng = np.random.default_rng([seed, zlib.crc32(shape.encode())])
            class_dir = tmp / shape
            class_dir.mkdir(parents=True)
            for index in range(images_per_class):
                image = _render(rng, shape, image_size, noise, min_scale, max_scale, palette)
                image.save(class_dir / f"{shape}_{index:04d}.png", format="PNG")
        if root.exists():
            old = root.with_name(f"{root.name}.old-{os.getpid()}")
            root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %d shape images (%s) to %s", images_per_class * len(shapes), ", ".join(shapes), root)
    return root
