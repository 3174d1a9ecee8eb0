"""`edgetl inspect`: what a .tflite/.onnx file holds, checked against the runtimes that load it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.device.inspect import inspect_artifact
from edgetl.runtime.litert import LiteRTModel, op_report
from edgetl.runtime.tflm import unsupported_ops
from tests.helpers import assert_one_line_error, build_tflite

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


# ---------------------------------------------------------------------------------------------- tiny models


def build_qdq_onnx(path: Path) -> Path:
    """x -> Q/DQ (uint8) -> Conv with DQ(int8 weights) -> Q/DQ -> y: ONNX Runtime fuses it to one QLinearConv."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {
        "x_scale": np.array(0.02, np.float32), "x_zp": np.array(128, np.uint8),
        "w": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), "w_scale": np.array(0.01, np.float32), "w_zp": np.array(0, np.int8),
        "y_scale": np.array(0.05, np.float32), "y_zp": np.array(128, np.uint8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "y_scale", "y_zp"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "y_scale", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------- .tflite


def _interpreter_view(path: Path):
    """Ops and constant tensors as LiteRT itself lists them (no delegate), independently of inspect's reader."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    produced = {int(t) for op in ops for t in op["outputs"]}
    graph_inputs = {int(d["index"]) for d in interpreter.get_input_details()}
    constants = {int(t) for op in ops for t in op["inputs"] if int(t) >= 0 and int(t) not in produced and int(t) not in graph_inputs}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    count = sum(int(np.prod(details[t]["shape"])) for t in constants)
    nbytes = sum(interpreter.get_tensor(t).nbytes for t in constants)
    return Counter(op["op_name"] for op in ops), count, nbytes, len(constants)


def test_int8_tflite_matches_the_flatbuffer_and_runtimes(int8_export):
    path, _ = int8_export
    report = inspect_artifact(path)
    interpreter_ops, count, nbytes, tensors = _interpreter_view(path)

    assert report["format"] == "tflite" and report["size_bytes"] == path.stat().st_size
    assert report["ops"] == op_report(path)["ops"] == dict(sorted(interpreter_ops.items()))
    assert report["op_count"] == sum(interpreter_ops.values())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= set(report["ops"])

    params = report["parameters"]
    assert (params["count"], params["bytes"], params["tensors"]) == (count, nbytes, tensors)
    assert sum(v["count"] for v in params["by_dtype"].values()) == count and params["by_dtype"]["int8"]["count"] > 0

    runtime = LiteRTModel(path, use_xnnpack=False)
    (inp,), (out,) = report["inputs"], report["outputs"]
    assert inp["dtype"] == runtime.inputs[0].dtype == "int8" and inp["shape"] == list(runtime.inputs[0].shape)
    assert inp["quantization"]["scale"] == pytest.approx(runtime.inputs[0].scale)
    assert inp["quantization"]["zero_point"] == runtime.inputs[0].zero_point
    assert out["quantization"]["zero_point"] == runtime.outputs[0].zero_point
    assert report["full_integer"] is True and report["float_ops"] == {}

    xnn = report["xnnpack"]
    assert xnn["delegated"]["CONV_2D"] == report["ops"]["CONV_2D"]  # every int8 convolution runs in XNNPACK
    assert xnn["delegated"]["DEPTHWISE_CONV_2D"] == report["ops"]["DEPTHWISE_CONV_2D"]
    assert Counter(xnn["delegated"]) + Counter(xnn["fallback"]) == Counter(report["ops"])
    assert xnn["partitions"] >= 1 and xnn["delegated_nodes"] == sum(xnn["delegated"].values())
    # XNNPACK in ai-edge-litert 2.3.0 has no int8 softmax: it stays on LiteRT's kernel.
    assert xnn["fallback"] == {"SOFTMAX": 1}

    assert report["tflm"]["all_supported"] is True and report["tflm"]["unsupported"] == []


def test_unsupported_op_falls_back_from_xnnpack_and_is_named_for_tflm(tmp_path):
    path = build_tflite(tmp_path / "sign.tflite", ["SIGN", "ABS"])
    x = np.linspace(-3, 3, 8, dtype=np.float32)[None]
    assert np.array_equal(LiteRTModel(path).predict(x), np.ones((1, 8), np.float32))  # |sign(x + c)|: a real, runnable model

    report = inspect_artifact(path)
    assert report["ops"] == {"ABS": 1, "ADD": 1, "SIGN": 1}
    assert report["parameters"] == {"count": 8, "bytes": 32, "tensors": 1, "by_dtype": {"float32": {"count": 8, "bytes": 32, "tensors": 1}}}
    xnn = report["xnnpack"]
    assert xnn["delegated"] == {"ABS": 1, "ADD": 1} and xnn["fallback"] == {"SIGN": 1}
    assert xnn["partitions"] == 2  # SIGN splits the graph in two delegated parts
    assert report["tflm"]["unsupported"] == ["SIGN"] and report["tflm"]["all_supported"] is False
    assert report["full_integer"] is False

    table = run("inspect", path)
    assert table.exit_code == 0, table.output
    assert "falling back to LiteRT kernels: SIGN x1" in table.stdout and "ops TFLite Micro lacks: SIGN" in table.stdout


@pytest.mark.parametrize(
    "ops, unsupported",
    [
        (["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"], []),  # MobileNetV2 int8
        (["CONV_2D", "LOGISTIC", "MUL", "SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "HARD_SWISH"], []),  # EfficientNet, MobileNetV3
        (["CONV_2D", "SIGN"], ["SIGN"]),
        (["GELU", "ATAN2", "GELU", "TOPK_V2"], ["ATAN2", "GELU", "TOPK_V2"]),
        (["TFLite_Detection_PostProcess", "CIRCULAR_BUFFER"], []),
        (["MyCustomOp", "FlexConv2D"], ["FlexConv2D", "MyCustomOp"]),
    ],
)
def test_tflm_table(ops, unsupported):
    """The checker inspect reports with, on lists of op names."""
    assert unsupported_ops(ops) == unsupported


def test_tflm_interpreter_agrees_with_the_table(tmp_path, int8_export):
    pytest.importorskip("tflite_micro")
    missing = inspect_artifact(build_tflite(tmp_path / "sign.tflite", ["SIGN"]))["tflm"]["interpreter"]
    assert missing["loads"] is False and missing["missing_ops"] == ["SIGN"]
    fine = inspect_artifact(int8_export[0])["tflm"]["interpreter"]
    assert fine["loads"] is True and fine["missing_ops"] == []


# ---------------------------------------------------------------------------------------------- .onnx


def test_qdq_onnx(tmp_path):
    import onnx
    from onnx import numpy_helper

    path = build_qdq_onnx(tmp_path / "qdq.onnx")
    report = inspect_artifact(path)
    assert report["format"] == "onnx" and report["opset"] == 17 and report["ir_version"] == 8
    assert report["ops"] == {"Conv": 1, "DequantizeLinear": 3, "QuantizeLinear": 2}
    assert report["qdq"] == {"quantize_linear": 2, "dequantize_linear": 3, "pairs": 2, "weight_dequantizers": 1}
    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    assert report["parameters"]["count"] == sum(a.size for a in arrays) == 114
    assert report["parameters"]["bytes"] == sum(a.nbytes for a in arrays) == 123
    assert report["parameters"]["by_dtype"]["int8"] == {"count": 109, "bytes": 109, "tensors": 2}
    (inp,), (out,) = report["inputs"], report["outputs"]
    assert inp["shape"] == ["N", 3, 8, 8] and inp["dtype"] == "float32"
    assert inp["quantization"] == {"scale": pytest.approx(0.02), "zero_point": 128, "in_graph": "QuantizeLinear"}
    assert out["quantization"]["in_graph"] == "DequantizeLinear" and out["quantization"]["scale"] == pytest.approx(0.05)
    ort = report["ort_cpu"]
    assert ort["int8_ops"] == {"QLinearConv": 1} and ort["convs"] == ort["int8_convs"] == 1
    assert "Conv" not in ort["other_ops"]  # ORT may add NHWC Transposes around QLinearConv; no float Conv is left

    table = run("inspect", path)
    assert table.exit_code == 0, table.output
    assert "1 of 1 Conv run in int8" in table.stdout and "QLinearConv" in table.stdout and "2 Q->DQ pairs" in table.stdout


def test_edgetl_onnx_int8_export_runs_every_conv_in_int8(int8_export, tmp_path):
    from edgetl.core.metadata import read_model_info
    from edgetl.export.onnx import export_onnx

    info = read_model_info(int8_export[0])
    path, details = export_onnx("onnx-int8", tmp_path / "model.onnx", tflite_int8=int8_export[0], class_names=info.class_names, contract=info.contract)
    report = inspect_artifact(path)
    ort = report["ort_cpu"]
    assert ort["convs"] == ort["int8_convs"] == details["graph"]["int8_convs"] > 0
    assert ort["int8_ops"]["QLinearConv"] == ort["convs"]
    assert report["qdq"]["pairs"] > 0 and report["qdq"]["weight_dequantizers"] >= ort["convs"]
    assert report["opset"] == 17 and "labels" in report["metadata"]
    assert report["inputs"][0]["quantization"]["in_graph"] == "QuantizeLinear"


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_json_and_build_folder(int8_export):
    path, _ = int8_export
    result = run("inspect", path.parent, "--json")  # an edgetl build folder stands for its model
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["path"] == str(path) and doc["xnnpack"]["delegated"]["CONV_2D"] > 0
    table = run("inspect", path)
    assert table.exit_code == 0, table.output
    for fragment in ("inputs and outputs", "CONV_2D", "delegated", "every op has a TFLite Micro kernel", "parameters"):
        assert fragment in table.stdout


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("notes.txt", b"hello", ("notes.txt", ".tflite")),
        ("empty.tflite", b"", ("empty",)),
        ("text.tflite", b"this is not a flatbuffer at all, just text", ("not a TFLite model",)),
        ("truncated.tflite", None, ("corrupt or truncated",)),
        ("empty.onnx", b"", ("empty",)),
        ("garbage.onnx", b"\xff\xfe not protobuf \x00\x01" * 20, ("not an ONNX model",)),
        ("truncated.onnx", None, ("not an ONNX model",)),
        ("missing.onnx", "missing", ("does not exist",)),
        ("a_folder", "folder", ("folder",)),
    ],
)
def test_bad_input_is_one_line(name, content, fragments, int8_export, tmp_path):
    target = tmp_path / name
    if content == "folder":
        target.mkdir()
    elif content == "missing":
        pass
    elif content is None and name.endswith(".tflite"):
        target.write_bytes(int8_export[0].read_bytes()[:20000])
    elif content is None:
        target.write_bytes(build_qdq_onnx(tmp_path / "whole.onnx").read_bytes()[:150])
    else:
        target.write_bytes(content)
    assert_one_line_error(run("inspect", target), *fragments)


def test_help_lists_the_new_commands():
    result = run("--help")
    assert result.exit_code == 0 and "predict" in result.stdout and "inspect" in result.stdout
    for command, options in {"predict": ("--top-k", "--json"), "inspect": ("--json",)}.items():
        out = run(command, "--help").stdout
        assert all(option in out for option in options)
