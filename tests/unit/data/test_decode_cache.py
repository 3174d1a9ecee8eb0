"""The decode cache (edgetl.data.cache), the file digest memo (edgetl.core.digests) and content-based
folder signatures (edgetl.core.fingerprint.folder_signature)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.core import digests
from edgetl.core.config import DataConfig
from edgetl.core.errors import DataError
from edgetl.core.fingerprint import folder_signature
from edgetl.data import cache
from edgetl.data.split import load_split

SIZE = 16


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(folder))
    return folder


def make_folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(len(classes))
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "decoded").glob("*.npy"))


def decodes(monkeypatch) -> list[int]:
    """Count the image files decoded from now on."""
    seen: list[int] = []
    real = cache.decode_all

    def counting(paths, *args, **kwargs):
        seen.append(len(paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(cache, "decode_all", counting)
    return seen


def test_miss_then_hit_maps_the_same_pixels(tmp_path, cache_dir, monkeypatch, caplog):
    root = make_folder(tmp_path / "d", {"cat": 6, "dog": 5})
    (root / "dog" / "bad.png").write_text("nope")
    config = DataConfig(path=root, val_split=0.3, seed=1)
    uncached = load_split(config.model_copy(update={"decode_cache": False}), SIZE)
    decoded = decodes(monkeypatch)
    with caplog.at_level(logging.INFO, logger="edgetl.data.split"):
        first = load_split(config, SIZE)
    assert sum(decoded) == 12 and "decode cache miss: 12 image file(s) decoded" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgetl.data.split"):
        second = load_split(config, SIZE)
    assert sum(decoded) == 12, "a warm load decoded images again"
    assert "decode cache hit: 0 image file(s) decoded" in caplog.text
    for split in (first, second):
        for part, reference in ((split.train, uncached.train), (split.val, uncached.val)):
            assert isinstance(part.x, np.memmap) and not part.x.flags.writeable
            assert part.x.dtype == np.uint8 and np.array_equal(part.x, reference.x)
            assert part.paths == reference.paths and np.array_equal(part.y, reference.y)
        assert [s.path.name for s in split.skipped] == ["bad.png"] and split.class_names == ["cat", "dog"]
    assert len(entries(cache_dir)) == 2  # the folder's entry and its split into train + val


def test_cached_load_keeps_the_checks(tmp_path):
    root = make_folder(tmp_path / "d", {"cat": 3, "dog": 3})
    (root / "dog" / "bad.png").write_text("nope")
    load_split(DataConfig(path=root), SIZE)  # warms the cache with bad.png skipped
    with pytest.raises(DataError, match="unreadable"):
        load_split(DataConfig(path=root, strict=True), SIZE)
    (root / "emu").mkdir()
    (root / "emu" / "x.png").write_text("nope")
    with pytest.raises(DataError, match="have no readable images"):
        load_split(DataConfig(path=root), SIZE)


def test_val_path_entries_and_other_size(tmp_path, cache_dir, monkeypatch):
    train = make_folder(tmp_path / "train", {"a": 3, "b": 3})
    val = make_folder(tmp_path / "val", {"a": 2, "b": 1})
    config = DataConfig(path=train, val_path=val)
    load_split(config, SIZE)
    assert len(entries(cache_dir)) == 2
    decoded = decodes(monkeypatch)
    split = load_split(config, SIZE)
    assert decoded == [] and split.val.y.tolist() == [0, 0, 1] and isinstance(split.val.x, np.memmap)
    bigger = load_split(config, 24)
    assert sum(decoded) == 9 and bigger.train.x.shape == (6, 24, 24, 3)
    assert len(entries(cache_dir)) == 4


def test_one_changed_image_changes_the_key(tmp_path, cache_dir, monkeypatch):
    root = make_folder(tmp_path / "d", {"a": 3, "b": 3})
    config = DataConfig(path=root, val_path=None)
    before = load_split(config, SIZE)
    target = root / "b" / "001.png"
    st = target.stat()
    Image.new("RGB", (20, 24), (1, 2, 3)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only the content says it changed
    decoded = decodes(monkeypatch)
    after = load_split(config, SIZE)
    assert sum(decoded) == 6
    changed = [p.name for p, a, b in zip(before.train.paths + before.val.paths,
                                        list(before.train.x) + list(before.val.x),
                                        list(after.train.x) + list(after.val.x), strict=True) if not np.array_equal(a, b)]
    assert changed == ["001.png"] and (after.train.paths + after.val.paths).count(target) == 1


def test_corrupt_entries_are_rebuilt(tmp_path, cache_dir, monkeypatch, caplog):
    root = make_folder(tmp_path / "d", {"a": 4, "b": 4})
    config = DataConfig(path=root, val_path=root)  # one entry, no split entry
    good = np.array(load_split(config, SIZE).train.x)  # a copy: the corruptions below rewrite the mapped file in place
    [name] = entries(cache_dir)
    npy = cache_dir / "decoded" / name
    sidecar = npy.with_suffix(".json")
    decoded = decodes(monkeypatch)
    corruptions = {
        "short array": lambda: npy.write_bytes(npy.read_bytes()[:-100]),
        "garbage array": lambda: npy.write_bytes(b"\x93NUMPY garbage" * 50),
        "pickled array": lambda: np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "garbage sidecar": lambda: sidecar.write_text("{not json"),
        "sidecar of another entry": lambda: sidecar.write_text(sidecar.read_text().replace('"count": 8', '"count": 9')),
        "missing sidecar": lambda: sidecar.unlink(),
    }
    for what, corrupt in corruptions.items():
        corrupt()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgetl.data.cache"):
            again = load_split(config, SIZE)
        assert "unusable" in caplog.text or what == "missing sidecar", what
        assert np.array_equal(again.train.x, good), what
        assert sum(decoded) == 8, what
        decoded.clear()
    load_split(config, SIZE)
    assert decoded == [], "the rebuilt entry is used"


def test_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch, caplog):
    root = make_folder(tmp_path / "d", {"a": 3, "b": 3})
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING):
        split = load_split(DataConfig(path=root), SIZE)
    assert len(split.train) + len(split.val) == 6 and not isinstance(split.train.x, np.memmap)
    assert "cannot write the decode cache" in caplog.text


# ----------------------------------------------------------------------------- digests and folder signatures


def test_signature_follows_content_not_mtime(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 2, "b": 2})
    target = root / "a" / "000.png"
    original = folder_signature(root)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert folder_signature(root) == original, "touching a file changed the signature"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    changed = folder_signature(root)
    assert changed != original
    (root / "a" / "000.png").rename(root / "a" / "009.png")
    assert folder_signature(root) not in (original, changed), "a renamed file is another folder"


def test_second_look_only_stats(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    root = make_folder(tmp_path / "d", {"a": 3, "b": 3})
    files = sorted(root.rglob("*.png"))
    reads: list[Path] = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: reads.append(p) or real(p))
    first = digests.file_digests(files)
    assert len(reads) == 6 and first[0] == real(files[0])
    assert digests.file_digests(files) == first and len(reads) == 6
    files[2].write_bytes(files[2].read_bytes() + b"x")
    again = digests.file_digests(files)
    assert len(reads) == 7 and again[2] != first[2] and again[:2] == first[:2]


def test_recent_files_are_not_memoised(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_SECONDS", 3600.0)
    file = tmp_path / "f"
    file.write_bytes(b"abc")
    reads: list[Path] = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: reads.append(p) or real(p))
    digests.file_digests([file])
    digests.file_digests([file])
    assert len(reads) == 2


def test_corrupt_memo_is_replaced(tmp_path, cache_dir, caplog):
    cache_dir.mkdir()
    (cache_dir / "digests-v1.sqlite").write_bytes(b"this is not a database" * 100)
    file = tmp_path / "f"
    file.write_bytes(b"abc")
    with caplog.at_level(logging.WARNING, logger="edgetl.core.digests"):
        assert digests.file_digests([file]) == [digests.sha256_file(file)]
    assert "starting a new one" in caplog.text


def test_file_names_that_are_not_utf8(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    file = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    file.write_bytes(b"abc")
    assert digests.file_digests([file]) == digests.file_digests([file]) == [digests.sha256_file(file)]
