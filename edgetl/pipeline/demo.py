"""``edgetl demo``: generated shapes, trained from scratch, QAT int8, measured, in minutes.

The dataset is real PNG files on disk (coloured circles, squares, triangles and stars with
random position, size, rotation, colours and background noise), so the demo exercises exactly
the path a user's folder takes. No download is needed: weights start from random (``none``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgetl.core.config import validate
from edgetl.core.progress import Progress, log_progress
from edgetl.data.synthetic import make_shapes_dataset
from edgetl.pipeline.build import build
from edgetl.pipeline.config import deep_merge

log = logging.getLogger(__name__)

#: Small enough for a 2-core laptop in a few minutes, large enough to learn shapes well.
DEMO_SETTINGS: dict[str, Any] = {
    "name": "shapes",
    "target": "tflite-int8",
    "model": {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 48, "weights": "none", "dropout": 0.1},
    "data": {"val_split": 0.2, "seed": 0, "batch_size": 32},
    "train": {"head_epochs": 2, "head_lr": 2e-3, "fine_tune_epochs": 35, "augment": True, "patience": 8},
    "qat": {"epochs": 3, "lr": 2e-4},
    "export": {"representative_samples": 100},
    "bench": {"warmup": 10, "runs": 100},
}


def run_demo(out: Path, *, images_per_class: int = 250, force: bool = False, progress: Progress = log_progress, overrides: dict[str, Any] | None = None):
    """Generate ``out/data`` (if absent) and build ``out/build/shapes/tflite-int8``."""

    out = Path(out)
    data_dir = out / "data"
    if not data_dir.is_dir() or force:
        progress("generate images", 0, 1, str(data_dir))
        make_shapes_dataset(
            data_dir, images_per_class=images_per_class, image_size=64, seed=0, noise=0.05,
            min_scale=0.5, palette="light-on-dark", overwrite=True,
        )
        progress("generate images", 1, 1, str(data_dir))
    settings = deep_merge(DEMO_SETTINGS, {"data": {"path": str(data_dir)}, "out": str(out / "build")})
    config = validate(deep_merge(settings, overrides or {}), "demo settings")
    return build(config, force=force, progress=progress)
