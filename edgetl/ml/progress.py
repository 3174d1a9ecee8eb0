"""Keras side of progress reporting: a callback that reports each finished epoch."""

from __future__ import annotations

from edgetl.core.progress import Progress
from edgetl.ml._keras import keras


def keras_callback(progress: Progress, task: str, total_epochs: int):
    """A Keras callback reporting each finished epoch with its loss and accuracy."""
    class _EpochProgress(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            progress(task, 0, total_epochs, "")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = ", ".join(f"{k}={v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
            progress(task, epoch + 1, total_epochs, shown)

    return _EpochProgress()
