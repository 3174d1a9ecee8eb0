"""The build's stage cache: a stage folder (``float/``, ``qat/``) is reused by a later ``build`` only
when its ``edgetl.json`` records the fingerprint of the configuration (and, for later stages, the
exact model file) this build would make it from, and its model file is there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgetl.core import fs as _fs


def reusable(folder: Path, stage_fp: str, model_file: str) -> bool:
    """Whether ``folder`` holds a finished stage with fingerprint ``stage_fp`` and its ``model_file``."""
    marker = folder / _fs.MARKER
    if not (marker.is_file() and (folder / model_file).is_file()):
        return False
    try:
        return _fs.read_json(marker).get("fingerprint") == stage_fp
    except (OSError, ValueError):
        return False


#: The stage cache's folder inside a build folder ``<out>/<name>/``.
CACHE_DIR = ".edgetl-cache"
#: Finished entries kept per stage (the newest): the current build's and the one before it.
KEEP_PER_STAGE = 2


class StageCache:
    """Finished stages (``train-<fingerprint>/``, ``qat-<fingerprint>/``) and the epoch checkpoints
    of unfinished ones (``<stage>-<fingerprint>.epochs/``) in ``<root>/.edgetl-cache/``.

    An entry is a copy of the stage folder (hard links where the filesystem allows: no extra space)
    written under a temporary name and renamed when complete. ``enabled`` False (``--no-cache``):
    nothing is looked up or resumed (finished stages are still stored). A non-``writer`` (a
    multi-worker task other than the chief) reads the cache but never writes it.
    """

    def __init__(self, root: Path, *, writer: bool = True, enabled: bool = True):
        self.folder = Path(root) / CACHE_DIR
        self.writer = writer
        self.enabled = enabled
        self.record: dict[str, dict] = {}

    def entry(self, stage: str, stage_fp: str) -> Path:
        return self.folder / f"{stage}-{stage_fp}"

    def checkpoint_dir(self, stage: str, stage_fp: str) -> Path:
        return self.folder / f"{stage}-{stage_fp}.epochs"

    def lookup(self, stage: str, stage_fp: str, model_file: str) -> Path | None:
        """The cached finished stage with this fingerprint, or None."""
        if not self.enabled:
            return None
        entry = self.entry(stage, stage_fp)
        return entry if reusable(entry, stage_fp, model_file) else None

    def store(self, stage: str, stage_fp: str, folder: Path) -> None:
        """Keep the finished stage ``folder``; drop the stage's checkpoints and its oldest entries."""
        if not self.writer:
            return
        entry = self.entry(stage, stage_fp)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not entry.exists():
            with _fs.atomic_path(entry) as tmp:
                shutil.copytree(folder, tmp, copy_function=link_or_copy)
        shutil.rmtree(self.checkpoint_dir(stage, stage_fp), ignore_errors=True)
        entries = sorted(
            (p for p in self.folder.glob(f"{stage}-*") if p.is_dir() and not p.name.endswith(".epochs") and p != entry),
            key=lambda p: p.stat().st_mtime, reverse=True,
        )
        for old in entries[KEEP_PER_STAGE - 1 :]:
            shutil.rmtree(old, ignore_errors=True)

    def note(self, stage: str, **fields) -> None:
        """What happened to ``stage`` in this build (for ``cache`` in ``edgetl.json``)."""
        self.record.setdefault(stage, {}).update(fields)


def link_or_copy(src: str, dst: str) -> str:
    """A hard link (instant, no extra space; the old folder's link goes when it is removed), else a copy."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst
