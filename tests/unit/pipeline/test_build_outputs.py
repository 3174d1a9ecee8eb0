"""What a build shows and keeps (issue 14, items 1, 3, 4 and 8).

1: a rebuild deletes nothing it did not make (foreign entries of a replaced stage folder are
   carried over, with a warning), and ``edgetl package`` writes outside the build's folders.
3: the better int8 model on the validation split ships (QAT on a tie), and the build says which and why.
4: every path a user reads (logs, ``edgetl.json``, ``report.md``, ``result.summary``) is the final
   one, never a ``.tmp-`` staging folder.
8: stage reuse is said at INFO (which ``edgetl build`` shows), the summary names the packages.

One real tiny build (its float and QAT stages copied from the session fixtures, so only export,
verification, PTQ, companion, latency and packaging run) backs the build-level checks.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core import fs as _fs
from edgetl.pipeline.compare import choose_int8
from edgetl.pipeline.report import vs_float
from tests.helpers import tiny_config

runner = CliRunner()


# ----------------------------------------------------------------------------------------- pure parts


def test_final_path_names_the_folder_a_staged_one_becomes():
    assert _fs.final_path(Path("build/data/.tflite-int8.tmp-17306/model.tflite")) == Path("build/data/tflite-int8/model.tflite")
    assert _fs.final_path(Path("/x/.model.tmp-12.tflite")) == Path("/x/model.tflite")
    assert _fs.final_path(Path("/x/.my.data.tmp-3/a.onnx")) == Path("/x/my.data/a.onnx")
    assert _fs.final_path(Path("/x/.hidden/model.tflite")) == Path("/x/.hidden/model.tflite")  # not a temporary name
    with _fs.atomic_dir(Path("/tmp") / "edgetl-final-path-check") as staging:
        assert ".tmp-" in str(staging) and _fs.final_path(staging / "m.tflite") == Path("/tmp/edgetl-final-path-check/m.tflite")
    shutil.rmtree("/tmp/edgetl-final-path-check", ignore_errors=True)


@pytest.mark.parametrize(
    "qat, ptq, mode, shipped, words",
    [
        (0.335, 0.375, "qat", "ptq", ["PTQ int8 ships", "37.5%", "33.5%", "higher"]),
        (0.99, 1.0, "qat", "ptq", ["PTQ int8 ships", "100.0%", "99.0%"]),
        (0.95, 0.95, "qat", "qat", ["tie", "95.0%", "QAT"]),
        (0.96, 0.90, "qat", "qat", ["QAT int8 ships", "96.0%", "90.0%"]),
        (0.96, None, "qat", "qat", ["compare_ptq = false"]),
        (None, 0.9, "ptq", "ptq", ["--mode ptq"]),
    ],
)
def test_the_better_int8_model_ships_and_a_tie_goes_to_qat(qat, ptq, mode, shipped, words):
    choice = choose_int8(qat, ptq, 200, mode=mode)
    assert choice["shipped"] == shipped
    assert choice["qat_int8_top1"] == qat and choice["ptq_int8_top1"] == ptq and choice["split"] == "validation"
    for word in words:
        assert word in choice["reason"], choice["reason"]


def test_top1_against_float_reads_one_way():
    assert vs_float(0.055) == "5.5 pts lower than float"
    assert vs_float(-0.005) == "0.5 pts higher than float"
    assert vs_float(0.0) == "same as float" and vs_float(1e-6) == "same as float"
    assert vs_float(float("nan")) == "n/a"


def test_rebuild_carries_over_what_it_did_not_make(tmp_path, caplog):
    from edgetl.pipeline.build import keep_foreign

    old = tmp_path / "build" / "data" / "tflite-int8"
    (old / "package-android").mkdir(parents=True)
    (old / "package-android" / "package.json").write_text('{"kind": "edgetl-package"}')
    (old / "package-c").mkdir()
    (old / "package-c" / "model_data.cc").write_text("old build's own package")
    (old / "model.tflite").write_bytes(b"old model")
    (old / "model.onnx").write_bytes(b"old companion")
    (old / "notes.txt").write_text("mine")
    (old / "link").symlink_to("notes.txt")
    (old / ".model.tmp-999999.tflite").write_bytes(b"stale temporary")
    (old / "edgetl.json").write_text(json.dumps({"model_file": "model.tflite", "packages": {"c": {"folder": "package-c"}}}))
    caplog.set_level(logging.WARNING)
    with _fs.staged_dirs() as stage:
        new = stage(old)
        (new / "model.tflite").write_bytes(b"new model")
        (new / "edgetl.json").write_text("{}")
        kept = keep_foreign([(new, old)])
        assert (old / "notes.txt").read_text() == "mine", "the old folder changed before the swap"
    assert sorted(p.name for p in kept) == ["link", "notes.txt", "package-android"]
    assert sorted(p.name for p in old.iterdir()) == ["edgetl.json", "link", "model.tflite", "notes.txt", "package-android"]
    assert (old / "model.tflite").read_bytes() == b"new model" and (old / "notes.txt").read_text() == "mine"
    assert (old / "package-android" / "package.json").is_file() and (old / "link").is_symlink()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"kept {old / 'package-android'} which this build did not make" in m for m in messages), messages
    assert not [p for p in (tmp_path / "build").rglob("*") if ".old-" in p.name]


def test_default_package_folder_is_outside_what_a_rebuild_replaces(tmp_path):
    from edgetl.package.stage import default_package_dir

    build_dir = tmp_path / "build" / "data" / "tflite-int8"
    build_dir.mkdir(parents=True)
    (build_dir / "model.tflite").write_bytes(b"x")
    (build_dir / "model.onnx").write_bytes(b"x")
    (build_dir / "edgetl.json").write_text(json.dumps({"model_file": "model.tflite", "name": "data"}))
    assert default_package_dir(build_dir, "android") == tmp_path / "build" / "data-packages" / "tflite-int8-android"
    assert default_package_dir(build_dir / "model.tflite", "c") == tmp_path / "build" / "data-packages" / "tflite-int8-c"
    assert default_package_dir(build_dir / "model.onnx", "python") == tmp_path / "build" / "data-packages" / "tflite-int8-onnx-python"

    export = tmp_path / "runs" / "float-tflite-int8"
    export.mkdir(parents=True)
    (export / "model.tflite").write_bytes(b"x")
    (export / "edgetl.json").write_text(json.dumps({"model_file": "model.tflite"}))
    assert default_package_dir(export, "ios") == tmp_path / "runs" / "float-tflite-int8-ios"

    bare = tmp_path / "mine" / "flowers.tflite"
    bare.parent.mkdir()
    bare.write_bytes(b"x")
    assert default_package_dir(bare, "python") == tmp_path / "mine" / "flowers-python"


def test_package_without_out_leaves_the_build_folder_alone(int8_export, tmp_path):
    """`edgetl package build/data/tflite-int8 --for python` (no --out) writes build/data-packages/tflite-int8-python/."""
    target = tmp_path / "build" / "data" / "tflite-int8"
    shutil.copytree(int8_export[0].parent, target)
    meta = json.loads((target / "edgetl.json").read_text())
    (target / "edgetl.json").write_text(json.dumps({**meta, "name": "data"}))  # what a build stamps
    before = sorted(p.name for p in target.iterdir())
    result = runner.invoke(app, ["package", str(target), "--for", "python"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + result.stderr
    out = tmp_path / "build" / "data-packages" / "tflite-int8-python"
    assert (out / "package.json").is_file() and (out / "predict.py").is_file()
    assert sorted(p.name for p in target.iterdir()) == before, "the package was written into the build's folder"
    assert str(out) in result.stdout.replace("\n", "")


def test_build_cli_shows_its_own_info_messages_without_verbose():
    from edgetl.cli.build import show_build_steps
    from edgetl.cli.console import setup_logging

    build_log = logging.getLogger("edgetl.pipeline.build")
    level = build_log.level
    try:
        setup_logging(0)
        show_build_steps(0)
        assert build_log.isEnabledFor(logging.INFO)
        assert not logging.getLogger("edgetl.ml.train").isEnabledFor(logging.INFO)  # the stages' chatter stays behind -v
    finally:
        build_log.setLevel(level)


# ----------------------------------------------------------------------------------------- one real build


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _set_fingerprint(folder: Path, value: str) -> None:
    marker = folder / _fs.MARKER
    meta = json.loads(marker.read_text())
    meta["fingerprint"] = value
    marker.write_text(json.dumps(meta))


def _spoil_qat_head(qat_dir: Path) -> None:
    """Rotate the QAT model's class columns: a real (if useless) QAT model whose int8 export is far
    worse than PTQ of the float model, so the build must ship PTQ."""
    from edgetl.ml.model_io import load_keras_artifact

    model, _ = load_keras_artifact(qat_dir)
    head = next(layer for layer in reversed(model.layers) if any(v.name.endswith("kernel:0") for v in layer.weights))
    for variable in head.weights:  # the wrapper's own variables (the inner layer's kernel is a fake-quant tensor)
        if variable.name.endswith(("kernel:0", "bias:0")):
            variable.assign(np.roll(variable.numpy(), 1, axis=-1))
    spoiled = qat_dir / "spoiled.h5"
    model.save(spoiled)
    spoiled.replace(qat_dir / "qat_model.h5")


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, shapes_dir, trained_run, qat_run, int8_export):
    """A previous build (float/, a spoiled qat/, tflite-int8/ holding a user's package and notes), built again."""
    from edgetl.core.fingerprint import after_parent, stage_fingerprints
    from edgetl.pipeline.build import build

    tmp = tmp_path_factory.mktemp("rebuild")
    config = tiny_config(shapes_dir, out=str(tmp / "build"), package={"targets": ["python"]})
    fps = stage_fingerprints(config)
    root = tmp / "build" / "shapes"
    shutil.copytree(trained_run.out_dir, root / "float")
    shutil.copytree(qat_run.out_dir, root / "qat")
    _spoil_qat_head(root / "qat")
    shutil.copytree(int8_export[0].parent, root / "tflite-int8")
    _set_fingerprint(root / "float", fps["train"])
    _set_fingerprint(root / "qat", after_parent(fps["qat"], root / "float" / "model.keras"))
    _set_fingerprint(root / "tflite-int8", fps["export"])
    # What `edgetl package build/shapes/tflite-int8 --for android` used to write by default, and a note.
    foreign = root / "tflite-int8" / "package-android"
    foreign.mkdir()
    (foreign / "package.json").write_text('{"kind": "edgetl-package"}')
    (root / "tflite-int8" / "notes.txt").write_text("mine")

    handler = _Records()
    edgetl_log = logging.getLogger("edgetl")
    level = edgetl_log.level
    edgetl_log.addHandler(handler)
    edgetl_log.setLevel(logging.INFO)
    try:
        result = build(config)
    finally:
        edgetl_log.removeHandler(handler)
        edgetl_log.setLevel(level)
    return root, result, handler.records


def test_no_temporary_path_reaches_the_user(rebuilt):
    root, result, records = rebuilt
    seen = {
        "tflite-int8/edgetl.json": (root / "tflite-int8" / "edgetl.json").read_text(),
        "ptq-int8/edgetl.json": (root / "ptq-int8" / "edgetl.json").read_text(),
        "report.md": (root / "tflite-int8" / "report.md").read_text(),
        "package.json": (root / "tflite-int8" / "package-python" / "package.json").read_text(),
        "result.summary": json.dumps(result.summary, default=str),
        "logs": "\n".join(r.getMessage() for r in records),
    }
    for where, text in seen.items():
        assert ".tmp-" not in text, (where, [line for line in text.splitlines() if ".tmp-" in line][:3])
    meta = json.loads(seen["tflite-int8/edgetl.json"])
    for entry in meta["latency"] + meta["accuracy"]["companion"]["latency"]:
        assert Path(entry["artifact"]).parent == root / "tflite-int8", entry["artifact"]
    assert str(root / "tflite-int8" / "model.tflite") in seen["logs"]  # the exporter's "wrote ..." line names the final file


def test_stage_reuse_is_said_at_info(rebuilt):
    root, _, records = rebuilt
    reuse = [r for r in records if r.name == "edgetl.pipeline.build" and r.levelno == logging.INFO and "reusing" in r.getMessage()]
    messages = [r.getMessage() for r in reuse]
    assert any(m.startswith(f"reusing the trained float model from {root / 'float'}") for m in messages), messages
    assert any(m.startswith(f"reusing the QAT model from {root / 'qat'}") for m in messages), messages


def test_ptq_ships_when_it_is_better_and_the_build_says_why(rebuilt):
    root, result, records = rebuilt
    meta = json.loads((root / "tflite-int8" / "edgetl.json").read_text())
    choice = meta["accuracy"]["int8_choice"]
    assert choice["ptq_int8_top1"] > choice["qat_int8_top1"], choice  # the spoiled QAT head
    assert choice["shipped"] == "ptq" and result.summary["int8_choice"] == choice
    assert (root / "tflite-int8" / "model.tflite").read_bytes() == (root / "ptq-int8" / "model.tflite").read_bytes()
    assert meta["quantization_mode"] == "ptq" and meta["accuracy"]["source"] == "ptq-calibrated float"
    assert meta["accuracy"]["artifact_top1"] == pytest.approx(choice["ptq_int8_top1"])
    assert meta["int8_ranges"].startswith("TFLite converter calibration") or "calibrated" in meta["int8_ranges"]
    assert any(r.name == "edgetl.pipeline.build" and r.levelno >= logging.INFO and r.getMessage() == choice["reason"] for r in records)
    report = (root / "tflite-int8" / "report.md").read_text()
    assert f"Shipped: {choice['reason']}." in report
    assert "PTQ int8 (tflite-int8, LiteRT, shipped)" in report and "QAT int8 (tflite-int8, LiteRT, not shipped)" in report
    assert "top-1 vs float" in report and not re.search(r"[+-]\d+\.\d pts", report), "a signed number that reads both ways"
    assert re.search(r"\| \d+\.\d pts (lower|higher) than float \||\| same as float \|", report)


def test_rebuild_kept_the_users_package_and_warned(rebuilt):
    root, result, records = rebuilt
    target = root / "tflite-int8"
    assert (target / "notes.txt").read_text() == "mine" and (target / "package-android" / "package.json").is_file()
    assert sorted(result.summary["kept"]) == sorted([str(target / "notes.txt"), str(target / "package-android")])
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"kept {target / 'package-android'} which this build did not make") for m in warnings), warnings
    assert not [p for p in root.parent.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_summary_names_the_package_folders(rebuilt):
    from edgetl.cli.build import print_build_summary
    from edgetl.cli.console import console

    root, result, _ = rebuilt
    assert result.summary["packages"] == {"python": str(root / "tflite-int8" / "package-python")}
    with console.capture() as captured:
        print_build_summary(result)
    text = captured.get()
    assert f"python package: {root / 'tflite-int8' / 'package-python'}" in text.replace("\n", "")
    assert "shipped: PTQ int8 ships because" in text.replace("\n", " ")
