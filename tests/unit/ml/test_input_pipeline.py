"""edgetl.ml.phases.make_dataset: the in-memory and the streamed (memory-mapped) input pipelines."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.contract import PreprocessContract
from edgetl.data.split import ImageData
from edgetl.ml import phases
from edgetl.ml.phases import make_dataset

CONTRACT = PreprocessContract(input_size=32)


def images(n: int, seed: int = 0) -> ImageData:
    x = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256  # row identity, read back below
    x[:, 0, 0, 1] = np.arange(n) // 256
    return ImageData(x=x, y=np.arange(n, dtype=np.int64) % 5, paths=[Path(f"{i}.png") for i in range(n)])


def mapped(data: ImageData, folder: Path) -> ImageData:
    np.save(folder / "x.npy", data.x)
    x = np.load(folder / "x.npy", mmap_mode="r", allow_pickle=False)
    assert isinstance(x, np.memmap)
    return ImageData(x=x, y=data.y, paths=data.paths)


def row_ids(batch_x: np.ndarray) -> np.ndarray:
    pixels = np.rint(batch_x[:, 0, 0, :2] * 127.5 + 127.5).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1]


def test_streamed_batches_equal_in_memory_batches(tmp_path):
    data = images(70)
    in_memory = list(make_dataset(data, CONTRACT, 16, shuffle=False, augment=False, seed=0).as_numpy_iterator())
    streamed_ds = make_dataset(mapped(data, tmp_path), CONTRACT, 16, shuffle=False, augment=False, seed=0)
    streamed = list(streamed_ds.as_numpy_iterator())
    assert streamed_ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    assert len(in_memory) == len(streamed) == 5
    for (ax, ay), (bx, by) in zip(in_memory, streamed, strict=True):
        assert ax.dtype == bx.dtype == np.float32 and ay.dtype == by.dtype == np.int64
        assert np.array_equal(ax, bx) and np.array_equal(ay, by)
    assert np.array_equal(np.concatenate([b[0] for b in streamed]), (data.x.astype(np.float32) - 127.5) / 127.5)


def test_streamed_epoch_yields_every_image_once(tmp_path):
    data = mapped(images(300), tmp_path)
    ds = make_dataset(data, CONTRACT, 32, shuffle=True, augment=False, seed=3)
    orders = []
    for _ in range(2):
        batches = list(ds.as_numpy_iterator())
        ids = np.concatenate([row_ids(x) for x, _ in batches])
        labels = np.concatenate([y for _, y in batches])
        assert sorted(ids.tolist()) == list(range(300))
        assert np.array_equal(labels, data.y[ids]), "a label left its image"
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1]), "reshuffled each epoch"
    assert not np.array_equal(orders[0], np.arange(300))


def test_streamed_augmented_dataset_trains(tmp_path):
    data = mapped(images(96), tmp_path)
    ds = make_dataset(data, CONTRACT, 32, shuffle=True, augment=True, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (32, 32, 32, 3) and x.dtype.name == "float32" and y.shape == (32,)
    assert float(np.min(x)) >= -1.0 and float(np.max(x)) <= 1.0
    assert sum(int(b[0].shape[0]) for b in ds) == 96


def test_large_in_memory_arrays_are_streamed(monkeypatch):
    data = images(40)
    monkeypatch.setattr(phases, "STREAM_BYTES", 1000)
    streamed = list(make_dataset(data, CONTRACT, 16, shuffle=False, augment=False, seed=0).as_numpy_iterator())
    monkeypatch.setattr(phases, "STREAM_BYTES", 1 << 40)
    sliced = list(make_dataset(data, CONTRACT, 16, shuffle=False, augment=False, seed=0).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(streamed, sliced, strict=True))


def test_data_set_larger_than_the_memory_budget(tmp_path):
    """Streaming a map of 8,000 images keeps at most a few batches in memory (tracemalloc sees numpy's
    allocations, not the file's mapped pages)."""
    n = 8000
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
    rng = np.random.default_rng(0)
    for start in range(0, n, 1000):
        out[start : start + 1000] = rng.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)
    out.flush()
    del out
    x = np.load(path, mmap_mode="r", allow_pickle=False)
    data = ImageData(x=x, y=np.zeros(n, dtype=np.int64), paths=[Path("x")] * n)
    budget = x.nbytes // 8
    ds = make_dataset(data, CONTRACT, 64, shuffle=True, augment=False, seed=0)
    tracemalloc.start()
    try:
        seen = 0
        total = 0.0
        for batch_x, _ in ds:
            seen += int(batch_x.shape[0])
            total += float(batch_x[0, 0, 0, 0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == n
    assert peak < budget, f"peak {peak / 2**20:.1f} MiB over the {budget / 2**20:.1f} MiB budget ({x.nbytes / 2**20:.1f} MiB of images)"


@pytest.mark.parametrize("n", [1, 17])
def test_small_streamed_sets(tmp_path, n):
    data = mapped(images(n), tmp_path)
    batches = list(make_dataset(data, CONTRACT, 8, shuffle=True, augment=False, seed=0).as_numpy_iterator())
    assert sum(b[0].shape[0] for b in batches) == n
