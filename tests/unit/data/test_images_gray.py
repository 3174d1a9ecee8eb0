"""Grayscale and non-square image loading: shapes and values as Pillow computes them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgetl.core.errors import ConfigError
from edgetl.data.images import load_images, read_rgb, stack_pixels


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)  # 70 wide, 50 high
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_gray_non_square_is_pillow_luma_resized_whole(photo):
    path, pixels = photo
    x = load_images([path], (24, 40), "bilinear", channels=1)
    assert x.shape == (1, 24, 40, 1) and x.dtype == np.uint8
    expected = np.asarray(Image.fromarray(pixels).convert("L").resize((40, 24), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(x[0, ..., 0], expected)


def test_rgb_non_square_keeps_three_channels(photo):
    path, pixels = photo
    x = read_rgb(path, (24, 40), "nearest")
    assert x.shape == (24, 40, 3)
    np.testing.assert_array_equal(x, np.asarray(Image.fromarray(pixels).resize((40, 24), Image.Resampling.NEAREST)))


def test_gray_of_a_transparent_image_follows_the_rgb_rules(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red, fully transparent: composited on the background first
    path = tmp_path / "clear.png"
    Image.fromarray(rgba).save(path)
    gray = load_images([path], 8, "nearest", channels=1)[0, ..., 0]
    rgb = load_images([path], 8, "nearest")[0]
    np.testing.assert_array_equal(gray, np.asarray(Image.fromarray(rgb).convert("L")))


def test_documented_luma_formula_is_pillows():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    mine = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16  # what the Android/iOS/C package READMEs tell apps to compute
    np.testing.assert_array_equal(mine, np.asarray(Image.fromarray(rgb).convert("L")))


def test_empty_stack_and_bad_channels():
    assert stack_pixels([], (24, 40), 1).shape == (0, 24, 40, 1)
    with pytest.raises(ConfigError, match="channels=2"):
        load_images([], 32, channels=2)
