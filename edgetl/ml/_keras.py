"""The one place that chooses Keras 2 (``tf_keras``) for TensorFlow and tfmot.

tfmot 0.8 quantizes only Keras 2 models, and TensorFlow reads ``TF_USE_LEGACY_KERAS`` the first
time ``tf.keras`` is touched, so this module sets it before TensorFlow is imported. Every other
module gets TensorFlow, Keras and tfmot from :func:`tf`, :func:`keras` and :func:`tfmot`, never
by importing them at module level: that keeps ``edgetl --help`` and the runtime-only paths free
of TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

from edgetl.core.errors import MissingDependencyError
from edgetl.core.native_output import native_output_to_log

log = logging.getLogger(__name__)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_devices_initialized = False


def _prepare_environment() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf() -> ModuleType:
    """Import TensorFlow with Keras 2 selected.

    TensorFlow's C++ writes to fd 2 at import (absl and cudart lines, twice) and at its first
    device query (``failed call to cuInit`` on a machine without a GPU), which
    ``TF_CPP_MIN_LOG_LEVEL`` does not silence: both happen here, the first time, inside
    :func:`~edgetl.core.native_output.native_output_to_log` (their text is logged at DEBUG).
    """
    global _devices_initialized
    _prepare_environment()
    try:
        if "tensorflow" in sys.modules:
            import tensorflow
        else:
            with native_output_to_log("TensorFlow import"):
                import tensorflow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "TensorFlow is not installed; training and export need it: pip install edgetl "
            "(the 'runtime' extra alone covers eval/bench of .tflite and .onnx files)"
        ) from exc
    if not _devices_initialized:
        with native_output_to_log("TensorFlow device discovery"):
            devices = tensorflow.config.list_physical_devices()
        _devices_initialized = True
        log.debug("TensorFlow devices: %s", ", ".join(d.device_type for d in devices))
    return tensorflow


def keras() -> ModuleType:
    """Return the ``tf_keras`` package (Keras 2), the Keras tfmot can quantize."""
    tf()
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("tf-keras is not installed: pip install tf-keras") from exc
    return tf_keras


def tfmot() -> ModuleType:
    """Return ``tensorflow_model_optimization`` (imported after Keras 2 is selected)."""
    keras()
    try:
        import tensorflow_model_optimization
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError(
            "tensorflow-model-optimization is not installed: pip install tensorflow-model-optimization"
        ) from exc
    return tensorflow_model_optimization
