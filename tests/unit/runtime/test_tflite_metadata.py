"""Labels and preprocessing contract inside the .tflite itself: written at export, read back without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.errors import ArtifactError
from edgetl.core.metadata import EMBEDDED_METADATA_NAME, model_info_from_embedded
from edgetl.runtime.formats import model_info_for
from edgetl.runtime.litert import LiteRTModel
from edgetl.runtime.tflite_file import add_tflite_metadata, tflite_metadata, tflite_operator_counts

runner = CliRunner()


def _embedded(path):
    return model_info_from_embedded(tflite_metadata(path)[EMBEDDED_METADATA_NAME], path)


def _original_flatbuffer(data: bytes) -> bytes:
    """The converter's own bytes: add_tflite_metadata puts a new root table (a multiple of 16 bytes) in front of them."""
    for shift in range(16, len(data), 16):
        if data[shift + 4 : shift + 8] == b"TFL3":
            return data[shift:]
    raise AssertionError("no original flatbuffer inside")


@pytest.mark.parametrize("fixture", ["int8_export", "fp32_export"])
def test_export_embeds_labels_and_contract(fixture, request):
    path, meta = request.getfixturevalue(fixture)
    info = _embedded(path)
    assert info.class_names == meta["class_names"] == ["circle", "square", "star", "triangle"]
    assert info.contract.to_dict() == meta["preprocessing"]
    entries = tflite_metadata(path)
    assert {"min_runtime_version", EMBEDDED_METADATA_NAME} <= set(entries), "the converter's own entries are kept"
    assert json.loads(entries[EMBEDDED_METADATA_NAME])["target"] == meta["target"]


def test_embedding_changes_no_weight_and_no_output(int8_export, shapes_dir):
    path, meta = int8_export
    data = path.read_bytes()
    original = _original_flatbuffer(data)
    assert EMBEDDED_METADATA_NAME not in tflite_metadata(original)
    assert tflite_operator_counts(original) == tflite_operator_counts(data)
    plain = path.parent / "plain.tflite"
    plain.write_bytes(original)
    try:
        from edgetl.data.split import load_eval_set

        images, _ = load_eval_set(shapes_dir, meta["preprocessing"]["input_size"], class_names=meta["class_names"])
        x = model_info_for(path).contract.normalize(images.x)
        for kwargs in ({}, {"use_xnnpack": False}, {"reference_kernels": True}):
            assert np.array_equal(LiteRTModel(path, **kwargs).predict(x), LiteRTModel(plain, **kwargs).predict(x))
    finally:
        plain.unlink()


def test_adding_an_entry_keeps_alignment_and_replaces_by_name(int8_export):
    data = int8_export[0].read_bytes()
    once = add_tflite_metadata(data, "notes", b"first")
    twice = add_tflite_metadata(once, "notes", b"second")
    assert once.endswith(data) and (len(once) - len(data)) % 16 == 0, "the original bytes (and weight alignment) are kept"
    entries = tflite_metadata(twice)
    assert entries["notes"] == b"second" and list(entries).count("notes") == 1
    assert entries[EMBEDDED_METADATA_NAME] == tflite_metadata(data)[EMBEDDED_METADATA_NAME]
    with pytest.raises(ArtifactError, match="not a TFLite model"):
        add_tflite_metadata(b"hello, this is not a model", "notes", b"x")


def test_eval_works_on_a_lone_tflite(int8_export, shapes_dir, tmp_path):
    path, _ = int8_export
    lone = tmp_path / "empty" / "classifier.tflite"
    lone.parent.mkdir()
    lone.write_bytes(path.read_bytes())
    beside = runner.invoke(app, ["eval", str(path), "--data", str(shapes_dir), "--json"])
    alone = runner.invoke(app, ["eval", str(lone), "--data", str(shapes_dir), "--json"])
    assert beside.exit_code == 0 and alone.exit_code == 0, alone.output + alone.stderr
    assert json.loads(alone.stdout)["top1"] == json.loads(beside.stdout)["top1"]
    assert json.loads(alone.stdout)["confusion"] == json.loads(beside.stdout)["confusion"]


def test_reading_embedded_metadata_needs_no_tensorflow(int8_export, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(int8_export[0].read_bytes())
    code = (
        "import sys, json; from edgetl.runtime.formats import model_info_for; "
        f"info = model_info_for({str(lone)!r}); "
        "assert 'tensorflow' not in sys.modules, 'TF imported'; "
        "print(json.dumps(info.class_names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["circle", "square", "star", "triangle"]


def test_foreign_entry_under_our_name_is_a_clear_error(int8_export, tmp_path):
    odd = tmp_path / "odd.tflite"
    odd.write_bytes(add_tflite_metadata(int8_export[0].read_bytes(), EMBEDDED_METADATA_NAME, b"not json"))
    with pytest.raises(ArtifactError, match="not edgetl metadata"):
        model_info_for(odd)
