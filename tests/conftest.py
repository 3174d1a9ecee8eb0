"""Shared fixtures: a generated image folder and ONE tiny trained -> QAT -> int8 chain.

TFLite conversion costs tens of seconds here even for a tiny model, so the expensive artifacts
are session-scoped and shared by every test that only reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import tiny_config  # noqa: E402  (after the TF log level)


@pytest.fixture(scope="session", autouse=True)
def _edgetl_cache_dir(tmp_path_factory):
    """Keep the decode cache and digest memo out of the real ~/.cache (child processes inherit it too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETL_CACHE_DIR", str(tmp_path_factory.mktemp("edgetl-cache")))
        yield


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from edgetl.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path_factory.mktemp("data") / "shapes", images_per_class=60, image_size=40, seed=0,
        noise=0.05, min_scale=0.5, palette="light-on-dark",
    )


@pytest.fixture(scope="session")
def trained_run(shapes_dir, tmp_path_factory):
    """A float training run folder (weights=none) and its TrainResult."""
    from edgetl.ml.train import train

    return train(tiny_config(shapes_dir), tmp_path_factory.mktemp("runs") / "float")


@pytest.fixture(scope="session")
def qat_run(trained_run, shapes_dir, tmp_path_factory):
    from edgetl.ml.qat import qat
    from edgetl.pipeline.build import _clone

    out = tmp_path_factory.mktemp("runs") / "qat"
    float_copy = _clone(trained_run.model)  # QAT must not alter the float model other tests read
    return qat(
        tiny_config(shapes_dir), float_copy, class_names=trained_run.class_names, contract=trained_run.contract,
        split=trained_run.split, out_dir=out,
    )


@pytest.fixture(scope="session")
def int8_export(qat_run, shapes_dir, tmp_path_factory):
    """(artifact path, metadata) of the QAT model exported to full-integer int8 TFLite."""
    from edgetl.pipeline.api import export_model

    out = tmp_path_factory.mktemp("exports") / "int8"
    return export_model(qat_run.out_dir, "tflite-int8", data=shapes_dir, out=out, samples=16)


@pytest.fixture(scope="session")
def fp32_export(trained_run, shapes_dir, tmp_path_factory):
    from edgetl.pipeline.api import export_model

    out = tmp_path_factory.mktemp("exports") / "fp32"
    return export_model(trained_run.out_dir, "tflite-fp32", data=shapes_dir, out=out)
