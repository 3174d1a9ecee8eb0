"""Images with absurd pixel counts are skipped with their reason, never decoded (issue 12, finding 9).

A 12000x12000 PNG was accepted with a raw ``DecompressionBombWarning``; now every decode checks the
size in the file's header against ``data.max_image_pixels`` / ``$EDGETL_MAX_IMAGE_PIXELS``
(default 64 MP) before any pixel is read.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from edgetl.core.config import DataConfig
from edgetl.core.errors import ConfigError, DataError
from edgetl.data.folder import check_folder
from edgetl.data.images import MAX_PIXELS_ENV, load_images
from edgetl.data.split import load_split

BIG_REASON = "12000x12000 = 144 MP is over the 64 MP limit"


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """A real 12000x12000 PNG (140 KB on disk, 144 megapixels once decoded)."""
    path = tmp_path_factory.mktemp("bomb") / "big.png"
    Image.new("L", (12000, 12000)).save(path)
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (what a crafted bomb looks like to a header read)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def make_folder(root: Path, extra: dict[str, Path] | None = None, size: int = 20) -> Path:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (size, size), (80 * i, 40, 200)).save(root / name / f"{i}.png")
    for rel, source in (extra or {}).items():
        (root / rel).symlink_to(source)
    return root


def test_huge_png_is_skipped_with_its_reason_and_no_raw_warning(tmp_path, big_png):
    root = make_folder(tmp_path / "data", {"a/big.png": big_png})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        scan = check_folder(root)
    assert scan.counts == {"a": 3, "b": 3}, "the 144 MP image was accepted"
    assert [s.path.name for s in scan.skipped] == ["big.png"]
    assert BIG_REASON in scan.skipped[0].reason and "data.max_image_pixels" in scan.skipped[0].reason
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS is not None, "Pillow's own limit must come back after decoding"


def test_header_claiming_ten_gigapixels_is_skipped_with_its_size(tmp_path):
    root = make_folder(tmp_path / "data")
    png_claiming(root / "b" / "bomb.png", 100_000, 100_000)
    scan = check_folder(root)
    assert [s.path.name for s in scan.skipped] == ["bomb.png"]
    assert "100000x100000 = 10,000 MP is over the 64 MP limit" in scan.skipped[0].reason


def test_pixel_limit_from_the_data_config(tmp_path):
    root = make_folder(tmp_path / "data")
    Image.new("RGB", (50, 50)).save(root / "a" / "large.png")  # 2,500 pixels; the others have 400
    split = load_split(DataConfig(path=root, max_image_pixels=1000, val_split=0.34), 16)
    assert [s.path.name for s in split.skipped] == ["large.png"]
    assert "50x50 = 0.0025 MP is over the 0.001 MP limit" in split.skipped[0].reason
    assert len(split.train) + len(split.val) == 6
    strict = DataConfig(path=root, max_image_pixels=1000, strict=True)
    with pytest.raises(DataError, match="large.png"):
        load_split(strict, 16)
    assert len(load_split(DataConfig(path=root, val_split=0.34), 16).skipped) == 0, "the limit leaked past its call"


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data")
    Image.new("RGB", (50, 50)).save(root / "b" / "large.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert [s.path.name for s in check_folder(root).skipped] == ["large.png"]
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
        check_folder(root)


def test_data_config_bounds_the_limit():
    with pytest.raises(Exception, match="max_image_pixels"):
        DataConfig(max_image_pixels=0)


def test_load_images_names_the_limit_in_one_line(big_png):
    with pytest.raises(DataError) as caught:
        load_images([big_png], 32)
    assert BIG_REASON in str(caught.value) and "\n" not in str(caught.value)


def test_predict_on_a_huge_image_is_one_line_error(int8_export, big_png):
    artifact, _ = int8_export
    code = "import sys\nfrom edgetl.cli.app import main\nmain(sys.argv[1:])\n"
    result = subprocess.run([sys.executable, "-c", code, "predict", str(artifact), str(big_png)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert BIG_REASON in lines[0]
    assert "DecompressionBomb" not in result.stderr and "Traceback" not in result.stderr
