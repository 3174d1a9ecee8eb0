"""The Keras predictor that :mod:`edgetl.device.evaluate` reaches by registration, not by import.

The ``keras`` entry of :data:`edgetl.runtime.formats.FORMATS` names :func:`keras_predictor` by
module path; evaluation imports this module (and with it TensorFlow) only when a ``.keras``/``.h5``
file or an edgetl run folder is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.ml.model_io import load_keras_artifact, predict_pixels


def keras_predictor(artifact: Path, contract: PreprocessContract, *, trust_model: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 pixels -> probabilities for a Keras model file or an edgetl run folder.

    Args:
        artifact: ``.keras``/``.h5`` file or run folder.
        contract: the preprocessing the model was trained with.
        trust_model: allow code stored in the model file to run (otherwise it is refused).

    Raises:
        ArtifactError: no model or metadata there, or a model file that carries code.
    """
    keras_model, _ = load_keras_artifact(artifact, trust_model=trust_model)  # no code from the file runs unless trusted
    return lambda pixels: predict_pixels(keras_model, pixels, contract)
