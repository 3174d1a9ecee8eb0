"""Progress reporting: stages call a callback; the CLI turns it into rich progress bars."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Called as ``progress(task, completed, total, message)``; ``total`` 0 means unknown."""

    def __call__(self, task: str, completed: int, total: int, message: str = "") -> None: ...


def log_progress(task: str, completed: int, total: int, message: str = "") -> None:
    """Default callback: a log line per step, for notebooks and the Python API."""
    log.info("%s %d/%d %s", task, completed, total, message)


def keras_callback(progress: Progress, task: str, total_epochs: int):
    """A Keras callback reporting each finished epoch with its loss and accuracy."""
    from edgetl.ml._keras import keras

    class _EpochProgress(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            progress(task, 0, total_epochs, "")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = ", ".join(f"{k}={v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
            progress(task, epoch + 1, total_epochs, shown)

    return _EpochProgress()
