"""`edgetl eval ARTIFACT DATA --split val`: the build's held-out images only, chosen by what edgetl.json records."""

from __future__ import annotations

import json
import shutil

import pytest

from edgetl.core.errors import ConfigError, DataError
from edgetl.device.evaluate import evaluate
from tests.helpers import assert_one_line_error, run_cli, tiny_config


def _meta(artifact):
    return json.loads((artifact.parent / "edgetl.json").read_text())


def test_export_records_the_split(int8_export, shapes_dir):
    record = _meta(int8_export[0])["data_split"]
    assert record["seed"] == 0 and record["val_split"] == 0.25 and record["val_path"] is None
    assert record["val_images"] == len(record["val_files"]) == _meta(int8_export[0])["accuracy"]["images"]
    assert not set(record["val_files"]) & set(record["train_files"])
    assert all((shapes_dir / f).is_file() for f in record["val_files"][:5]) and "/" in record["val_files"][0]


def test_split_val_reproduces_the_recorded_top1(int8_export, shapes_dir):
    artifact = int8_export[0]
    meta = _meta(artifact)
    val = evaluate(artifact, shapes_dir, split="val")
    assert val.split == "val" and val.data_note is None
    assert val.metrics.num_images == meta["accuracy"]["images"]
    assert val.metrics.top1 == pytest.approx(meta["accuracy"]["artifact_top1"], abs=1e-9)
    train = evaluate(artifact, shapes_dir, split="train")
    whole = evaluate(artifact, shapes_dir)
    assert train.metrics.num_images == meta["data_split"]["train_images"]
    assert whole.metrics.num_images == train.metrics.num_images + val.metrics.num_images and whole.split == "all"


def test_cli_split_val_and_json(int8_export, shapes_dir):
    artifact = int8_export[0]
    meta = _meta(artifact)
    result = run_cli("eval", artifact.parent, "--data", shapes_dir, "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["split"] == "val" and doc["num_images"] == meta["accuracy"]["images"]
    assert doc["top1"] == pytest.approx(meta["accuracy"]["artifact_top1"])
    text = run_cli("eval", artifact, "--data", shapes_dir, "--split", "val")
    assert text.exit_code == 0 and f"on {meta['accuracy']['images']} validation images" in " ".join(text.stdout.split())
    assert_one_line_error(run_cli("eval", artifact, "--data", shapes_dir, "--split", "test"), "--split 'test'", "all, train, val")


def test_changed_folder_is_named_in_one_line(int8_export, shapes_dir, tmp_path):
    artifact = int8_export[0]
    record = _meta(artifact)["data_split"]
    data = tmp_path / "shapes"
    shutil.copytree(shapes_dir, data)
    gone = record["val_files"][0]
    (data / gone).unlink()
    shutil.copy(data / record["train_files"][0], data / "circle" / "zz_new.png")
    report = evaluate(artifact, data, split="val")
    assert report.metrics.num_images == record["val_images"] - 1
    note = report.data_note
    assert note is not None and "\n" not in note
    assert "1 file(s) missing" in note and gone in note and "1 file(s) added" in note and "circle/zz_new.png" in note
    result = run_cli("eval", artifact, "--data", data, "--split", "val")
    assert result.exit_code == 0 and "changed since the build" in " ".join(result.stderr.split())
    with pytest.raises(DataError, match="none of the"):
        evaluate(artifact, _empty_like(data, tmp_path), split="val")


def _empty_like(data, tmp_path):
    """The same classes, none of the recorded files."""
    other = tmp_path / "other"
    for cls in ("circle", "square", "star", "triangle"):
        (other / cls).mkdir(parents=True)
        shutil.copy(next((data / cls).glob("*.png")), other / cls / "renamed.png")
    return other


def test_without_a_file_list_the_split_is_recomputed(int8_export, shapes_dir, tmp_path):
    artifact, _ = int8_export
    folder = tmp_path / "older"
    shutil.copytree(artifact.parent, folder)
    meta = _meta(artifact)
    del meta["data_split"]  # an artifact made before data_split existed: config.data still has seed and val_split
    (folder / "edgetl.json").write_text(json.dumps(meta))
    report = evaluate(folder / artifact.name, shapes_dir, split="val")
    assert report.metrics.top1 == pytest.approx(meta["accuracy"]["artifact_top1"]) and "recomputed from seed 0" in report.data_note
    lone = tmp_path / "lone.tflite"  # no edgetl.json at all: nothing records the split
    shutil.copy(artifact, lone)
    with pytest.raises(ConfigError, match="records none"):
        evaluate(lone, shapes_dir, split="val")


@pytest.mark.slow
def test_real_build_eval_split_val_matches_edgetl_json(trained_run, qat_run, shapes_dir, tmp_path):
    """A real `build` (reusing the session's float and QAT runs): eval --split val gives its recorded top-1."""
    from edgetl.pipeline.build import build

    config = tiny_config(shapes_dir, out=str(tmp_path / "build"), export={"compare_ptq": False, "companion": False})
    root = tmp_path / "build" / "shapes"
    shutil.copytree(trained_run.out_dir, root / "float")
    shutil.copytree(qat_run.out_dir, root / "qat")
    result = build(config)
    meta = json.loads((result.out_dir / "edgetl.json").read_text())
    out = run_cli("eval", result.out_dir, "--data", shapes_dir, "--split", "val", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["num_images"] == meta["accuracy"]["images"] == meta["data_split"]["val_images"]
    assert doc["top1"] == pytest.approx(meta["accuracy"]["artifact_top1"])
