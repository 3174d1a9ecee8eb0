"""A classifier artifact's host-side steps around the runtime: pixels in, class scores out.

:func:`edgetl.device.evaluate.load_predictor` (``edgetl eval`` here) and
:mod:`edgetl.bench.boards` (the same on a board) share them, so a board is fed exactly the
tensors this machine's runtime would be fed: the artifact's own preprocessing contract, then the
model's own input quantization (:meth:`~edgetl.runtime.model.LoadedModel.to_input`); and its raw
outputs are read back exactly as here (:meth:`~edgetl.runtime.model.LoadedModel.from_output`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError
from edgetl.runtime.model import LoadedModel


def model_input(model: LoadedModel, contract: PreprocessContract, pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels ``(N, H, W, C)`` at the input size -> the model's raw input tensor (normalized, then quantized or cast)."""
    return model.to_input(contract.normalize(pixels))


def checked_scores(scores: np.ndarray, artifact: Path, class_names: list[str]) -> np.ndarray:
    """``scores`` when they are ``(N, classes)``.

    Raises:
        ArtifactError: another shape: the model is corrupt or the labels do not belong to it.
    """
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise ArtifactError(
            f"{artifact} outputs shape {tuple(scores.shape)}, but its metadata names {len(class_names)} classes; "
            "the model is corrupt or the labels do not belong to it"
        )
    return scores
