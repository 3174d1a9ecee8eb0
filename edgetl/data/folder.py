"""A data folder's classes and images: the layout rules, the scan, and what is wrong with it.

A data folder holds one subfolder per class (sorted by name; hidden ones, starting with ``.``, are
ignored); images are found recursively inside each class folder, and files at the top level are
ignored. :func:`scan_folder` lists what a folder holds (``edgetl data check`` uses
:func:`check_folder`, which reports problems instead of raising); :func:`scan_and_load` also
decodes every image once (:mod:`edgetl.data.split` builds on it). Pillow and numpy only.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.core.errors import DataError
from edgetl.core.text import CLASS_NAME_RULE, class_name_problem, shown
from edgetl.data.images import (
    IMAGE_SUFFIXES,
    Size,
    SkippedFile,
    decode_all,
    describe_skipped,
    resample_filter,
    stack_pixels,
)

logger = logging.getLogger(__name__)


#: ``data check --strict``: a class needs at least this many readable images ...
STRICT_MIN_IMAGES = 10
#: ... and the largest class at most this many times the smallest.
STRICT_MAX_IMBALANCE = 10.0


@dataclass
class FolderScan:
    """What a data folder holds: its classes, readable images and the files that were skipped.

    Attributes:
        root: the scanned folder.
        class_names: class names; ``labels`` index into this list.
        paths: readable images, class by class, each class's files in sorted path order.
        labels: int64 class index of each path.
        skipped: files that were not used and why.
        sizes: how many readable images have each ``(width, height)``.
        modes: how many readable images have each Pillow mode (``"RGB"``, ``"L"``, ...).
        counts: readable images per class name (every name in ``class_names``, possibly 0).
    """

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped: list[SkippedFile] = field(default_factory=list)
    sizes: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    modes: collections.Counter[str] = field(default_factory=collections.Counter)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def imbalance(self) -> float:
        """Largest class count divided by the smallest (``inf`` when a class is empty, 1.0 with no classes)."""
        values = list(self.counts.values())
        if not values:
            return 1.0
        if min(values) == 0:
            return float("inf")
        return max(values) / min(values)

    @property
    def empty_classes(self) -> list[str]:
        """Class names with no readable image."""
        return [name for name, count in self.counts.items() if count == 0]

    def problems(self) -> list[str]:
        """One line per thing that would stop or weaken training (empty for a usable folder), as
        ``edgetl data check`` reports them; unreadable files are listed in ``skipped``."""
        found = []
        if self.empty_classes:
            found.append(f"class folder(s) with no readable images: {', '.join(self.empty_classes)} (training will refuse them)")
        if len(self.class_names) < 2:
            found.append("fewer than 2 classes: a classifier needs at least 2")
        if not self.empty_classes and self.imbalance > 3:  # an empty class is reported above, not as imbalance
            found.append(f"classes are imbalanced ({self.imbalance:.1f}x): consider more images for the small ones")
        return found

    def strict_failures(self, *, min_images: int = STRICT_MIN_IMAGES, max_imbalance: float = STRICT_MAX_IMBALANCE) -> list[str]:
        """What ``edgetl data check --strict`` fails on (empty for a folder fit to train on), one line each:
        unreadable files, fewer than 2 classes, empty classes or classes under ``min_images``, and a
        largest/smallest class ratio over ``max_imbalance``."""
        found = []
        if self.skipped:
            found.append(f"{len(self.skipped)} unreadable or unused file(s), e.g. {self.skipped[0].path.name}: fix or remove them")
        if len(self.class_names) < 2:
            found.append(f"{len(self.class_names)} class(es): a classifier needs at least 2")
        small = [f"{name} ({count})" for name, count in self.counts.items() if count < min_images]
        if small:
            found.append(f"class(es) with fewer than {min_images} images: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}")
        if not small and self.counts and self.imbalance > max_imbalance:
            largest = max(self.counts, key=self.counts.get)
            smallest = min(self.counts, key=self.counts.get)
            found.append(
                f"classes are imbalanced {self.imbalance:.1f}x (over {max_imbalance:g}x): "
                f"{largest} has {self.counts[largest]} images, {smallest} {self.counts[smallest]}"
            )
        return found


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def class_dirs(root: Path) -> list[Path]:
    """Validate ``root`` and return its class subfolders, sorted by name.

    Raises:
        DataError: root is missing, a file, or has no class subfolders.
    """
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass a folder with one subfolder per class")
    if not root.is_dir():
        raise DataError(f"data path {root} is a file, not a folder; pass a folder with one subfolder per class")
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    dirs = [p for p in entries if p.is_dir() and not _is_hidden(p.name)]
    if not dirs:
        images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise DataError(
                f"data folder {root} holds {len(images)} image(s) but no class subfolders; "
                "put each class's images in its own subfolder (e.g. data/cat/1.jpg, data/dog/2.jpg)"
            )
        raise DataError(f"data folder {root} has no class subfolders; put each class's images in its own subfolder")
    for folder in dirs:
        problem = class_name_problem(folder.name)
        if problem is not None:  # the name becomes a label: one line of labels.txt, a literal in generated code
            raise DataError(
                f"class folder {shown(str(folder), 200)}: its name {problem}; rename the folder "
                f"(a class name must be {CLASS_NAME_RULE})"
            )
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        logger.warning(
            "ignoring %d image(s) at the top level of %s (e.g. %s); only class subfolders are read",
            len(loose),
            root,
            loose[0].name,
        )
    return dirs


def _files_in(class_dir: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Image-suffixed files under ``class_dir`` (recursively, sorted), and the other files as skipped."""
    images: list[Path] = []
    others: list[SkippedFile] = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if _is_hidden(name):  # .DS_Store, AppleDouble "._x.jpg" files: never images
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                others.append(SkippedFile(path, f"not an image suffix ({path.suffix or 'none'})"))
    return images, others


def list_candidates(root: Path, class_names: list[str] | None) -> tuple[list[str], list[str], list[Path], list[int], list[SkippedFile]]:
    """The class names (the folder's, or ``class_names``), the class folders' names, the image files to
    decode (with their labels) and the files skipped by name.

    Raises:
        DataError: a class folder that ``class_names`` (a model's classes) does not have.
    """
    dirs = class_dirs(root)
    folder_classes = [d.name for d in dirs]
    if class_names is None:
        names = folder_classes
    else:
        names = list(class_names)
        unknown = [c for c in folder_classes if c not in names]
        if unknown:
            raise DataError(
                f"data folder {root} has class folder(s) {unknown} that the model does not know "
                f"(its classes: {names}); remove or rename them"
            )
    candidates: list[Path] = []
    candidate_labels: list[int] = []
    skipped: list[SkippedFile] = []
    for class_dir in dirs:
        images, others = _files_in(class_dir)
        candidates.extend(images)
        candidate_labels.extend([names.index(class_dir.name)] * len(images))
        skipped.extend(others)
    return names, folder_classes, candidates, candidate_labels, skipped


def finish_scan(
    root: Path, names: list[str], folder_classes: list[str], class_names: list[str] | None, paths: list[Path], labels: list[int],
    skipped: list[SkippedFile], unreadable: list[SkippedFile], sizes: collections.Counter, modes: collections.Counter, *,
    strict: bool, require_usable: bool = True,
) -> FolderScan:
    """The :class:`FolderScan` of the readable ``paths``, after the checks every loader makes: unreadable
    files under ``strict``, and (``require_usable``) a class with no readable image or fewer than 2 classes.

    Raises:
        DataError: one of those checks failed.
    """
    counts = {name: 0 for name in names}
    for label in labels:
        counts[names[label]] += 1
    if strict and unreadable:
        raise DataError(
            f"{len(unreadable)} unreadable image file(s) in {root}: {describe_skipped(unreadable)}; "
            "fix or remove them, or turn strict off to skip them"
        )
    skipped = sorted(skipped + unreadable, key=lambda s: str(s.path))
    if skipped:
        logger.warning("skipped %d file(s) in %s: %s", len(skipped), root, describe_skipped(skipped))
    scan = FolderScan(
        root=root, class_names=names, paths=paths, labels=np.asarray(labels, dtype=np.int64), skipped=skipped,
        sizes=sizes, modes=modes, counts=counts,
    )
    if require_usable:
        empty = [c for c in folder_classes if counts[c] == 0]
        if empty:
            raise DataError(
                f"class folder(s) {[str(root / c) for c in empty]} have no readable images; "
                "add images or remove the folder(s)"
            )
        if class_names is None and len(folder_classes) < 2:
            raise DataError(
                f"data folder {root} has {len(folder_classes)} class folder(s) ({folder_classes}); "
                "a classifier needs at least 2: add a subfolder per class"
            )
    return scan


def scan_and_load(
    root: str | Path,
    *,
    strict: bool,
    class_names: list[str] | None,
    verify: bool,
    input_size: Size | None = None,
    resize: str = "bilinear",
    require_usable: bool = True,
    channels: int = 3,
) -> tuple[FolderScan, np.ndarray | None]:
    """Scan (and, with ``input_size``, load as ``channels``-channel pixels) a folder, decoding each image once."""
    root = Path(root)
    resample = resample_filter(resize) if input_size is not None else None
    names, folder_classes, candidates, candidate_labels, skipped = list_candidates(root, class_names)
    results = decode_all(candidates, input_size, resample, verify, channels)
    paths: list[Path] = []
    labels: list[int] = []
    pixels: list[np.ndarray | None] = []
    sizes: collections.Counter[tuple[int, int]] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    unreadable: list[SkippedFile] = []
    for path, label, result in zip(candidates, candidate_labels, results, strict=True):
        if isinstance(result, SkippedFile):
            unreadable.append(result)
            continue
        paths.append(path)
        labels.append(label)
        pixels.append(result.pixels)
        sizes[result.size] += 1
        modes[result.mode] += 1
    scan = finish_scan(
        root, names, folder_classes, class_names, paths, labels, skipped, unreadable, sizes, modes, strict=strict, require_usable=require_usable,
    )
    array = stack_pixels(pixels, input_size, channels) if input_size is not None else None
    return scan, array


def scan_folder(
    root: str | Path, *, strict: bool = False, class_names: list[str] | None = None, verify: bool = True
) -> FolderScan:
    """List a data folder's classes and readable images.

    Args:
        root: folder with one subfolder per class.
        strict: raise on any unreadable image file instead of skipping it. Files without an image
            suffix (e.g. ``notes.txt``) are always skipped, never an error.
        class_names: the known classes (e.g. a trained model's); the folder's classes must be a subset,
            ``labels`` index into this list, and a single class folder is allowed.
        verify: decode every image fully (finds truncated files); False only reads headers.

    Returns:
        The :class:`FolderScan`.

    Raises:
        DataError: the folder is missing, a file, or has no class subfolders; a class folder has no
            readable images; fewer than 2 classes (when ``class_names`` is None); a class folder not in
            ``class_names``; with ``strict``, any unreadable image file.
    """
    scan, _ = scan_and_load(root, strict=strict, class_names=class_names, verify=verify)
    return scan


def check_folder(root: str | Path) -> FolderScan:
    """Scan a folder for ``edgetl data check``: reports empty or single classes instead of raising.

    Args:
        root: folder with one subfolder per class.

    Returns:
        The :class:`FolderScan`; see :meth:`FolderScan.problems` for what is wrong with it.

    Raises:
        DataError: the folder is missing, a file, or has no class subfolders.
    """
    scan, _ = scan_and_load(root, strict=False, class_names=None, verify=True, require_usable=False)
    return scan
