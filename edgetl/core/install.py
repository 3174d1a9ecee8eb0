"""What this install has: the device side (``pip install edgetl``) or the full stack (``edgetl[train]``).

One place for the names of the training stack, the command that installs it, and the check that
looks modules up without importing them (so a device command never loads TensorFlow by asking).
"""

from __future__ import annotations

import importlib.util

#: Import names of the training stack: what ``pip install edgetl`` leaves out.
TRAINING_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx")
#: The command that installs it.
TRAIN_INSTALL = 'pip install "edgetl[train]"'


def missing_modules(names: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of ``names`` that cannot be imported here, found without importing them."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken (or, in tests, blocked) install counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing
