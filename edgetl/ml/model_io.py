"""Keras model I/O beside :mod:`edgetl.ml.keras_safety`: loading a run folder's model (through the
safe loader), running it on uint8 pixels (normalized batch by batch), its accuracy, and the check
that refuses a diverged (NaN/inf) model before anything converts or writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.core.metadata import read_model_info
from edgetl.data.split import ImageData
from edgetl.ml.keras_safety import load_keras_model

MODEL_FILE = "model.keras"


def check_finite_weights(model, after: str, learning_rates: str) -> None:
    """Refuse a model whose training diverged, before anything converts or writes it (a NaN
    weight made the TFLite converter crash the process).

    Raises:
        ConfigError: some weight is NaN or infinite.
    """
    bad = total = 0
    for weights in model.get_weights():
        weights = np.asarray(weights)
        total += weights.size
        if np.issubdtype(weights.dtype, np.floating):
            bad += int(weights.size - np.count_nonzero(np.isfinite(weights)))
    if bad:
        raise ConfigError(
            f"training diverged: {bad} of {total} weights are NaN/inf after {after} ({learning_rates}); lower the learning rates"
        )


def predict_pixels(model, pixels: np.ndarray, contract: PreprocessContract, batch_size: int = 64) -> np.ndarray:
    """Model outputs for uint8 pixels, normalized batch by batch (no full float copy in memory)."""
    outputs = [model.predict_on_batch(contract.normalize(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def accuracy(model, images: ImageData, contract: PreprocessContract, batch_size: int = 64) -> float:
    if len(images.y) == 0:
        return float("nan")
    probs = predict_pixels(model, images.x, contract, batch_size)
    return float(np.mean(np.argmax(probs, axis=1) == images.y))


def load_float_model(run_dir: Path, *, trust_model: bool = False):
    """Load a run folder's float Keras model (through the safe loader: no code from the file runs
    unless ``trust_model``)."""
    return load_keras_model(Path(run_dir) / MODEL_FILE, trust=trust_model)


def load_keras_artifact(path: Path, *, trust_model: bool = False):
    """Load a float or QAT Keras model from a file or an edgetl run folder, through
    :func:`edgetl.ml.keras_safety.load_keras_model` (no code from the file runs unless ``trust_model``).

    Returns:
        ``(model, model_info)``.

    Raises:
        ArtifactError: no model or metadata there, or a model file that carries code.
    """
    path = Path(path)
    info = read_model_info(path)
    model_file = path / info.extra.get("model_file", "model.keras") if path.is_dir() else path
    if not model_file.is_file():
        raise ArtifactError(f"model file {model_file} does not exist; pass an edgetl run folder or model file")
    return load_keras_model(model_file, trust=trust_model), info
