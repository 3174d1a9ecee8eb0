"""The decode cache: each image folder decoded once into a memory-mapped uint8 array, keyed by content.

An entry is a ``.npy`` file of shape ``(N, height, width, channels)`` and a JSON sidecar, under
``decoded/`` in the cache folder (:func:`edgetl.core.digests.cache_root`: ``$EDGETL_CACHE_DIR``, else
``~/.cache/edgetl``). Its key hashes the SHA-256 of every candidate image file in scan order, the
input size, resize filter, channel count, pixel limit, Pillow version and :data:`FORMAT_VERSION`:
changing, adding or removing one image, or asking for another size, is another entry; renaming or
touching files is not. File digests are memoised (:func:`edgetl.core.digests.file_digests`), so a
warm load stats each file and maps the array: nothing is decoded or copied into memory, and a data
set larger than memory is read page by page as the input pipeline asks for rows.

Images are decoded :data:`CHUNK` at a time straight into the entry's file, so building an entry
needs memory for one chunk, not for the data set. Files are written under temporary names and
renamed (:func:`edgetl.core.fs.atomic_path`); the array is written before its sidecar, and a sidecar
records the array's size and mtime. An entry that does not check out on load (unreadable or
mismatched sidecar, short or replaced array, wrong shape or dtype) is ignored with a warning and
rebuilt. Arrays are loaded with ``allow_pickle=False``.

:func:`subset_entry` stores rows of an entry in a new order (a train/validation split's two parts,
one after the other), so that each part is itself a memory map rather than an in-memory copy.
Entries are never evicted: delete the ``decoded`` folder to reclaim the space.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from edgetl.core.contract import as_hw
from edgetl.core.digests import cache_root, file_digests
from edgetl.core.fs import atomic_path, write_json
from edgetl.data.folder import FolderScan, finish_scan, list_candidates
from edgetl.data.images import Size, SkippedFile, decode_all, max_image_pixels, resample_filter

log = logging.getLogger(__name__)

#: Bumped whenever what an entry holds, or how images are decoded into it, changes.
FORMAT_VERSION = 1
#: Images decoded at a time while an entry is built (bounds the memory building needs).
CHUNK = 256
#: Rows copied at a time when an entry is re-ordered into a subset entry.
_COPY_ROWS = 1024


def decoded_dir() -> Path:
    """The folder holding decode cache entries."""
    return cache_root() / "decoded"


@dataclass
class CachedFolder:
    """A scanned and decoded folder.

    Attributes:
        scan: what the folder holds (as :func:`edgetl.data.folder.scan_and_load` reports it).
        x: uint8 pixels of ``scan.paths``, a read-only ``np.memmap`` (an in-memory array only when the
            cache folder cannot be written).
        key: the entry's key.
        hit: the entry was found (no image decoded).
        decoded: how many image files were decoded.
    """

    scan: FolderScan
    x: np.ndarray
    key: str
    hit: bool
    decoded: int


def entry_key(digests: list[str], input_size: Size, resize: str, channels: int, max_pixels: int | None) -> str:
    """The key of the entry for image files with these content digests (in order) and decoding settings."""
    payload = {
        "format": FORMAT_VERSION,
        "size": list(as_hw(input_size)),
        "resize": resize.lower(),
        "channels": channels,
        "max_pixels": max_pixels,
        "pillow": PIL.__version__,
        "files": digests,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_folder(
    root: str | Path,
    *,
    strict: bool,
    class_names: list[str] | None,
    input_size: Size,
    resize: str = "bilinear",
    channels: int = 3,
) -> CachedFolder:
    """Scan ``root`` and load its images from the decode cache, decoding (and caching) them on a miss.

    The same contract as :func:`edgetl.data.folder.scan_and_load` with ``verify=True`` and
    ``require_usable=True``: the same classes, paths, labels, skipped files, checks and errors.

    Raises:
        DataError: as :func:`~edgetl.data.folder.scan_and_load`.
        ConfigError: unknown ``resize``.
    """
    root = Path(root)
    resample = resample_filter(resize)
    names, folder_classes, candidates, candidate_labels, skipped = list_candidates(root, class_names)

    limit = max_image_pixels()
    key = entry_key(_digests(candidates), input_size, resize, channels, limit)
    hw = as_hw(input_size)
    entry = _load_entry(key, len(candidates), (*hw, channels))
    hit = entry is not None
    if entry is None:
        entry = _build_entry(key, candidates, input_size, resample, channels)
    x, meta = entry
    unusable = {int(i): reason for i, reason in meta["skipped"]}
    unreadable = [SkippedFile(p, unusable[i]) for i, p in enumerate(candidates) if i in unusable]
    paths = [p for i, p in enumerate(candidates) if i not in unusable]
    labels = [label for i, label in enumerate(candidate_labels) if i not in unusable]
    scan = _finish_scan(root, names, folder_classes, class_names, paths, labels, skipped, unreadable, meta, strict=strict)
    return CachedFolder(scan=scan, x=x, key=key, hit=hit, decoded=0 if hit else len(candidates))


def _digests(paths: list[Path]) -> list[str]:
    try:
        return file_digests(paths)
    except OSError:
        pass
    found = []
    for path in paths:  # an unreadable file is skipped by the decoder: its key part names why
        try:
            found.append(file_digests([path])[0])
        except OSError as exc:
            found.append(f"unreadable:{type(exc).__name__}:{exc.errno}")
    return found


def _finish_scan(
    root: Path,
    names: list[str],
    folder_classes: list[str],
    class_names: list[str] | None,
    paths: list[Path],
    labels: list[int],
    skipped: list[SkippedFile],
    unreadable: list[SkippedFile],
    meta: dict[str, Any],
    *,
    strict: bool,
) -> FolderScan:
    sizes = collections.Counter({(int(w), int(h)): int(n) for w, h, n in meta["sizes"]})
    modes = collections.Counter({str(m): int(n) for m, n in meta["modes"].items()})
    return finish_scan(root, names, folder_classes, class_names, paths, labels, skipped, unreadable, sizes, modes, strict=strict)


# ----------------------------------------------------------------------------- entries on disk


def _paths(key: str) -> tuple[Path, Path]:
    folder = decoded_dir()
    return folder / f"{key}.npy", folder / f"{key}.json"


def _load_entry(key: str, count: int, row_shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The entry ``key`` (array, sidecar) if present and sound; None (with a warning if it was unsound)."""
    npy, sidecar = _paths(key)
    if not sidecar.is_file() and not npy.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
            raise ValueError("sidecar is not this entry's")
        if meta.get("count") != count:
            raise ValueError(f"sidecar lists {meta.get('count')} files, the folder has {count}")
        rows = count - len(meta["skipped"])
        st = npy.stat()
        if [st.st_size, st.st_mtime_ns] != meta.get("npy_stat"):
            raise ValueError("array file was replaced or changed after its sidecar was written")
        x = np.load(npy, mmap_mode="r", allow_pickle=False)
        if x.dtype != np.uint8 or x.shape != (rows, *row_shape):
            raise ValueError(f"array is {x.dtype} {x.shape}, expected uint8 {(rows, *row_shape)}")
        _check_meta(meta)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("decode cache entry %s is unusable (%s); decoding the images again", npy, exc)
        return None
    return x, meta


def _check_meta(meta: dict[str, Any]) -> None:
    for item in meta["skipped"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str)):
            raise ValueError("malformed skipped list")
    for item in meta["sizes"]:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(v, int) for v in item)):
            raise ValueError("malformed sizes")
    if not isinstance(meta["modes"], dict):
        raise ValueError("malformed modes")


def _build_entry(
    key: str, candidates: list[Path], input_size: Size, resample: Any, channels: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode ``candidates`` chunk by chunk into a new entry; an in-memory array if it cannot be written."""
    npy, sidecar = _paths(key)
    shape = (len(candidates), *as_hw(input_size), channels)
    try:
        with atomic_path(npy) as tmp:
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            meta = _decode_into(target, candidates, input_size, resample, channels)
            target.flush()
            del target
            if meta["skipped"]:
                _compact(tmp, meta["skipped"])
        st = npy.stat()
        meta.update({"format": FORMAT_VERSION, "key": key, "count": len(candidates), "npy_stat": [st.st_size, st.st_mtime_ns]})
        write_json(sidecar, meta)
        return np.load(npy, mmap_mode="r", allow_pickle=False), meta
    except OSError as exc:
        log.warning("cannot write the decode cache in %s (%s); decoding into memory (set EDGETL_CACHE_DIR to a writable folder)", npy.parent, exc)
    in_memory = np.empty(shape, dtype=np.uint8)
    meta = _decode_into(in_memory, candidates, input_size, resample, channels)
    keep = np.setdiff1d(np.arange(len(candidates)), [i for i, _ in meta["skipped"]])
    return (in_memory[keep] if meta["skipped"] else in_memory), meta


def _decode_into(target: np.ndarray, candidates: list[Path], input_size: Size, resample: Any, channels: int) -> dict[str, Any]:
    """Decode into ``target`` row by row (row i: candidate i; a skipped file's row stays as it was)."""
    skipped: list[list[Any]] = []
    sizes: collections.Counter[tuple[int, int]] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    for start in range(0, len(candidates), CHUNK):
        results = decode_all(candidates[start : start + CHUNK], input_size, resample, True, channels)
        for offset, result in enumerate(results):
            if isinstance(result, SkippedFile):
                skipped.append([start + offset, result.reason])
                continue
            target[start + offset] = result.pixels
            sizes[result.size] += 1
            modes[result.mode] += 1
    return {"skipped": skipped, "sizes": [[w, h, n] for (w, h), n in sorted(sizes.items())], "modes": dict(modes)}


def _compact(npy: Path, skipped: list[list[Any]]) -> None:
    """Drop the rows of skipped files from the array file ``npy`` (rewritten in place, chunk by chunk)."""
    full = np.load(npy, mmap_mode="r", allow_pickle=False)
    keep = np.setdiff1d(np.arange(full.shape[0]), [i for i, _ in skipped])
    compact = npy.with_name(npy.name + ".compact.npy")
    try:
        out = np.lib.format.open_memmap(compact, mode="w+", dtype=np.uint8, shape=(keep.size, *full.shape[1:]))
        for start in range(0, keep.size, _COPY_ROWS):
            out[start : start + _COPY_ROWS] = full[keep[start : start + _COPY_ROWS]]
        out.flush()
        del out, full
        os.replace(compact, npy)
    finally:
        compact.unlink(missing_ok=True)


def subset_entry(key: str, x: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Rows ``x[part]`` of entry ``key`` for each index array in ``parts``, each a memory map.

    The parts are stored one after the other in one derived entry (keyed by ``key`` and the indices),
    copied chunk by chunk, so neither building nor using it holds the data set in memory.
    """
    indices = [np.asarray(p, dtype=np.int64) for p in parts]
    digest = hashlib.sha256(key.encode())
    for part in indices:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part.tobytes())
    sub_key = digest.hexdigest()
    order = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    npy, sidecar = _paths(sub_key)
    found = _load_subset(sub_key, key, (order.size, *x.shape[1:]))
    if found is None:
        try:
            with atomic_path(npy) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(order.size, *x.shape[1:]))
                for start in range(0, order.size, _COPY_ROWS):
                    rows = order[start : start + _COPY_ROWS]
                    out[start : start + rows.size] = x[np.sort(rows)][np.argsort(np.argsort(rows))]
                out.flush()
                del out
            st = npy.stat()
            write_json(sidecar, {"format": FORMAT_VERSION, "key": sub_key, "parent": key, "rows": int(order.size), "npy_stat": [st.st_size, st.st_mtime_ns]})
            found = np.load(npy, mmap_mode="r", allow_pickle=False)
        except OSError as exc:
            log.warning("cannot write the decode cache in %s (%s); the split is copied into memory", npy.parent, exc)
            return [np.asarray(x[part]) for part in indices]
    views, start = [], 0
    for part in indices:
        views.append(found[start : start + part.size])
        start += part.size
    return views


def _load_subset(sub_key: str, parent: str, shape: tuple[int, ...]) -> np.ndarray | None:
    npy, sidecar = _paths(sub_key)
    if not sidecar.is_file() and not npy.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != sub_key or meta.get("parent") != parent:
            raise ValueError("sidecar is not this entry's")
        st = npy.stat()
        if [st.st_size, st.st_mtime_ns] != meta.get("npy_stat"):
            raise ValueError("array file was replaced or changed after its sidecar was written")
        x = np.load(npy, mmap_mode="r", allow_pickle=False)
        if x.dtype != np.uint8 or x.shape != shape:
            raise ValueError(f"array is {x.dtype} {x.shape}, expected uint8 {shape}")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("decode cache entry %s is unusable (%s); rebuilding it", npy, exc)
        return None
    return x
