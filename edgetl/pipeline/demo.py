"""``edgetl demo``: transfer learning on generated shapes, QAT int8, measured, in minutes.

The dataset is real PNG files on disk (coloured circles, squares, triangles and stars with
random position, size, rotation, colours and background noise), so the demo exercises exactly
the path a user's folder takes. The backbone is EfficientNet-Lite0 with ImageNet weights (the
``pretrained`` extra ships them; no download): a new head on the frozen backbone, then its top
blocks fine-tuned, QAT, int8. Then the same settings train once more from random weights, so the
demo shows what the pretrained weights bought: :func:`scratch_baseline`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig, validate
from edgetl.core.progress import Progress, log_progress
from edgetl.data.split import load_split
from edgetl.data.synthetic import make_shapes_dataset
from edgetl.ml.backbones import build_classifier
from edgetl.ml.train import fit_transfer, resolve_model_options, set_seed
from edgetl.pipeline.build import BuildResult, build
from edgetl.pipeline.config import deep_merge

log = logging.getLogger(__name__)

#: Few images, as transfer learning is for: 60 per class (45 train, 15 validation) at 64 px.
DEMO_IMAGES_PER_CLASS = 60

#: Small enough for a 2-core laptop in a few minutes; the pretrained recipe (models/efficientnet_lite0.toml) at 64 px.
DEMO_SETTINGS: dict[str, Any] = {
    "name": "shapes",
    "target": "tflite-int8",
    "model": {"name": "efficientnet_lite0", "input_size": 64, "weights": "imagenet", "dropout": 0.2},
    "data": {"val_split": 0.25, "seed": 0, "batch_size": 16},
    "train": {"head_epochs": 10, "head_lr": 1e-3, "fine_tune_epochs": 8, "augment": True, "patience": 3},
    "qat": {"epochs": 3, "lr": 1e-5},
    "export": {"representative_samples": 100},
    "bench": {"warmup": 10, "runs": 100},
}

#: Written beside the build: the pretrained float model against the same settings from random weights.
BASELINE_FILE = "transfer_vs_scratch.json"


@dataclass
class DemoResult:
    """The build, and the float top-1 of the same settings trained from random weights."""

    build: BuildResult
    scratch_top1: float
    scratch_s: float

    @property
    def pretrained_top1(self) -> float:
        return float(self.build.summary["float_top1"])


def run_demo(
    out: Path, *, images_per_class: int = DEMO_IMAGES_PER_CLASS, force: bool = False, progress: Progress = log_progress,
    overrides: dict[str, Any] | None = None, baseline: bool = True,
) -> DemoResult | BuildResult:
    """Generate ``out/data`` (if absent), build ``out/build/shapes/tflite-int8`` and, with
    ``baseline``, train the same settings from scratch (``out/transfer_vs_scratch.json``).

    Returns:
        A :class:`DemoResult`, or the bare :class:`BuildResult` without ``baseline``.
    """
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
    result = build(config, force=force, progress=progress)
    if not baseline:
        return result
    top1, seconds = scratch_baseline(config, progress)
    _fs.write_json(out / BASELINE_FILE, {
        "settings": config.to_toml_dict(),
        "pretrained": {"weights": config.model.weights, "float_top1": result.summary["float_top1"], "int8_top1": result.summary["artifact_top1"]},
        "scratch": {"weights": "none", "float_top1": top1, "train_s": seconds},
    })
    return DemoResult(result, top1, seconds)


def scratch_baseline(config: BuildConfig, progress: Progress = log_progress) -> tuple[float, float]:
    """Float validation top-1 and training seconds of ``config`` with random weights (``weights = "none"``):
    the same split, epochs, learning rates and augmentation; nothing written."""
    scratch = config.model_copy(update={"model": config.model.model_copy(update={"weights": "none"})})
    spec, input_size, alpha = resolve_model_options(scratch)
    split = load_split(scratch.data, input_size, channels=scratch.model.channels)
    set_seed(scratch.data.seed)
    start = time.perf_counter()
    model, contract = build_classifier(spec, len(split.class_names), input_size, alpha, "none", scratch.model.dropout, channels=scratch.model.channels)
    fitted = fit_transfer(model, contract, spec, split, scratch, progress=progress)
    seconds = time.perf_counter() - start
    log.info("from scratch with the same settings: float top-1 %.4f in %.0f s", fitted.val_accuracy, seconds)
    return fitted.val_accuracy, seconds
