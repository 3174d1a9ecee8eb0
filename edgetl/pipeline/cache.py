"""The build's stage cache: a stage folder (``float/``, ``qat/``) is reused by a later ``build`` only
when its ``edgetl.json`` records the fingerprint of the configuration (and, for later stages, the
exact model file) this build would make it from, and its model file is there."""

from __future__ import annotations

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
