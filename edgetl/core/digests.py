"""Content digests of files (SHA-256 of their bytes), memoised so that a second look only stats them.

The memo lives in the edgetl cache folder (:func:`cache_root`: ``$EDGETL_CACHE_DIR``, else
``~/.cache/edgetl``) as a small SQLite table keyed by absolute path and holding the file's size,
``mtime_ns``, ``ctime_ns``, inode and device when it was hashed. A file whose stat still matches is
not read again. ``ctime`` is part of the key because user space cannot set it: a file rewritten
with its size and ``mtime`` restored (``os.utime``) still gets a new ``ctime`` and is hashed again.

As git does for its index, a file changed less than :data:`RACY_SECONDS` before it was hashed is
not memoised: on a file system with coarse timestamps a second write within the same tick would
leave its stat unchanged. A memo that cannot be opened or written (a read-only home, a corrupt
database) only costs speed: digests are then computed every time, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment variable naming edgetl's cache folder (decoded images, the digest memo).
CACHE_ENV = "EDGETL_CACHE_DIR"
#: A file whose mtime or ctime is this recent when hashed is not memoised (see the module docstring).
RACY_SECONDS = 2.0
_MEMO_NAME = "digests-v1.sqlite"
_BLOCK = 1 << 20
_warned: set[str] = set()


def cache_root() -> Path:
    """edgetl's cache folder: ``$EDGETL_CACHE_DIR`` when set, else ``~/.cache/edgetl`` (not created here)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgetl"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _warn_once(message: str, *args: object) -> None:
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _open_memo(folder: Path) -> sqlite3.Connection | None:
    """The memo database in ``folder`` (None when it cannot be used); a corrupt one is replaced once."""
    path = folder / _MEMO_NAME
    for attempt in range(2):
        conn = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30.0)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS digests (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                "ctime_ns INTEGER, inode INTEGER, dev INTEGER, sha256 TEXT)"
            )
            conn.execute("SELECT count(*) FROM digests WHERE path = x''").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if attempt == 0 and path.is_file() and "locked" not in str(exc).lower():
                _warn_once("file digest memo %s is unreadable (%s); starting a new one", path, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            _warn_once("file digest memo %s cannot be used (%s); hashing every file each time", path, exc)
        except OSError as exc:
            _warn_once("file digest memo in %s cannot be used (%s); hashing every file each time", folder, exc)
        return None
    return None


def file_digests(paths: Sequence[Path], *, memo: bool = True, workers: int | None = None) -> list[str]:
    """SHA-256 hex digest of each file's bytes, in order.

    Args:
        paths: files to hash.
        memo: look digests up in (and add them to) the memo in :func:`cache_root`, so that files whose
            stat is unchanged are not read again.
        workers: threads hashing files (hashlib releases the GIL); None: up to 8, at most the CPU count.

    Returns:
        One 64-character hex digest per path.

    Raises:
        OSError: a file cannot be stat'ed or read.
    """
    paths = [Path(p) for p in paths]
    absolute = [os.path.abspath(p) for p in paths]
    stats = [_stat_key(os.stat(p)) for p in absolute]
    digests: list[str | None] = [None] * len(paths)
    if not memo:
        return _hash_missing(absolute, digests, workers)
    conn = _open_memo(cache_root())
    try:
        if conn is not None:
            for i, (path, key) in enumerate(zip(absolute, stats, strict=True)):
                row = conn.execute(
                    "SELECT size, mtime_ns, ctime_ns, inode, dev, sha256 FROM digests WHERE path = ?", (os.fsencode(path),)
                ).fetchone()
                if row is not None and tuple(row[:5]) == key:
                    digests[i] = row[5]
        missing = [i for i, d in enumerate(digests) if d is None]
        result = _hash_missing(absolute, digests, workers)
        if conn is not None and missing:
            now = time.time_ns()
            racy = int(RACY_SECONDS * 1e9)
            rows = []
            for i in missing:
                after = _stat_key(os.stat(absolute[i]))
                # Changed while it was read, or too recent to trust the stat: hash it again next time.
                if after == stats[i] and now - max(after[1], after[2]) >= racy:
                    rows.append((os.fsencode(absolute[i]), *after, result[i]))  # bytes: any file name, UTF-8 or not
            try:
                with conn:  # one transaction
                    conn.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.DatabaseError as exc:
                _warn_once("cannot add to the file digest memo (%s); hashing again next time", exc)
    except sqlite3.DatabaseError as exc:  # the memo broke while being read: the digests themselves are still right
        _warn_once("file digest memo failed (%s); hashing without it", exc)
        return _hash_missing(absolute, [None] * len(paths), workers)
    finally:
        if conn is not None:
            conn.close()
    return result


def _hash_missing(absolute: list[str], digests: list[str | None], workers: int | None) -> list[str]:
    missing = [i for i, d in enumerate(digests) if d is None]
    count = max(1, min(workers or 8, os.cpu_count() or 1, len(missing)))
    if count == 1:
        found = [sha256_file(Path(absolute[i])) for i in missing]
    else:
        with ThreadPoolExecutor(count) as pool:
            found = list(pool.map(lambda i: sha256_file(Path(absolute[i])), missing))
    for i, digest in zip(missing, found, strict=True):
        digests[i] = digest
    return [d for d in digests if d is not None]
