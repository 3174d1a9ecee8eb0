"""edgetl.core.metadata.ArtifactMetadata: the typed edgetl.json keeps each writer's key order and reads back what it wrote."""

from __future__ import annotations

import json

import pytest

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError
from edgetl.core.metadata import SCHEMA_VERSION, ArtifactMetadata, read_model_info


def _meta() -> ArtifactMetadata:
    return ArtifactMetadata.create(
        kind="keras-float", fingerprint="abc", model_file="model.keras", backbone="mobilenet_v2",
        class_names=["cat", "dog"], preprocessing=PreprocessContract(32).to_dict(), val_accuracy=0.5, versions={"python": "3"},
    )


def test_keys_are_written_in_the_order_given_with_schema_version_first(tmp_path):
    meta = _meta()
    meta.update({"accuracy": {"top1": 1.0}, "kind": "keras-qat"})
    path = meta.write(tmp_path)
    data = json.loads(path.read_text())
    assert list(data) == ["schema_version", "kind", "fingerprint", "model_file", "backbone", "class_names", "preprocessing", "val_accuracy", "versions", "accuracy"]
    assert data["schema_version"] == SCHEMA_VERSION and data["kind"] == "keras-qat" and meta.extra["accuracy"] == {"top1": 1.0}


def test_read_gives_back_the_same_json_and_model_info(tmp_path):
    written = _meta()
    written.write(tmp_path)
    read = ArtifactMetadata.read(tmp_path)
    assert read.to_json() == written.to_json() and list(read.to_json()) == list(written.to_json())
    assert read.contract.input_size == 32 and read["val_accuracy"] == 0.5 and "nothing" not in read
    info = read_model_info(tmp_path / "model.keras")
    assert info.class_names == ["cat", "dog"] and info.backbone == "mobilenet_v2" and info.extra == written.to_json()


def test_a_model_file_outside_the_folder_is_refused(tmp_path):
    data = _meta().to_json() | {"model_file": "../x.keras"}
    (tmp_path / "edgetl.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="not a file name inside its folder"):
        ArtifactMetadata.read(tmp_path)


def test_a_build_folder_names_the_artifact_folders_inside_it(tmp_path):
    """`edgetl eval build/data` (the build, not one of its artifacts) says which folders to pass instead."""
    build = tmp_path / "build" / "data"
    for name in ("float", "qat", "tflite-int8", "ptq-int8"):
        (build / name).mkdir(parents=True)
        (build / name / "edgetl.json").write_text("{}")
    (build / ".tflite-int8.tmp-1").mkdir()
    with pytest.raises(ArtifactError) as info:
        ArtifactMetadata.read(build)
    message = str(info.value)
    assert f"pass one of them: {build / 'ptq-int8'}, {build / 'tflite-int8'}, {build / 'float'}, {build / 'qat'}" in message
    assert ".tmp" not in message and "\n" not in message
    with pytest.raises(ArtifactError, match="no edgetl.json beside"):  # an ordinary folder: the message as before
        ArtifactMetadata.read(tmp_path / "elsewhere")
