"""A small real-photo transfer task made offline: crops of the photos bundled with scikit-image.

Six visually distinct classes, one source photo each: ``brick``, ``grass`` and ``gravel``
(textures), ``moon`` (a cratered surface), ``coins`` and ``coffee``. Training crops come from the
LEFT half of each photo and validation crops from the RIGHT half, so no pixel is shared between
the splits: validation measures generalisation to unseen parts of the surface, not memory of
pixels. Each crop has a random position, a random size (35-90 % of the half's shorter side) and a
random horizontal flip, and is resized to ``size`` x ``size``; grayscale photos become RGB (the
three channels equal).

Usage (as a library; other benchmarks import it)::

    from benchmarks.real_textures import make_texture_folders
    train_dir, val_dir = make_texture_folders(Path("/tmp/textures"), per_class_train=10, per_class_val=30)

or ``python benchmarks/real_textures.py OUT [--train 10] [--val 30] [--size 96] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Class name -> the ``skimage.data`` function with its photo.
SOURCES = {"brick": "brick", "grass": "grass", "gravel": "gravel", "moon": "moon", "coins": "coins", "coffee": "coffee"}
MIN_SCALE, MAX_SCALE = 0.35, 0.9


def _photo(name: str) -> np.ndarray:
    """The photo as uint8 RGB, ``(height, width, 3)``."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, SOURCES[name])())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def _crops(half: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    from PIL import Image

    height, width = half.shape[:2]
    short = min(height, width)
    out = []
    for _ in range(count):
        side = int(round(short * rng.uniform(MIN_SCALE, MAX_SCALE)))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = half[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.LANCZOS)))
    return out


def make_texture_folders(out: Path, per_class_train: int, per_class_val: int, size: int = 96, seed: int = 0) -> tuple[Path, Path]:
    """Write ``out/train/<class>/*.png`` and ``out/val/<class>/*.png`` (see the module docstring).

    The same arguments give the same files. Existing files of the same names are overwritten; a
    class folder is not emptied first, so use a fresh ``out`` per call.

    Returns:
        ``(out/train, out/val)``.
    """
    from PIL import Image

    out = Path(out)
    rng = np.random.default_rng(seed)
    for name in SOURCES:
        photo = _photo(name)
        middle = photo.shape[1] // 2
        for split, half, count in (("train", photo[:, :middle], per_class_train), ("val", photo[:, middle:], per_class_val)):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(_crops(half, count, size, rng)):
                Image.fromarray(crop).save(folder / f"{name}_{i:04d}.png")
    return out / "train", out / "val"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=10, help="training crops per class")
    parser.add_argument("--val", type=int, default=30, help="validation crops per class")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, val = make_texture_folders(args.out, args.train, args.val, args.size, args.seed)
    print(f"{len(SOURCES)} classes: {train} ({args.train} per class), {val} ({args.val} per class)")


if __name__ == "__main__":
    main()
