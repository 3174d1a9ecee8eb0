"""Keras side of progress reporting: a callback that reports each finished epoch, and the log of
what a user must see during training.

:data:`notice` is the logger for the few INFO records a training run should always show: the
classes and their image counts, and why a phase ended early. Its level is INFO, set here, so the
CLI (which shows WARNING and above without ``-v``) shows them too; with no logging configured
(the Python API) they stay silent like any INFO record.
"""

from __future__ import annotations

import logging

from edgetl.core.progress import Progress
from edgetl.ml._keras import keras

notice = logging.getLogger("edgetl.ml.notice")
notice.setLevel(logging.INFO)


def keras_callback(progress: Progress, task: str, total_epochs: int):
    """A Keras callback reporting each finished epoch with its loss and accuracy.

    A fit that ends before ``total_epochs`` (early stopping) completes its bar at the epochs it ran,
    with the message ``stopped early after epoch N of M``: the bar never freezes part-way.
    """
    class _EpochProgress(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs_run = 0
            progress(task, 0, total_epochs, "")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.epochs_run = epoch + 1
            shown = ", ".join(f"{k}={v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
            progress(task, epoch + 1, total_epochs, shown)

        def on_train_end(self, logs=None):
            if 0 < self.epochs_run < total_epochs:
                progress(task, self.epochs_run, self.epochs_run, f"stopped early after epoch {self.epochs_run} of {total_epochs}")

    return _EpochProgress()
