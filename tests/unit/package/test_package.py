"""`edgetl package`: C for TFLite Micro (compiled with the host g++, run in TFLite Micro's interpreter),
Android/iOS/Python bundles, budgets, and `build --package c`. Real LiteRT, real TFLite Micro, no mocks."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.errors import ArtifactError, BudgetError, ConfigError, OutputExistsError
from edgetl.core.units import parse_margin, parse_size
from edgetl.package.c import input_lookup_table
from edgetl.package.stage import package
from edgetl.runtime.litert import LiteRTModel, quantize
from edgetl.runtime.tflite_file import tflite_operator_counts
from edgetl.runtime.tflm import (
    TFLM_OP_RESOLVER_METHODS,
    TFLMModel,
    UnsupportedOpsError,
    allocates,
    measure_arena,
)
from tests.helpers import assert_one_line_error, compile_and_run_c_package, tiny_config

runner = CliRunner()
CLASSES = ["circle", "square", "star", "triangle"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def c_package(int8_export, tmp_path_factory):
    """The int8 fixture packaged for C once (the arena bisection and parity runs are shared)."""
    out = tmp_path_factory.mktemp("package") / "c"
    result = run("package", int8_export[0].parent, "--for", "c", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out, json.loads((out / "package.json").read_text()), result


def _no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "text, expected",
    [("256KB", 256 * 1024), ("1MB", 2**20), ("300000", 300000), ("64 kib", 65536), ("1.5MiB", 1572864), ("512k", 524288), (4096, 4096)],
)
def test_sizes_use_kib_semantics(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "-5", "0", "12XB", "", "1e3"])
def test_bad_sizes_are_config_errors(text):
    with pytest.raises(ConfigError, match="256KB"):
        parse_size(text)


def test_margins():
    assert parse_margin(None) == (16384, 0.10)
    assert parse_margin("10%") == (0, 0.10) and parse_margin("16KB") == (16384, 0.0) and parse_margin("0") == (0, 0.0)
    with pytest.raises(ConfigError, match="percentage"):
        parse_margin("x%")


# ---------------------------------------------------------------------------------------------- C / TFLite Micro


def test_c_package_holds_what_a_firmware_needs(c_package, int8_export):
    out, report, result = c_package
    model = int8_export[0]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "labels.h", "model_data.cc", "model_data.h", "model_ops.h", "model_settings.h", "package.json"]
    assert report["kind"] == "edgetl-package" and report["for"] == "c" and report["class_names"] == CLASSES
    assert report["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    tflm = report["tflm"]
    assert tflm["ops"] == tflite_operator_counts(model) and {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"} == set(tflm["ops"])
    arena = tflm["arena"]
    assert arena["margin_bytes"] == max(16384, int(np.ceil(0.1 * arena["measured_bytes"]))) and arena["margin_rule"] == "the larger of 16 KiB and 10% of the measured arena"
    assert arena["arena_bytes"] == arena["measured_bytes"] + arena["margin_bytes"] and arena["arena_bytes"] % 16 == 0
    parity = tflm["parity"]["against_litert_reference_kernels"]
    assert parity["exact"] and parity["max_abs_diff_lsb"] == 0 and len(parity["per_input_max_diff_lsb"]) == 4
    default = tflm["parity"]["against_litert_default_kernels"]
    assert default["exact"] or "round" in default["reason"]
    settings = (out / "model_settings.h").read_text()
    assert f"constexpr int kTensorArenaSize = {arena['arena_bytes']};" in settings
    assert f"constexpr int kTensorArenaMeasuredSize = {arena['measured_bytes']};" in settings and "Margin: +" in settings
    readme = (out / "README.md").read_text()
    assert f"**{arena['measured_bytes']} bytes**" in readme and "MicroMutableOpResolver<6>" in readme and "identical outputs" in readme
    assert "tensor arena: measured" in result.stdout and "identical" in result.stdout
    ops = (out / "model_ops.h").read_text()
    assert "tflite::MicroMutableOpResolver<kModelOpCount>" in ops and "kModelOpCount = 6;" in ops
    for op in tflm["ops"]:
        assert f"resolver.{TFLM_OP_RESOLVER_METHODS[op]}()" in ops


def test_c_array_bytes_equal_the_model(c_package, int8_export):
    out, report, _ = c_package
    source = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[] = {" in source
    array = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", source.split("g_model_data[] = {", 1)[1].split("};", 1)[0]))
    assert array == int8_export[0].read_bytes()
    assert f"const unsigned int g_model_data_len = {len(array)};" in source
    header = (out / "model_data.h").read_text()
    assert "extern const unsigned char g_model_data[];" in header and "extern const unsigned int g_model_data_len;" in header




def test_generated_c_compiles_and_holds_the_model(c_package, int8_export, tmp_path):
    out, report, _ = c_package
    lines = compile_and_run_c_package(out, tmp_path)
    count, *ops = lines["ops"].split()
    assert int(count) == len(ops) == len(report["tflm"]["ops"]) and sorted(ops) == sorted(report["tflm"]["ops"])
    data = int8_export[0].read_bytes()
    fnv = 1469598103934665603
    for byte in data:
        fnv = ((fnv ^ byte) * 1099511628211) % 2**64
    assert lines["model"].split() == [str(len(data)), str(fnv), "0"], "array length, content and 16-byte alignment"
    assert lines["labels"].split() == CLASSES
    inp = report["tflm"]["inputs"][0]
    from edgetl.core.contract import PreprocessContract

    table = input_lookup_table(PreprocessContract.from_dict(report["preprocessing"]), inp["scale"], inp["zero_point"], inp["dtype"])
    assert [int(v) for v in lines["lookup"].split()] == table.ravel().tolist()
    assert int(lines["arena"]) == report["tflm"]["arena"]["arena_bytes"]
    out_info = report["tflm"]["outputs"][0]
    assert float(lines["probability"]) == pytest.approx(64 * out_info["scale"], rel=1e-6)


def test_tflm_in_the_measured_arena_matches_litert_on_images(c_package, int8_export, shapes_dir):
    """The C package's inputs (its lookup table) on real images: TFLite Micro == LiteRT's reference kernels, bit for bit."""
    from edgetl.data.split import load_eval_set

    _, report, _ = c_package
    model = int8_export[0]
    arena = report["tflm"]["arena"]["measured_bytes"]
    micro = TFLMModel(model.read_bytes(), arena)
    reference = LiteRTModel(model, reference_kernels=True)
    images, _ = load_eval_set(shapes_dir, 32, class_names=CLASSES)
    pixels = images.x[::12][:20]
    inp = reference.inputs[0]
    from edgetl.core.contract import PreprocessContract

    table = input_lookup_table(PreprocessContract.from_dict(report["preprocessing"]), inp.scale, inp.zero_point, inp.dtype)
    via_table = table[np.arange(3), pixels].astype(np.int8)  # what QuantizePixel() gives, element by element
    contract = PreprocessContract.from_dict(report["preprocessing"])
    assert np.array_equal(via_table, quantize(contract.normalize(pixels), inp)), "the table is edgetl's own quantization"
    for x in via_table:
        ours, theirs = micro.invoke_raw([x[None]])[0], reference.invoke_raw([x[None]])[0]
        assert np.array_equal(ours, theirs)


def test_arena_found_is_the_minimum(c_package, int8_export):
    _, report, _ = c_package
    data = int8_export[0].read_bytes()
    measured = report["tflm"]["arena"]["measured_bytes"]
    assert report["tflm"]["arena"]["step_bytes"] == 16
    assert allocates(data, measured) and not allocates(data, measured - 16)
    TFLMModel(data, measured).invoke_raw(TFLMModel(data, measured).zero_inputs())


def test_ram_budget_below_the_arena_fails_and_writes_nothing(c_package, int8_export, tmp_path):
    _, report, _ = c_package
    measured = report["tflm"]["arena"]["measured_bytes"]
    out = tmp_path / "pkg"
    result = run("package", int8_export[0], "--for", "c", "--out", out, "--ram-budget", str(measured - 1))
    assert_one_line_error(result, f"{measured}-byte", f"--ram-budget {measured - 1} bytes", "--input-size", "--alpha")
    assert not out.exists() and _no_leftovers(tmp_path)
    # exactly the measured size fits: the margin shrinks to fit the budget, and says so
    fits = package(int8_export[0], "c", out, ram_budget=f"{measured}", arena_margin="10%")
    arena = fits.report["tflm"]["arena"]
    assert arena["arena_bytes"] == measured and arena["margin_reduced_to_fit_budget"] and fits.report["budgets"]["ram_bytes"] == measured
    assert "(reduced to fit the RAM budget)" in (out / "README.md").read_text()


def test_flash_budget(int8_export, tmp_path):
    size = int8_export[0].stat().st_size
    out = tmp_path / "pkg"
    budget_kib = (size - 1024) // 1024
    result = run("package", int8_export[0], "--for", "c", "--out", out, "--flash-budget", f"{budget_kib}KB")
    assert_one_line_error(result, f"is {size} bytes", f"--flash-budget {budget_kib * 1024} bytes", "none of edgetl's backbones fits")
    assert "--alpha 0.35" not in result.stderr  # the model already is mobilenet_v2 at alpha 0.35 (test_budget_advice.py: what is said instead)
    assert not out.exists() and _no_leftovers(tmp_path)
    with pytest.raises(BudgetError, match="--flash-budget"):
        package(int8_export[0], "android", out, flash_budget=size - 1)
    ok = run("package", int8_export[0], "--for", "python", "--out", out, "--flash-budget", "1MB")
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert json.loads((out / "package.json").read_text())["budgets"]["flash_bytes"] == 2**20


def test_float_model_for_c_says_use_int8(fp32_export, tmp_path):
    out = tmp_path / "pkg"
    result = run("package", fp32_export[0], "--for", "c", "--out", out)
    assert_one_line_error(result, "not a full-integer int8 model", "float32", "--target tflite-int8")
    assert not out.exists()


def _with_op_renamed(data: bytes, old: str, new: str) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, old):
            code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, new)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_operator_tflite_micro_lacks_is_named(int8_export, tmp_path):
    # MEAN -> REDUCE_PROD: same inputs and options; LiteRT has a kernel, TFLite Micro has none
    data = _with_op_renamed(int8_export[0].read_bytes(), "MEAN", "REDUCE_PROD")
    odd = tmp_path / "odd.tflite"
    odd.write_bytes(data)
    (tmp_path / "edgetl.json").write_bytes((int8_export[0].parent / "edgetl.json").read_bytes())
    with pytest.raises(UnsupportedOpsError, match="REDUCE_PROD") as caught:
        package(odd, "c", tmp_path / "pkg")
    assert caught.value.ops == ["REDUCE_PROD"] and "--for android|ios|python" in str(caught.value)
    assert not (tmp_path / "pkg").exists()
    # TFLite Micro's own interpreter agrees (its "Didn't find op" log is parsed)
    with pytest.raises(UnsupportedOpsError, match="REDUCE_PROD"):
        measure_arena(data)


def test_c_needs_a_tflite_and_out_must_be_ours(int8_export, tmp_path):
    fake_onnx = tmp_path / "m.onnx"
    fake_onnx.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="need an int8 .tflite"):
        package(fake_onnx, "c", tmp_path / "a")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        package(int8_export[0], "python", busy)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="--for c"):
        package(int8_export[0], "android", tmp_path / "b", ram_budget="1MB")
    assert_one_line_error(run("package", int8_export[0], "--for", "c", "--ram-budget", "lots"), "--ram-budget 'lots'")


# ---------------------------------------------------------------------------------------------- apps


@pytest.mark.parametrize("target", ["android", "ios", "python"])
def test_app_packages(target, int8_export, tmp_path):
    model, meta = int8_export
    out = tmp_path / target
    result = run("package", model.parent, "--for", target, "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["README.md", "edgetl.json", "labels.txt", "model.tflite", "package.json", *(["predict.py"] if target == "python" else [])])
    assert (out / "model.tflite").read_bytes() == model.read_bytes()
    assert (out / "labels.txt").read_text().splitlines() == CLASSES
    app_meta = json.loads((out / "edgetl.json").read_text())
    assert app_meta["class_names"] == CLASSES and app_meta["preprocessing"] == meta["preprocessing"] and app_meta["model_file"] == "model.tflite"
    assert app_meta["inputs"][0]["dtype"] == "int8" and "config" not in app_meta and "machine" not in app_meta
    readme = (out / "README.md").read_text()
    inp = meta["inputs"][0]
    expected = {
        "android": ["org.tensorflow.lite.Interpreter", "com.google.ai.edge.litert:litert", "createScaledBitmap", "const val WIDTH = 32", "const val HEIGHT = 32", "const val CHANNELS = 3",
                    f"INPUT_SCALE = {inp['scale']!r}f", f"INPUT_ZERO_POINT = {inp['zero_point']}", "floatArrayOf(127.5f, 127.5f, 127.5f)", "coerceIn(-128, 127)"],
        "ios": ["pod 'TensorFlowLiteSwift'", "import TensorFlowLite", "Interpreter(modelPath:", "copy(", "toNearestOrEven", "Int8(clamping:",
                f"inputScale: Float = {inp['scale']!r}", 'forResource: "model", ofType: "tflite"'],
        "python": ["pip install numpy pillow ai-edge-litert", "python predict.py", "127.5"],
    }[target]
    for fragment in expected:
        assert fragment in readme, fragment
    # `edgetl eval` and friends work on the packaged model as it is
    assert json.loads((out / "package.json").read_text())["for"] == target


def test_python_package_predicts_like_edgetl(int8_export, shapes_dir, tmp_path):
    from edgetl.device.evaluate import load_predictor

    out = tmp_path / "py"
    package(int8_export[0], "python", out)
    images = sorted((shapes_dir / "star").iterdir())[:2] + sorted((shapes_dir / "circle").iterdir())[:2]
    ran = subprocess.run([sys.executable, str(out / "predict.py"), *map(str, images)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    rows = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    predict, info, _ = load_predictor(int8_export[0])
    from edgetl.data.images import load_images

    probs = predict(load_images(images, 32))
    for row, p in zip(rows, probs, strict=True):
        best = np.argsort(-p)[:3]
        assert [t["label"] for t in row["top"]] == [info.class_names[i] for i in best]
        assert [t["score"] for t in row["top"]] == pytest.approx([float(p[i]) for i in best], abs=1e-7)


def _tiny_onnx_classifier(path: Path) -> Path:
    """(N, 8, 8, 3) float -> mean over H, W -> MatMul -> Softmax, with edgetl's metadata_props."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([[1.0, -1.0], [0.5, 0.5], [-1.0, 1.0]], np.float32), "w")
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])], [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    from edgetl.core.contract import PreprocessContract

    for key, value in {"labels": json.dumps(["red", "blue"]), "preprocessing": json.dumps(PreprocessContract(input_size=8).to_dict())}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_python_package_of_an_onnx_model(tmp_path):
    from edgetl.runtime.onnxruntime import ORTModel

    model = _tiny_onnx_classifier(tmp_path / "tiny.onnx")
    out = tmp_path / "py"
    package(model, "python", out)
    assert "pip install numpy pillow onnxruntime" in (out / "README.md").read_text()
    assert "import onnxruntime" in (out / "predict.py").read_text()
    image = tmp_path / "reddish.png"
    Image.fromarray(np.dstack([np.full((8, 8), 250), np.full((8, 8), 90), np.full((8, 8), 10)]).astype(np.uint8)).save(image)
    ran = subprocess.run([sys.executable, str(out / "predict.py"), str(image)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    top = json.loads(ran.stdout.strip().splitlines()[-1])["top"]
    x = (np.asarray(Image.open(image), np.float32) - 127.5) / 127.5
    expected = ORTModel(model).predict(x[None])[0]
    assert [t["label"] for t in top] == ["red", "blue"] and top[0]["score"] == pytest.approx(float(expected.max()), abs=1e-6)
    with pytest.raises(ArtifactError, match="need a .tflite"):
        package(model, "android", tmp_path / "droid")


# ---------------------------------------------------------------------------------------------- build --package c


def test_build_flag_reaches_the_config(tmp_path, shapes_dir):
    result = run("build", "--data", shapes_dir, "--weights", "none", "--package", "c", "--package", "python", "--dry-run", "--out", tmp_path)
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["package"]["targets"] == ["c", "python"]
    refused = run("build", "--data", shapes_dir, "--weights", "none", "--target", "tflite-fp32", "--package", "c", "--dry-run", "--out", tmp_path)
    assert_one_line_error(refused, "--package c needs --target tflite-int8")


@pytest.mark.slow  # a whole build (~45 s); the package code itself is tested above on the shared int8 model
def test_build_package_c(trained_run, qat_run, shapes_dir, tmp_path):
    """`build` with [package] targets = ["c"]: the float and QAT stages of the session fixtures are reused (same fingerprints)."""
    from edgetl.pipeline.build import build

    config = tiny_config(
        shapes_dir, out=str(tmp_path / "build"), package={"targets": ["c"], "ram_budget": "512KB"},
        export={"compare_ptq": False, "companion": False},
    )
    root = tmp_path / "build" / "shapes"
    shutil.copytree(trained_run.out_dir, root / "float")
    shutil.copytree(qat_run.out_dir, root / "qat")
    result = build(config)
    folder = root / "tflite-int8" / "package-c"
    report = json.loads((folder / "package.json").read_text())
    assert sorted(report["files"]) == sorted(p.name for p in folder.iterdir())
    assert report["tflm"]["parity"]["against_litert_reference_kernels"]["exact"] and report["budgets"]["ram_bytes"] == 512 * 1024
    array = (folder / "model_data.cc").read_text()
    assert f"g_model_data_len = {result.artifact.stat().st_size};" in array
    meta = json.loads((root / "tflite-int8" / "edgetl.json").read_text())
    assert meta["packages"]["c"]["folder"] == "package-c" and meta["packages"]["c"]["tensor_arena_bytes"] == report["tflm"]["arena"]["arena_bytes"]
    assert _no_leftovers(tmp_path)
