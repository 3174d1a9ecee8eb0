"""The split an artifact was validated on: recorded when it is built, selected again by ``edgetl eval --split``.

``edgetl build`` and ``edgetl export`` measure an artifact's accuracy on the validation part of the
training folder (:func:`edgetl.data.split.load_split`: a seeded, stratified split, or a separate
``val_path`` folder). :func:`split_record` is what they write into ``edgetl.json`` as ``data_split``:
the seed, the validation fraction, and the files of each part relative to the folder they were read
from. :func:`select` picks exactly those files out of a folder again, and says in one line when the
folder has changed since (files missing, files added). An artifact that records no file list (made
before ``data_split`` existed) falls back to recomputing the split from the seed and fraction its
``config`` records, which is exact only for an unchanged folder; the note says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.core.errors import ConfigError, DataError
from edgetl.data.split import split_indices

if TYPE_CHECKING:
    from edgetl.core.config import DataConfig
    from edgetl.data.split import SplitData

#: ``edgetl eval --split`` choices: the whole folder (default), or one part of the build's split.
SPLITS = ("all", "train", "val")
_LISTED = 3  # file names quoted in the one-line change note; the rest are counted


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def files_digest(files: Sequence[str]) -> str:
    """SHA-256 of the sorted relative paths: a quick "same file list?" check."""
    return hashlib.sha256("\n".join(sorted(files)).encode("utf-8")).hexdigest()


def split_record(data: DataConfig, split: SplitData) -> dict[str, Any]:
    """``edgetl.json``'s ``data_split``: how the validation images were chosen, and which they were.

    Paths are relative to the folder each part was read from (``path``, or ``val_path`` for the
    validation part when one was given), ``/``-separated.
    """
    root = Path(data.path) if data.path is not None else Path(".")
    val_root = Path(data.val_path) if data.val_path is not None else root
    train_files = [_relative(p, root) for p in split.train.paths]
    val_files = [_relative(p, val_root) for p in split.val.paths]
    return {
        "path": str(root),
        "val_path": str(data.val_path) if data.val_path is not None else None,
        "seed": int(data.seed),
        "val_split": float(data.val_split),
        "train_images": len(train_files),
        "val_images": len(val_files),
        "files_sha256": files_digest(train_files + val_files),
        "train_files": train_files,
        "val_files": val_files,
    }


@dataclass(frozen=True)
class Selection:
    """Which rows of a loaded folder belong to the asked split.

    Attributes:
        indices: rows to keep, ascending.
        note: one line when the folder differs from the build's (or the split had to be recomputed); else None.
    """

    indices: np.ndarray
    note: str | None = None


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:_LISTED])
    more = len(names) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def check_split(split: str) -> str:
    """Raises: ConfigError: not one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"Received --split {split!r}; pass one of {', '.join(SPLITS)}")
    return split


def select(metadata: dict[str, Any], data_dir: Path, paths: Sequence[Path], labels: np.ndarray, split: str) -> Selection:
    """The rows of ``paths`` (the readable images of ``data_dir``, as loaded) in ``split`` of the build.

    Args:
        metadata: the artifact's ``edgetl.json`` (its ``data_split``, else its ``config``'s data settings).
        data_dir: the folder ``paths`` were read from.
        paths, labels: the loaded images and their class indices.
        split: ``all``, ``train`` or ``val``.

    Raises:
        ConfigError: ``split`` unknown, or the artifact records no split (a model file alone, or not built by edgetl).
        DataError: none of the recorded images of ``split`` is in ``data_dir``.
    """
    check_split(split)
    if split == "all":
        return Selection(np.arange(len(paths), dtype=np.int64))
    data_dir = Path(data_dir)
    current = [_relative(p, data_dir) for p in paths]
    record = metadata.get("data_split") if isinstance(metadata, dict) else None
    if isinstance(record, dict) and isinstance(record.get("val_files"), list) and isinstance(record.get("train_files"), list):
        return _select_recorded(record, data_dir, current, split)
    data = (metadata.get("config") or {}).get("data") if isinstance(metadata, dict) else None
    if isinstance(data, dict) and data.get("val_path") is None and "val_split" in data and "seed" in data:
        train_idx, val_idx = split_indices(labels, float(data["val_split"]), int(data["seed"]))
        chosen = val_idx if split == "val" else train_idx
        note = (
            f"this artifact records no file list: the {split} split was recomputed from seed {data['seed']} and "
            f"val_split {data['val_split']}, which matches the build only if {data_dir} is unchanged"
        )
        return Selection(np.asarray(chosen, dtype=np.int64), note)
    raise ConfigError(
        f"--split {split} needs the split the artifact was built with (data_split or config in its edgetl.json), "
        "and this artifact records none: pass an artifact folder edgetl build/export wrote, or use --split all"
    )


def _select_recorded(record: dict[str, Any], data_dir: Path, current: list[str], split: str) -> Selection:
    wanted = [str(f) for f in record[f"{split}_files"]]
    separate_val = record.get("val_path") is not None
    # the files the build read from this folder: both parts, or with a separate val folder only the asked part
    expected = set(wanted) if separate_val else {str(f) for f in record["train_files"]} | {str(f) for f in record["val_files"]}
    present = set(current)
    missing = sorted(expected - present)
    added = sorted(present - expected)
    wanted_set = set(wanted)
    indices = np.asarray([i for i, name in enumerate(current) if name in wanted_set], dtype=np.int64)
    name = "validation" if split == "val" else "training"
    if indices.size == 0:
        raise DataError(
            f"none of the {len(wanted)} {name} images recorded in the artifact's edgetl.json is in {data_dir}; "
            f"pass the folder it was built from ({record.get('val_path') if split == 'val' and separate_val else record.get('path')})"
        )
    note = None
    if missing or added:
        parts = []
        if missing:
            parts.append(f"{len(missing)} file(s) missing ({_listed(missing)})")
        if added:
            parts.append(f"{len(added)} file(s) added ({_listed(added)}, not used)")
        note = (
            f"{data_dir} changed since the build: {'; '.join(parts)}; evaluating the {indices.size} of {len(wanted)} "
            f"recorded {name} images still there"
        )
    return Selection(indices, note)
