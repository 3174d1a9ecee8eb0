"""edgetl.data.images: folder scanning, decoding every image mode to RGB, splitting and the errors users see."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from edgetl.core.config import DataConfig
from edgetl.core.errors import ConfigError, DataError
from edgetl.data.folder import check_folder, scan_folder
from edgetl.data.images import ALPHA_BACKGROUND, IMAGE_SUFFIXES, load_images, to_rgb
from edgetl.data.split import load_eval_set, load_split, split_indices

SIZE = 16


def write_rgb(path: Path, colour=(200, 30, 60), size=(20, 12), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def make_folder(root: Path, classes: dict[str, int], size=(20, 12)) -> Path:
    for index, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write_rgb(root / name / f"{i:03d}.png", colour=(index * 40, i * 7 % 256, 100), size=size)
    return root


def truncated_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# --------------------------------------------------------------------------------------------- folder errors


def test_missing_folder_names_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        scan_folder(missing)
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_file_instead_of_folder(tmp_path):
    file = write_rgb(tmp_path / "a.png")
    with pytest.raises(DataError, match="is a file") as info:
        scan_folder(file)
    assert str(file) in str(info.value)


def test_top_level_images_only(tmp_path):
    write_rgb(tmp_path / "a.png")
    write_rgb(tmp_path / "b.jpg", fmt="JPEG")
    with pytest.raises(DataError, match="own subfolder") as info:
        scan_folder(tmp_path)
    assert "2 image(s)" in str(info.value)
    with pytest.raises(DataError, match="own subfolder"):
        check_folder(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        scan_folder(tmp_path)


def test_empty_class_folder_named(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "emu").mkdir()
    with pytest.raises(DataError, match="no readable images") as info:
        scan_folder(tmp_path)
    assert str(tmp_path / "emu") in str(info.value)


def test_class_with_only_corrupt_file(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "emu").mkdir()
    (tmp_path / "emu" / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="emu"):
        scan_folder(tmp_path)


def test_single_class(tmp_path):
    make_folder(tmp_path, {"cat": 3})
    with pytest.raises(DataError, match="at least 2") as info:
        scan_folder(tmp_path)
    assert "cat" in str(info.value)


def test_check_folder_reports_instead_of_raising(tmp_path):
    make_folder(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    scan = check_folder(tmp_path)
    assert scan.class_names == ["cat", "dog"]
    assert scan.counts == {"cat": 3, "dog": 0}
    assert scan.empty_classes == ["dog"]
    assert scan.imbalance == float("inf")
    assert any("dog" in p for p in scan.problems())

    single = make_folder(tmp_path / "single", {"only": 2})
    scan = check_folder(single)
    assert scan.class_names == ["only"]
    assert any("at least 2" in p for p in scan.problems())


# --------------------------------------------------------------------------------------------- scanning


def test_scan_layout_hidden_nested_and_top_level(tmp_path, caplog):
    make_folder(tmp_path, {"b": 2, "a": 3})
    write_rgb(tmp_path / "a" / "sub" / "deep.png")  # nested: found
    write_rgb(tmp_path / "a" / ".hidden.png")  # hidden file: ignored
    write_rgb(tmp_path / ".cache" / "x.png")  # hidden class folder: ignored
    write_rgb(tmp_path / "stray.png")  # top level: ignored, with a warning
    with caplog.at_level(logging.WARNING, logger="edgetl.data.folder"):
        scan = scan_folder(tmp_path)
    assert scan.class_names == ["a", "b"]
    assert scan.counts == {"a": 4, "b": 2}
    assert scan.labels.dtype == np.int64
    assert scan.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert tmp_path / "a" / "sub" / "deep.png" in scan.paths
    assert not any(p.name.startswith(".") or p.name == "stray.png" for p in scan.paths)
    assert scan.imbalance == 2.0
    assert scan.sizes == {(20, 12): 6}
    assert scan.modes == {"RGB": 6}
    assert scan.skipped == []
    assert "top level" in caplog.text


def test_bad_files_skipped_and_logged(tmp_path, caplog):
    make_folder(tmp_path, {"cat": 3, "dog": 3})
    truncated = truncated_png(tmp_path / "cat" / "trunc.png")
    text_png = tmp_path / "dog" / "text.png"
    text_png.write_text("this is not a png")
    notes = tmp_path / "dog" / "notes.txt"
    notes.write_text("hello")
    with caplog.at_level(logging.WARNING, logger="edgetl.data.folder"):
        scan = scan_folder(tmp_path)
    reasons = {s.path: s.reason for s in scan.skipped}
    assert reasons[truncated] == "truncated image"
    assert reasons[text_png] == "not an image"
    assert "suffix" in reasons[notes]
    assert scan.counts == {"cat": 3, "dog": 3}
    assert truncated not in scan.paths
    assert "skipped 3 file(s)" in caplog.text and str(tmp_path) in caplog.text


def test_truncated_jpeg_skipped(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    path = tmp_path / "cat" / "t.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    scan = scan_folder(tmp_path)
    assert [s.reason for s in scan.skipped] == ["truncated image"]


def test_verify_false_reads_headers_only(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    truncated = truncated_png(tmp_path / "cat" / "trunc.png")
    (tmp_path / "dog" / "text.png").write_text("nope")
    scan = scan_folder(tmp_path, verify=False)
    assert truncated in scan.paths  # only a full decode finds truncation
    assert [s.reason for s in scan.skipped] == ["not an image"]


def test_strict_raises_with_count_and_paths(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    first = truncated_png(tmp_path / "cat" / "trunc.png")
    (tmp_path / "dog" / "text.png").write_text("nope")
    with pytest.raises(DataError, match=r"^2 unreadable image file\(s\)") as info:
        scan_folder(tmp_path, strict=True)
    assert str(first) in str(info.value)
    assert "\n" not in str(info.value)


def test_strict_ignores_non_image_suffixes(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "dog" / "README.txt").write_text("notes")
    scan = scan_folder(tmp_path, strict=True)
    assert len(scan.paths) == 4


def test_truncated_flag_restored(tmp_path):
    make_folder(tmp_path, {"cat": 2, "dog": 2})
    truncated = truncated_png(tmp_path / "cat" / "trunc.png")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = True  # someone else's global setting
        scan = scan_folder(tmp_path)
        assert truncated not in scan.paths  # still rejected
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and left as it was
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    scan_folder(tmp_path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is previous


def test_class_names_subset_and_unknown(tmp_path):
    make_folder(tmp_path, {"dog": 2})
    scan = scan_folder(tmp_path, class_names=["cat", "dog", "emu"])
    assert scan.class_names == ["cat", "dog", "emu"]
    assert scan.labels.tolist() == [1, 1]
    assert scan.counts == {"cat": 0, "dog": 2, "emu": 0}
    with pytest.raises(DataError, match="does not know") as info:
        scan_folder(tmp_path, class_names=["cat", "emu"])
    assert "dog" in str(info.value)


def test_image_suffixes():
    assert IMAGE_SUFFIXES >= {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------------- modes


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def test_every_mode_loads_as_rgb_uint8(tmp_path):
    d = tmp_path
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 1
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    paths = [
        _save(d / "gray.png", Image.new("L", (30, 10), 77)),
        _save(d / "la.png", Image.new("LA", (10, 10), (77, 128))),
        _save(d / "rgba.png", Image.new("RGBA", (10, 40), (255, 0, 0, 0))),
        _save(d / "p.png", palette),
        _save(d / "p_trans.png", transparent_palette, transparency=1),
        _save(d / "p.gif", palette),
        _save(d / "cmyk.jpg", Image.new("CMYK", (10, 10), (0, 255, 255, 0)), format="JPEG"),
        _save(d / "cmyk.tif", Image.new("CMYK", (10, 10), (0, 255, 255, 0)), format="TIFF"),
        _save(d / "bit.png", Image.new("1", (10, 10), 1)),
        _save(d / "bit.bmp", Image.new("1", (10, 10), 0)),
        _save(d / "i32.tif", Image.new("I", (10, 10), 257 * 9)),
        _save(d / "f32.tif", Image.new("F", (10, 10), 0.5)),
        _save(d / "anim.gif", frames[0], save_all=True, append_images=frames[1:]),
        _save(d / "webp.webp", Image.new("RGB", (10, 10), (0, 255, 0)), lossless=True),
        _save(d / "big.jpg", Image.new("RGB", (300, 120), (0, 0, 255)), format="JPEG"),
    ]
    x = load_images(paths, SIZE)
    assert x.shape == (len(paths), SIZE, SIZE, 3)
    assert x.dtype == np.uint8
    centre = {p.name: tuple(int(v) for v in x[i, SIZE // 2, SIZE // 2]) for i, p in enumerate(paths)}
    assert centre["gray.png"] == (77, 77, 77)
    assert centre["rgba.png"] == ALPHA_BACKGROUND  # fully transparent red -> background
    assert centre["p.png"] == (255, 0, 0)
    assert centre["p_trans.png"] == ALPHA_BACKGROUND
    assert centre["p.gif"] == (255, 0, 0)
    assert all(abs(a - b) <= 3 for a, b in zip(centre["cmyk.jpg"], (255, 0, 0), strict=True))
    assert centre["cmyk.tif"] == (255, 0, 0)
    assert centre["bit.png"] == (255, 255, 255)
    assert centre["bit.bmp"] == (0, 0, 0)
    assert centre["i32.tif"] == (9, 9, 9)
    assert centre["f32.tif"] == (128, 128, 128)  # 0..1 floats scale to 0..255
    assert centre["anim.gif"][0] > 200 and centre["anim.gif"][2] < 50  # first frame (red)
    assert centre["webp.webp"] == (0, 255, 0)
    # LA at alpha 128 over white: about halfway between 77 and 255
    assert 160 <= centre["la.png"][0] <= 170


@pytest.mark.parametrize("value", [0, 1000, 25700, 40000, 65535])
def test_16bit_png_scaled_not_clipped(tmp_path, value):
    path = _save(tmp_path / "deep.png", Image.fromarray(np.full((6, 9), value, dtype=np.uint16)))
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # really a 16-bit image on disk
    x = load_images([path], SIZE)
    assert x.shape == (1, SIZE, SIZE, 3)
    assert np.all(np.abs(x.astype(int) - round(value / 257)) <= 1)


def test_16bit_big_endian_mode():
    image = Image.fromarray(np.full((4, 4), 257 * 200, dtype=">u2"))
    assert image.mode == "I;16B"
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [200, 200, 200]


def test_load_images_missing_or_bad_file_raises(tmp_path):
    good = write_rgb(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    with pytest.raises(DataError, match="cannot read 2 of 3") as info:
        load_images([good, bad, tmp_path / "missing.png"], SIZE)
    assert f"{bad} (not an image)" in str(info.value)
    assert "missing.png (file not found)" in str(info.value)
    assert load_images([], SIZE).shape == (0, SIZE, SIZE, 3)


def test_load_images_resize_options(tmp_path):
    path = write_rgb(tmp_path / "a.png", size=(40, 10))
    assert load_images([path], 8, resize="nearest").shape == (1, 8, 8, 3)
    with pytest.raises(ConfigError, match="resize='cubicle'"):
        load_images([path], 8, resize="cubicle")
    with pytest.raises(ConfigError, match="input_size"):
        load_images([path], 0)


# --------------------------------------------------------------------------------------------- split


def test_split_deterministic_and_stratified():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    train, val = split_indices(labels, 0.2, seed=7)
    again_train, again_val = split_indices(labels, 0.2, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    other_train, _ = split_indices(labels, 0.2, seed=8)
    assert not np.array_equal(train, other_train)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 4, 1]
    assert train.dtype == np.int64 and val.dtype == np.int64


def test_split_small_classes():
    labels = np.array([0, 1, 1, 2, 2, 2])  # class 0 has one image: train only
    train, val = split_indices(labels, 0.1, seed=0)
    assert 0 in train.tolist() and 0 not in val.tolist()
    assert set(labels[val].tolist()) == {1, 2}  # every class with >= 2 images gets a val image
    assert set(labels[train].tolist()) == {0, 1, 2}
    _, val = split_indices(np.array([0, 0, 1, 1]), 0.9, seed=0)
    assert len(val) == 2  # never the whole class


def test_split_errors():
    with pytest.raises(DataError, match="single image"):
        split_indices(np.array([0, 1, 2]), 0.2, seed=0)
    with pytest.raises(ConfigError, match="val_split=1.5"):
        split_indices(np.array([0, 0, 1, 1]), 1.5, seed=0)


def test_load_split(tmp_path):
    make_folder(tmp_path / "d", {"cat": 10, "dog": 5, "emu": 1})
    (tmp_path / "d" / "dog" / "bad.png").write_text("nope")
    config = DataConfig(path=tmp_path / "d", val_split=0.2, seed=3)
    split = load_split(config, SIZE)
    assert split.class_names == ["cat", "dog", "emu"]
    assert split.train.x.shape == (len(split.train.paths), SIZE, SIZE, 3)
    assert split.train.x.dtype == np.uint8 and split.train.y.dtype == np.int64
    assert len(split.train) + len(split.val) == 16
    assert np.bincount(split.val.y, minlength=3).tolist() == [2, 1, 0]
    assert not set(split.train.paths) & set(split.val.paths)
    assert [s.path.name for s in split.skipped] == ["bad.png"]
    again = load_split(config, SIZE)
    assert again.val.paths == split.val.paths and np.array_equal(again.val.x, split.val.x)
    with pytest.raises(DataError, match="unreadable"):
        load_split(DataConfig(path=tmp_path / "d", strict=True), SIZE)
    with pytest.raises(DataError, match="data.path"):
        load_split(DataConfig(), SIZE)


def test_load_split_val_path(tmp_path):
    make_folder(tmp_path / "train", {"cat": 3, "dog": 3})
    make_folder(tmp_path / "val", {"cat": 1, "dog": 2})
    split = load_split(DataConfig(path=tmp_path / "train", val_path=tmp_path / "val"), SIZE)
    assert len(split.train) == 6 and len(split.val) == 3
    assert split.val.y.tolist() == [0, 1, 1]

    make_folder(tmp_path / "odd", {"cat": 1, "emu": 1})
    with pytest.raises(DataError, match="different classes") as info:
        load_split(DataConfig(path=tmp_path / "train", val_path=tmp_path / "odd"), SIZE)
    message = str(info.value)
    assert "'dog'" in message and "'emu'" in message and str(tmp_path / "odd") in message


def test_load_eval_set(tmp_path):
    make_folder(tmp_path, {"dog": 2, "cat": 1})
    data, skipped = load_eval_set(tmp_path, SIZE, class_names=["ant", "cat", "dog"])
    assert data.x.shape == (3, SIZE, SIZE, 3)
    assert data.y.tolist() == [1, 2, 2]
    assert skipped == []
    data, _ = load_eval_set(tmp_path, SIZE)
    assert data.y.tolist() == [0, 1, 1]
    with pytest.raises(DataError, match="does not know") as info:
        load_eval_set(tmp_path, SIZE, class_names=["cat", "emu"])
    assert "'dog'" in str(info.value) and str(tmp_path) in str(info.value)


def test_different_sizes_resized(tmp_path):
    write_rgb(tmp_path / "a" / "wide.png", size=(100, 20))
    write_rgb(tmp_path / "a" / "tall.png", size=(5, 70))
    write_rgb(tmp_path / "b" / "tiny.png", size=(1, 1))
    data, _ = load_eval_set(tmp_path, SIZE)
    assert data.x.shape == (3, SIZE, SIZE, 3)
    assert len(scan_folder(tmp_path).sizes) == 3


def test_imports_without_tensorflow():
    code = "import sys, edgetl.data.images, edgetl.data.synthetic; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
