"""edgetl.data.synthetic: deterministic, learnable PNG shape folders written atomically."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from edgetl.core.errors import ConfigError, DataError
from edgetl.data.folder import scan_folder
from edgetl.data.split import load_eval_set
from edgetl.data.synthetic import DEFAULT_SHAPES, SUPPORTED_SHAPES, make_shapes_dataset


def file_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_format(tmp_path):
    root = make_shapes_dataset(tmp_path / "shapes", images_per_class=3, image_size=24)
    assert root == tmp_path / "shapes"
    assert sorted(p.name for p in root.iterdir()) == sorted(DEFAULT_SHAPES)
    assert sorted(p.name for p in (root / "star").iterdir()) == ["star_0000.png", "star_0001.png", "star_0002.png"]
    with Image.open(root / "circle" / "circle_0001.png") as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (24, 24)
    scan = scan_folder(root)
    assert scan.counts == {name: 3 for name in sorted(DEFAULT_SHAPES)}
    assert scan.skipped == []
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no temp folder left behind


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = file_bytes(make_shapes_dataset(tmp_path / "a", images_per_class=4, image_size=32, seed=5))
    b = file_bytes(make_shapes_dataset(tmp_path / "b", images_per_class=4, image_size=32, seed=5))
    c = file_bytes(make_shapes_dataset(tmp_path / "c", images_per_class=4, image_size=32, seed=6))
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_class_stream_independent_of_other_shapes(tmp_path):
    a = file_bytes(make_shapes_dataset(tmp_path / "a", images_per_class=2, image_size=16, shapes=("circle", "star")))
    b = file_bytes(make_shapes_dataset(tmp_path / "b", images_per_class=2, image_size=16, shapes=("ring", "star")))
    assert a["star/star_0000.png"] == b["star/star_0000.png"]


def test_all_supported_shapes_and_knobs(tmp_path):
    root = make_shapes_dataset(
        tmp_path / "hard", images_per_class=2, image_size=40, shapes=SUPPORTED_SHAPES, noise=0.3, min_scale=0.2
    )
    assert len(SUPPORTED_SHAPES) == 8
    data, skipped = load_eval_set(root, 40)
    assert skipped == [] and data.x.shape == (16, 40, 40, 3)
    quiet = make_shapes_dataset(tmp_path / "quiet", images_per_class=2, image_size=40, noise=0.0)
    noisy = make_shapes_dataset(tmp_path / "noisy", images_per_class=2, image_size=40, noise=0.3)
    corner = (slice(0, 3), slice(0, 3))  # background only: every shape stays inside its circumscribed circle

    def corner_std(root):
        x, _ = load_eval_set(root, 40)
        return x.x[:, corner[0], corner[1]].astype(float).std(axis=(1, 2)).mean()

    assert corner_std(quiet) < 1.0 < 20.0 < corner_std(noisy)


def test_shape_contrasts_with_background(tmp_path):
    root = make_shapes_dataset(
        tmp_path / "s", images_per_class=10, image_size=32, noise=0.0, shapes=("circle", "square")
    )
    x, _ = load_eval_set(root, 32)
    pixels = x.x.reshape(len(x), -1, 3).astype(float)
    for image in pixels:
        colours = np.unique(image, axis=0)
        background = image[0]
        assert np.linalg.norm(colours - background, axis=1).max() >= 100


def _shape_features(x: np.ndarray) -> np.ndarray:
    """Colour- and position-free features: how the foreground mass spreads around its centre."""
    x = x.astype(np.float32)
    n, s = x.shape[0], x.shape[1]
    small = x.reshape(n, s // 2, 2, s // 2, 2, 3).mean(axis=(2, 4))  # halves the noise
    border = np.concatenate([small[:, 0], small[:, -1], small[:, :, 0], small[:, :, -1]], axis=1)
    background = np.median(border, axis=1)
    masks = np.linalg.norm(small - background[:, None, None, :], axis=-1) > 60
    yy, xx = np.mgrid[0 : s // 2, 0 : s // 2]
    features = []
    for mask in masks:
        distance = np.hypot(yy[mask] - yy[mask].mean(), xx[mask] - xx[mask].mean())
        radius = distance.max() + 1e-6
        fill = mask.sum() / (np.pi * radius**2)
        profile = np.histogram(distance / radius, bins=6, range=(0, 1))[0] / mask.sum()
        features.append(np.concatenate([[fill], profile]))
    return np.array(features)


def test_classes_are_learnable(tmp_path):
    root = make_shapes_dataset(tmp_path / "s", images_per_class=40, image_size=64, seed=1)
    data, _ = load_eval_set(root, 64)
    features = _shape_features(data.x)
    fit = np.arange(len(features)) % 2 == 0
    centroids = np.stack([features[fit & (data.y == c)].mean(axis=0) for c in range(len(DEFAULT_SHAPES))])
    predicted = np.argmin(((features[~fit, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    accuracy = (predicted == data.y[~fit]).mean()
    assert accuracy > 0.6, accuracy  # chance is 0.25


def test_fast_enough(tmp_path):
    start = time.perf_counter()
    make_shapes_dataset(tmp_path / "s", images_per_class=100, image_size=64)
    assert time.perf_counter() - start < 5.0


def test_refuses_non_empty_root_unless_overwrite(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty") as info:
        make_shapes_dataset(root, images_per_class=1, image_size=16)
    assert str(root) in str(info.value)
    assert (root / "keep.txt").read_text() == "mine"

    make_shapes_dataset(root, images_per_class=1, image_size=16, overwrite=True)
    assert not (root / "keep.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == sorted(DEFAULT_SHAPES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]

    empty = tmp_path / "empty"
    empty.mkdir()
    make_shapes_dataset(empty, images_per_class=1, image_size=16)  # an empty folder is fine
    assert (empty / "circle" / "circle_0000.png").is_file()

    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        make_shapes_dataset(file, images_per_class=1, image_size=16, overwrite=True)


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        make_shapes_dataset(tmp_path / "s", images_per_class=1, image_size=16)
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path / f"s.tmp-{os.getpid()}").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shapes": ("circle", "blob")}, "blob"),
        ({"shapes": ("circle",)}, "at least 2"),
        ({"shapes": "circle"}, "list of shape names"),
        ({"images_per_class": 0}, "images_per_class=0"),
        ({"image_size": 2}, "image_size=2"),
        ({"noise": -1.0}, "noise=-1.0"),
        ({"min_scale": 0.9, "max_scale": 0.5}, "min_scale=0.9"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_shapes_dataset(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()
