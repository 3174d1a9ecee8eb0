"""Files that never look finished before they are: temporary names, then an atomic rename.

Temporary siblings are named ``.<name>.tmp-<pid>[<suffix>]`` (and ``.<name>.old-<pid>`` while a
folder is swapped): a process killed by SIGKILL or SIGTERM leaves them behind, and the next write
into the same folder removes those whose process is gone (:func:`clean_stale_temps`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgetl.core.errors import OutputExistsError

log = logging.getLogger(__name__)

#: The file whose presence marks a finished edgetl output folder (written last).
MARKER = "edgetl.json"

#: edgetl's own temporary names: ``.model.tmp-123.tflite``, ``.tflite-int8.tmp-123``, ``.float.old-123``.
_TEMP_NAME = re.compile(r"^\..+\.(?:tmp|old)-(?P<pid>[0-9]{1,10})(?:\.[A-Za-z0-9_]{1,16})?$")


def temp_name(path: Path) -> Path:
    """A sibling name that keeps the suffix (Keras and converters check suffixes)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _dir_temp_name(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


#: One part of a temporary path: ``.<name>.tmp-<pid>`` (a staged folder) or ``.<stem>.tmp-<pid><suffix>`` (a file).
_TEMP_PART = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9]{1,10}(?P<suffix>\.[A-Za-z0-9_]{1,16})?$")


def final_path(path: Path) -> Path:
    """The path a temporary one will have once renamed (``build/.tflite-int8.tmp-17/model.tflite`` ->
    ``build/tflite-int8/model.tflite``): what messages and metadata written while a folder is
    staged must name, since the temporary name is gone when the user reads them."""
    parts = [m["name"] + (m["suffix"] or "") if (m := _TEMP_PART.match(part)) else part for part in Path(path).parts]
    return Path(*parts) if parts else Path(path)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    if pid <= 0:
        return True  # never ours to judge: 0 and negatives address process groups
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove edgetl temporary siblings in ``folder`` left by processes that no longer exist.

    Only names of edgetl's own temporary pattern are touched, only directly in ``folder``, and
    only when the process id in the name is not alive (a live process is still writing them).

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.debug("cannot remove stale temporary %s: %s", entry, exc)
            continue
        log.info("removed %s, left by process %s that no longer runs", entry, match["pid"])
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
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


def check_output_dir(out: Path, fingerprint: str, *, force: bool, what: str = "build") -> Path:
    """Refuse ``out`` unless it is missing, empty, ours, holds the same run, or ``force`` is on.

    Nothing is deleted: a forced run replaces the folder only once it is complete.

    Raises:
        OutputExistsError: ``out`` is a file, holds a different build, or files edgetl did not write.
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
    return out


def prepare_output_dir(out: Path, fingerprint: str, *, force: bool, what: str = "build") -> Path:
    """Make ``out`` ready for a run whose resolved config hashes to ``fingerprint``.

    A missing or empty folder is created; a folder holding the same run (same fingerprint in
    its ``edgetl.json``) is reused; anything else is refused unless ``force``.

    Raises:
        OutputExistsError: ``out`` holds a different build, or files edgetl did not write.
    """
    out = check_output_dir(out, fingerprint, force=force, what=what)
    if force and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished folder ``tmp`` at ``path``; the previous one is removed only afterwards."""
    old = None
    if path.exists() or path.is_symlink():
        old = _dir_temp_name(path, "old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block succeeds it replaces ``path`` whole."""
    with staged_dirs() as stage:
        yield stage(path)


@contextlib.contextmanager
def staged_dirs() -> Iterator[Callable[[Path], Path]]:
    """Write several folders as one: ``stage(path)`` gives an empty temporary sibling of ``path``.

    When the block succeeds, each staged folder replaces its ``path`` in the order staged (the
    previous folder stays in place until its replacement is complete); when it fails or is
    interrupted, the temporary folders are removed and every ``path`` keeps what it held.
    """
    staged: list[tuple[Path, Path]] = []

    def stage(path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(path.parent)
        tmp = _dir_temp_name(path)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        staged.append((tmp, path))
        return tmp

    try:
        yield stage
        for tmp, path in staged:
            _replace_dir(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- output locks

#: Locks this process holds: lock file -> (file descriptor, depth); re-entrant within a process.
_HELD: dict[Path, list[int]] = {}


def lock_path(out: Path) -> Path:
    """The lock file of output folder ``out``: a hidden sibling, so swapping ``out`` never drops it."""
    out = Path(out).absolute()
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold an exclusive lock on output folder ``out`` for the block.

    ``flock`` on a sibling lock file: the kernel releases it when its holder exits, however it
    exits, so a crashed run never leaves it stuck. Re-entrant within one process.

    Raises:
        OutputExistsError: another process holds the lock on ``out``.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (edgetl's writers are atomic all the same)
        yield Path(out)
        return
    lock = lock_path(out)
    held = _HELD.get(lock)
    if held is not None:
        held[1] += 1
        try:
            yield Path(out)
        finally:
            held[1] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            except OSError:
                owner = "unknown"
            raise OutputExistsError(
                f"{out} is being written by another edgetl process (pid {owner}); wait for it or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[lock] = [fd, 1]
        try:
            yield Path(out)
        finally:
            del _HELD[lock]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock
