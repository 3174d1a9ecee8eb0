"""Quantization-aware training with tensorflow-model-optimization, and the PTQ alternative.

QAT starts from the trained float model, inserts fake-quantization with the backbone's recipe
(:mod:`edgetl.ml.quantize`: tfmot's 8-bit scheme, per-channel weights, per-tensor activations,
Conv+BatchNorm folded, plus output quantizers for the layers tfmot does not know), starts the
activation ranges from calibration images, and fine-tunes for a few epochs at a low learning
rate with BatchNorm in inference mode so the weights adapt to int8 rounding. ``mode="ptq"``
skips training: the exporter then calibrates ranges on a representative set of training images.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.core.fingerprint import stage_fingerprints
from edgetl.core.metadata import ArtifactMetadata, package_versions, write_labels
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import QuantMode
from edgetl.data.split import SplitData, load_split
from edgetl.ml import distribute, l2sp
from edgetl.ml.backbones.spec import BACKBONES
from edgetl.ml.checkpoints import RunCheckpoints
from edgetl.ml.model_io import accuracy, check_finite_weights
from edgetl.ml.phases import fit_on_images, is_batchnorm
from edgetl.ml.quantize import calibrate_ranges, quantize_model
from edgetl.ml.train import deterministic_ops, set_seed
from edgetl.ml.user_model import get_backbone, is_model_path

log = logging.getLogger(__name__)

QAT_MODEL_FILE = "qat_model.h5"  # tfmot's wrappers reload from HDF5; the .keras format loses their variables


@dataclass
class QATResult:
    """A quantization-aware (or, for PTQ, the untouched float) Keras model ready to export."""

    out_dir: Path | None
    model: Any
    mode: QuantMode
    class_names: list[str]
    contract: PreprocessContract
    val_accuracy: float
    history: dict[str, list[float]]
    split: SplitData


def qat(
    config: BuildConfig,
    float_model,
    *,
    class_names: list[str],
    contract: PreprocessContract,
    split: SplitData | None = None,
    out_dir: Path | None = None,
    force: bool = False,
    progress: Progress = log_progress,
    run_fingerprint: str | None = None,
    quantize_configs: dict[str, Any] | None = None,
    checkpoints: RunCheckpoints | None = None,
) -> QATResult:
    """Quantization-aware fine-tuning of ``float_model`` (or PTQ pass-through).

    Args:
        config: resolved configuration; ``qat`` section used, ``data`` for the images.
        float_model: the trained float Keras model (flat functional graph).
        class_names, contract: the float model's labels and preprocessing.
        split: the same train/validation split the float model used (loaded if None).
        out_dir: where to write ``qat_model.h5`` and its metadata (None: keep in memory).
        quantize_configs: ``{layer or class name: tfmot QuantizeConfig}`` for layers the
            backbone's recipe does not cover (a user-supplied model's custom layers).
        checkpoints: QAT's epoch checkpoints (None: none); a QAT killed part way resumes from them.

    Returns:
        The QAT model (or the float model for PTQ) and its validation accuracy.
    """
    with deterministic_ops(config.train.deterministic):
        return _qat(config, float_model, class_names, contract, split, out_dir, force, progress, run_fingerprint, quantize_configs, checkpoints)


def _qat(config, float_model, class_names, contract, split, out_dir, force, progress, run_fingerprint, quantize_configs, checkpoints=None) -> QATResult:
    mode = QuantMode(config.qat.mode)
    if split is None:
        if config.data.path is None:
            raise ConfigError("QAT needs the training images: pass --data DIR")
        split = load_split(config.data, contract.hw, channels=contract.channels)
        if split.class_names != class_names:
            raise ConfigError(
                f"the data's classes {split.class_names} differ from the model's {class_names}; pass the folder the model was trained on"
            )
    if mode is QuantMode.ptq:
        acc = accuracy(float_model, split.val, contract)
        return QATResult(None, float_model, mode, class_names, contract, acc, {}, split)

    set_seed(config.data.seed)  # the same QAT from the same float model, in `build` or `edgetl qat`
    spec = get_backbone(config.model.name, input_size=contract.input_size) if config.model.name in BACKBONES or is_model_path(config.model.name) else None
    for layer in float_model.layers:
        # BatchNorm stays in inference mode, from scratch too: training ended with re-estimated
        # statistics, and tfmot folds BN into the convolution with them. Letting batch statistics
        # drive the folded weights made QAT wander off the float model (seen: -5 points, then back).
        layer.trainable = not is_batchnorm(layer)
    # QAT runs under the training's strategy (every multi-worker task takes part) and in float32.
    strategy = distribute.make_strategy(config.train.strategy)
    fit_config = distribute.scaled(config, int(strategy.num_replicas_in_sync))
    with strategy.scope():
        q_model = quantize_model(float_model, spec.qat_recipe if spec else "plain", quantize_configs)
        # Ranges from the data (as PTQ calibrates them) before QAT refines them, not tfmot's [-6, 6].
        calibration = representative_images(split, config.export.representative_samples, config.data.seed)
        calibrate_ranges(q_model, [contract.normalize(calibration[i : i + 32]) for i in range(0, len(calibration), 32)])
        history: dict[str, list[float]] = {}
        if config.qat.epochs > 0:
            with _qat_l2sp(q_model, float_model, config):
                history = fit_on_images(
                    q_model, split, contract, fit_config, lr=fit_config.qat.lr, epochs=config.qat.epochs, augment=False, task="QAT",
                    progress=progress, checkpoints=checkpoints,
                )
            check_finite_weights(q_model, "QAT", f"qat.lr={config.qat.lr:g}")
    acc = accuracy(q_model, split.val, contract)
    log.info("QAT validation top-1: %.4f", acc)
    result = QATResult(out_dir, q_model, mode, class_names, contract, acc, history, split)
    if out_dir is not None:
        _write_qat_run(result, config, force, run_fingerprint)
    return result


@contextmanager
def _qat_l2sp(q_model, float_model, config: BuildConfig):
    """``qat.l2sp``: QAT pulled toward the float model it starts from (:mod:`edgetl.ml.l2sp`; the
    head is anchored like the rest, beta has no role), the penalty logged when QAT ends."""
    if config.qat.l2sp is None:
        yield
        return
    alpha = config.qat.l2sp[0]
    source = l2sp.qat_source(float_model)
    with l2sp.attached(q_model, source, alpha, 0.0, new_head=False) as value:
        log.info("L2-SP on in QAT: alpha %g toward the float model's weights", alpha)
        yield
        log.info("QAT: %s", l2sp.describe(value(), alpha, 0.0))


def _write_qat_run(result: QATResult, config: BuildConfig, force: bool, run_fp: str | None) -> None:
    out = Path(result.out_dir)
    if run_fp is None:
        run_fp = stage_fingerprints(config)["qat"]
    _fs.check_output_dir(out, run_fp, force=force, what="QAT run")
    with _fs.atomic_dir(out) as staging:  # a forced run replaces the previous folder only when complete
        _write_qat_files(staging, result, config, run_fp)


def _write_qat_files(out: Path, result: QATResult, config: BuildConfig, run_fp: str) -> None:
    result.model.save(out / QAT_MODEL_FILE)
    write_labels(out / "labels.txt", result.class_names)
    _fs.write_json(out / "history.json", result.history)
    ArtifactMetadata.create(
        kind="keras-qat",
        fingerprint=run_fp,
        model_file=QAT_MODEL_FILE,
        backbone=config.model.name,
        input_size=result.contract.input_size,
        class_names=result.class_names,
        preprocessing=result.contract.to_dict(),
        val_accuracy=result.val_accuracy,
        deterministic=config.train.deterministic,
        versions=package_versions(),
        config=config.to_toml_dict(),
    ).write(out)


def representative_images(split: SplitData, count: int, seed: int) -> np.ndarray:
    """Up to ``count`` training images (uint8), a seeded stratified-enough random draw."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split.train.y))[:count]
    return split.train.x[order]
