"""Epoch checkpoints: a killed training stage resumes from its last finished epoch.

A stage (training, QAT) is a series of fits (phase 1, 2, 3; QAT's one). :class:`RunCheckpoints`
keeps, in one folder:

- ``<fit>.done.json`` and ``<fit>.done.weights.npz``: a finished fit (its marked history, the
  model's weights when it ended and a summary): a resumed stage skips it and loads the weights.
- ``<fit>.epoch.json`` naming ``<fit>.epoch-NNNN.*`` (a ``tf.train.Checkpoint`` of the model AND its
  optimizer: slots, step count, learning rate) and ``<fit>.epoch-NNNN.npz`` (the best epoch's weights
  and the fit's starting weights): the last finished epoch of the fit in progress. A resumed fit
  restores all of it and the state of early stopping and of the plateau schedule, and continues
  with ``initial_epoch``: the same epochs, the same optimizer state, one history.

Each epoch's files get new names and the JSON naming them is written last (atomically): a kill
while saving leaves the previous epoch's checkpoint in force. The folder holds the stage's fingerprint: checkpoints of other settings are
never resumed. Under MultiWorkerMirroredStrategy every worker saves (reading mirrored BatchNorm
statistics is a collective), each into its own folder; every worker resumes from the chief's.

Nothing here is loaded with pickle: JSON, ``np.load(allow_pickle=False)`` and TensorFlow's own
checkpoint reader only.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.ml._keras import keras, tf
from edgetl.ml.progress import notice

log = logging.getLogger(__name__)

_FINGERPRINT = "fingerprint.json"
#: Callback attributes saved with an epoch (the ones ``on_train_begin`` resets).
_CALLBACK_STATE = {
    "EarlyStopping": ("wait", "best", "stopped_epoch", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


@dataclass
class EpochState:
    """Where a fit in progress stopped: the next epoch to run and what the epochs so far left."""

    epoch: int
    checkpoint: str
    history: dict[str, list]
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)


def _save_arrays(path: Path, arrays: dict[str, list[np.ndarray] | None]) -> None:
    flat = {}
    for name, weights in arrays.items():
        if weights is not None:
            flat |= {f"{name}__{i:05d}": np.asarray(w) for i, w in enumerate(weights)}
    with _fs.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **flat)


def _load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, list[np.ndarray] | None]:
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, list[np.ndarray] | None] = {}
        for name in names:
            keys = sorted(key for key in data.files if key.startswith(f"{name}__"))
            out[name] = [data[key] for key in keys] if keys else None
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


class RunCheckpoints:
    """Epoch and fit checkpoints of one stage run.

    Args:
        folder: where checkpoints are read from (the chief's folder); None: off.
        fingerprint: the stage's fingerprint; a folder holding another one is cleared.
        write_folder: where this process writes (default ``folder``; a non-chief worker's own folder).
        resume: False: start over (``--no-cache``), clearing what ``folder`` holds.
    """

    def __init__(self, folder: Path | None, fingerprint: str, *, write_folder: Path | None = None, resume: bool = True):
        self.read = Path(folder) if folder is not None else None
        self.write = Path(write_folder) if write_folder is not None else self.read
        self.fingerprint = fingerprint
        self.resumed: list[str] = []
        if self.read is None:
            return
        if not resume or not self._matches(self.read):
            if self.read == self.write and self.read.exists():
                shutil.rmtree(self.read, ignore_errors=True)
            self.read_ok = False
        else:
            self.read_ok = True
        assert self.write is not None
        self.write.mkdir(parents=True, exist_ok=True)
        _fs.write_json(self.write / _FINGERPRINT, {"fingerprint": fingerprint})

    @classmethod
    def off(cls) -> RunCheckpoints:
        return cls(None, "")

    @property
    def enabled(self) -> bool:
        return self.read is not None

    def _matches(self, folder: Path) -> bool:
        try:
            return _fs.read_json(folder / _FINGERPRINT).get("fingerprint") == self.fingerprint
        except (OSError, ValueError):
            return False

    def _readable(self) -> Path | None:
        return self.read if self.enabled and self.read_ok else None

    # -- finished fits -------------------------------------------------------------------------
    def finished(self, fit: str, model) -> tuple[dict[str, list], dict[str, Any]] | None:
        """If ``fit`` finished in an earlier run: load its end weights into ``model`` and return
        ``(history, summary)``; None otherwise."""
        folder = self._readable()
        if folder is None or not (folder / f"{fit}.done.json").is_file():
            return None
        try:
            record = _fs.read_json(folder / f"{fit}.done.json")
            weights = _load_arrays(folder / f"{fit}.done.weights.npz", ("weights",))["weights"]
            model.set_weights(weights)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the checkpoint of %s in %s is unreadable (%s): running it again", fit, folder, exc)
            return None
        notice.info("resuming: %s finished in an earlier run; its weights are loaded (%d epochs)", fit, len(record["history"].get("loss", [])))
        self.resumed.append(f"{fit}: finished")
        return record["history"], record.get("summary") or {}

    def finish(self, fit: str, model, history: dict[str, list], summary: dict[str, Any] | None = None) -> None:
        """Record ``fit`` as finished (its history, summary and the model's weights now)."""
        if self.write is None:
            return
        _save_arrays(self.write / f"{fit}.done.weights.npz", {"weights": model.get_weights()})
        _fs.write_json(self.write / f"{fit}.done.json", {"history": history, "summary": summary or {}})
        for stale in self.write.glob(f"{fit}.epoch*"):
            stale.unlink(missing_ok=True)

    # -- epochs of the fit in progress ---------------------------------------------------------
    def epoch_state(self, fit: str) -> EpochState | None:
        """The last finished epoch of ``fit`` in an earlier run (None: none)."""
        folder = self._readable()
        if folder is None or not (folder / f"{fit}.epoch.json").is_file():
            return None
        try:
            record = _fs.read_json(folder / f"{fit}.epoch.json")
            name = str(record["checkpoint"])
            if not name.startswith(f"{fit}.epoch-") or "/" in name or not (folder / f"{name}.index").is_file():
                raise ValueError(f"no checkpoint files {name!r}")
            return EpochState(int(record["epoch"]), name, record["history"], record.get("callbacks") or {}, record.get("best") or {})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the epoch checkpoint of %s in %s is unreadable (%s): the fit starts over", fit, folder, exc)
            return None

    def callback(self, fit: str, state: EpochState | None, best, others: list):
        """A Keras callback (put it after ``best`` and ``others``) that restores ``state`` when the
        fit begins and saves every finished epoch."""
        checkpoints = self
        read_dir = self._readable()
        running: dict[str, list] = {key: list(values) for key, values in (state.history if state else {}).items()}

        class _EpochCheckpoint(keras().callbacks.Callback):
            def on_train_begin(self, logs=None):
                if state is None or read_dir is None:
                    return
                optimizer = self.model.optimizer
                # the slots now (Keras makes them at the first step), so they are restored here, not deferred
                with self.model.distribute_strategy.scope():
                    getattr(optimizer, "inner_optimizer", optimizer).build(self.model.trainable_variables)
                ckpt = tf().train.Checkpoint(model=self.model, optimizer=optimizer)
                ckpt.read(str(read_dir / state.checkpoint)).assert_existing_objects_matched()
                arrays = _load_arrays(read_dir / f"{state.checkpoint}.npz", ("best", "initial"))
                best.weights, best.initial = arrays["best"], arrays["initial"]
                best.best, best.best_epoch = float(state.best.get("best", np.inf)), int(state.best.get("best_epoch", -1))
                for callback in others:
                    for name, value in state.callbacks.get(type(callback).__name__, {}).items():
                        setattr(callback, name, value)
                notice.info("resuming: %s from epoch %d (model, optimizer state and schedule restored)", fit, state.epoch + 1)
                checkpoints.resumed.append(f"{fit}: from epoch {state.epoch + 1}")

            def on_epoch_end(self, epoch, logs=None):
                for key, value in (logs or {}).items():
                    running.setdefault(key, []).append(float(value))
                folder = checkpoints.write
                if folder is None:
                    return
                name = f"{fit}.epoch-{epoch + 1:04d}"
                tf().train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(str(folder / name))
                _save_arrays(folder / f"{name}.npz", {"best": best.weights, "initial": best.initial})
                record = {
                    "epoch": epoch + 1,
                    "checkpoint": name,
                    "history": running,
                    "best": {"best": float(best.best), "best_epoch": int(best.best_epoch)},
                    "callbacks": {
                        type(cb).__name__: {n: _plain(getattr(cb, n)) for n in _CALLBACK_STATE.get(type(cb).__name__, ()) if hasattr(cb, n)}
                        for cb in others
                    },
                }
                _fs.write_json(folder / f"{fit}.epoch.json", record)  # the epoch counts once this is written
                for old in folder.glob(f"{fit}.epoch-*"):
                    if not old.name.startswith(name):
                        old.unlink(missing_ok=True)

        return _EpochCheckpoint()

    def clear(self) -> None:
        """The stage finished: its checkpoints are no longer needed."""
        for folder in {self.read, self.write} - {None}:
            if folder is not None and folder.exists() and folder == self.write:
                shutil.rmtree(folder, ignore_errors=True)
