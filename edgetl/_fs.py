"""Files that never look finished before they are: temporary names, then an atomic rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetl.errors import OutputExistsError

#: The file whose presence marks a finished edgetl output folder (written last).
MARKER = "edgetl.json"


def temp_name(path: Path) -> Path:
    """A sibling name that keeps the suffix (Keras and converters check suffixes)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


#: What an interrupted run of ours can leave before its marker is written: safe to reuse.
OUR_OUTPUTS = frozenset(
    {"logs", "model.keras", "qat_model.h5", "model.tflite", "labels.txt", "history.json", "training_curves.png", "report.md"}
)


def _only_our_leftovers(out: Path) -> bool:
    if (out / MARKER).exists():
        return False
    return all(p.name.startswith(".") or p.name in OUR_OUTPUTS for p in out.iterdir())


def prepare_output_dir(out: Path, fingerprint: str, *, force: bool, what: str = "build") -> Path:
    """Make ``out`` ready for a run whose resolved config hashes to ``fingerprint``.

    A missing or empty folder is created; a folder holding the same run (same fingerprint in
    its ``edgetl.json``) is reused; anything else is refused unless ``force``.

    Raises:
        OutputExistsError: ``out`` holds a different build, or files edgetl did not write.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; pass a folder for --out")
    if out.is_dir() and not force and not _only_our_leftovers(out):
        marker = out / MARKER
        existing = None
        if marker.is_file():
            try:
                existing = read_json(marker).get("fingerprint")
            except (OSError, ValueError):
                existing = None
        if existing != fingerprint:
            holds = "a different " + what if marker.is_file() else "files that are not an edgetl " + what
            raise OutputExistsError(f"output folder {out} already holds {holds}; pass --force to replace it or choose another --out")
    if force and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block succeeds it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
