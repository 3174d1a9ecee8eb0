"""Issue 12, finding 8: `edgetl package --for c` measures the arena of the default backbone.

TFLite Micro's Python interpreter segfaults (instead of raising) when an arena is too small for
MobileNetV2 1.0; the bisection used to probe every size inside one child, so the first small probe
killed the whole measurement ("TFLite Micro's interpreter crashed ... it cannot run it"). Each probe
now runs in a child of its own (a crash = "does not fit"), from a lower bound read from the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgetl.package.stage import package
from edgetl.runtime.tflm import arena_lower_bound, probe_arena
from tests.helpers import compile_and_run_c_package


def mobilenet_v2_int8(alpha: float, size: int, out_dir: Path) -> Path:
    """MobileNetV2 (``weights=None``) with a 3-class head, full-integer int8 by post-training quantization,
    with edgetl's metadata beside it. BatchNorm statistics are re-estimated on the calibration batch first
    (one forward pass in training mode, momentum 0), as a trained model would have them."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgetl.core.contract import PreprocessContract
    from edgetl.export.tflite import convert
    from edgetl.ml._keras import keras as _keras

    keras = _keras()
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, include_top=False)
    head = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base.output))
    model = keras.Model(base.input, head)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    contract = PreprocessContract(input_size=size)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(contract.normalize(pixels), training=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.tflite"
    path.write_bytes(convert(model, "tflite-int8", representative=pixels, contract=contract))
    meta = {"class_names": ["a", "b", "c"], "preprocessing": contract.to_dict(), "model_file": path.name}
    (out_dir / "edgetl.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def _compile(out: Path, tmp_path: Path) -> int:
    """Compile and run the package's C; the kTensorArenaSize it was built with."""
    return int(compile_and_run_c_package(out, tmp_path / "cc")["arena"])


def _packages_for_c(alpha: float, size: int, tmp_path: Path) -> None:
    model = mobilenet_v2_int8(alpha, size, tmp_path / "model")
    data = model.read_bytes()
    bound = arena_lower_bound(data)
    out = tmp_path / "c"
    result = package(model, "c", out)
    arena = result.report["tflm"]["arena"]
    measured = arena["measured_bytes"]
    assert measured % 16 == 0 and measured > bound > 0
    # minimal to 16 bytes: the measured arena runs the model, 16 bytes less does not (fails or crashes the interpreter)
    assert probe_arena(data, measured, invoke=True) == ("ok", None)
    assert probe_arena(data, measured - 16)[0] in ("fail", "crash")
    assert result.report["tflm"]["parity"]["against_litert_reference_kernels"]["max_abs_diff_lsb"] <= 1
    assert _compile(out, tmp_path) == arena["arena_bytes"]


def test_package_c_on_mobilenet_v2_1_0_at_32px(tmp_path):
    _packages_for_c(1.0, 32, tmp_path)


@pytest.mark.slow
def test_package_c_on_mobilenet_v2_1_0_at_224px(tmp_path):
    _packages_for_c(1.0, 224, tmp_path)


def test_a_probe_that_crashes_the_interpreter_is_a_failed_probe_not_a_dead_measurement():
    from tests.helpers import bit_flips  # noqa: F401 - the helpers import without edgetl

    status, detail = probe_arena(b"\0" * 64, 1 << 16)  # not a model at all: refused or crashed, in the child
    assert status in ("fail", "crash"), (status, detail)
