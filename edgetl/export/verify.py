"""Verification of an exported artifact against the Keras model it came from, as its target's
registry entry says: fp32 must match to a max |diff| (else :class:`VerificationError`), quantized
artifacts report their top-1 agreement (a warning below the entry's threshold)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import VerificationError
from edgetl.export.targets import MAX_ABS_DIFF, TargetSpec
from edgetl.ml.model_io import predict_pixels
from edgetl.runtime.formats import open_model

log = logging.getLogger(__name__)


def verify_artifact(
    artifact: Path, target: TargetSpec, reference, pixels: np.ndarray, contract: PreprocessContract
) -> tuple[dict[str, Any], np.ndarray]:
    """Run the reference Keras model and the artifact on the same images; compare.

    A :data:`~edgetl.export.targets.MAX_ABS_DIFF` target must match to ``target.tolerance`` (else
    :class:`VerificationError`, listing every mismatch at once); the others report their top-1
    agreement and max difference, with a warning below ``target.tolerance`` agreement.

    Returns:
        The comparison, and the artifact's probabilities (for its accuracy, without a second run).
    """
    shown = _fs.final_path(artifact)  # the name the user will find (the folder may still be staged)
    ref = predict_pixels(reference, pixels, contract)
    out = open_model(artifact).predict(contract.normalize(pixels))
    diff = np.abs(ref - out)
    result = {
        "images": int(len(pixels)),
        "top1_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1))) if len(pixels) else float("nan"),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
    }
    if target.verify == MAX_ABS_DIFF:
        tolerance = target.tolerance
        if diff.size and diff.max() > tolerance:
            bad = np.nonzero(diff.max(axis=1) > tolerance)[0]
            raise VerificationError(
                f"{shown} differs from the Keras model on {len(bad)} of {len(pixels)} images (max |diff| {diff.max():.2e} > {tolerance}); "
                "the converter changed the model: report it with the model's backbone and versions"
            )
    elif result["top1_agreement"] < target.tolerance:
        advice = (
            "int8 rounding changed many predictions; compare its top-1 with the float model's in report.md, and if it lost accuracy, "
            "train longer, raise --qat-epochs or calibrate on more images ([export] representative_samples)"
            if target.dtype == "int8" else
            f"{target.dtype} quantization changed many predictions: compare its top-1 with the float model's; if it lost accuracy, "
            "ship tflite-fp16 or tflite-fp32"
            if target.dtype in ("int16x8", "dynamic") else
            f"{target.dtype} rounding should not change this many: report it with the model's backbone and versions"
        )
        log.warning(
            "%s agrees with the Keras model it was converted from on only %.1f%% of %d validation images (expected at least %.0f%%): %s",
            shown, 100 * result["top1_agreement"], len(pixels), 100 * target.tolerance, advice,
        )
    return result, out
