"""The Android README names a real LiteRT release, the one matching the pinned ai-edge-litert."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from edgetl.core.contract import PreprocessContract
from edgetl.core.metadata import ModelInfo
from edgetl.package.apps import LITERT_ANDROID_VERSION, android_readme
from edgetl.package.render import template

ROOT = Path(__file__).resolve().parents[3]


def _readme() -> str:
    info = ModelInfo(["cat", "dog"], PreprocessContract.from_dict({
        "input_size": 32, "mean": [127.5] * 3, "std": [127.5] * 3, "resize": "bilinear", "channel_order": "RGB",
        "layout": "NHWC", "pixel_range": [0, 255],
    }, source="test"))
    inp = {"dtype": "int8", "shape": [1, 32, 32, 3], "scale": 0.0078125, "zero_point": -1}
    out = {"dtype": "int8", "shape": [1, 2], "scale": 0.00390625, "zero_point": -128}
    return android_readme("model.tflite", info, inp, out)


def test_android_snippet_names_a_real_litert_version():
    text = _readme()
    assert "<version>" not in text and "<version>" not in template("README-android.md.tmpl")
    assert f'implementation("com.google.ai.edge.litert:litert:{LITERT_ANDROID_VERSION}")' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+", LITERT_ANDROID_VERSION)


def test_litert_android_version_matches_the_pinned_python_package():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [req for reqs in extras.values() for req in reqs if re.match(r"ai-edge-litert\s*==", req)]
    assert pins, "the train extra pins ai-edge-litert==X.Y.Z"
    assert {pin.split("==", 1)[1].strip() for pin in pins} == {LITERT_ANDROID_VERSION}
