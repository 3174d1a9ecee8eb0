"""ONNX export: onnx-fp32 reproduces Keras; onnx-int8 keeps the int8 TFLite scales, really runs
in int8 in ONNX Runtime, and agrees with LiteRT. Real tf2onnx, onnx.checker, ONNX Runtime, LiteRT.

The int8 tests reuse the session's QAT -> int8 TFLite artifact (``int8_export``) and rewrite it
with :func:`export_onnx` directly, which costs seconds; the full ``export_model``/CLI path runs once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.errors import ConfigError

runner = CliRunner()


@pytest.fixture(scope="module")
def onnx_int8(int8_export, tmp_path_factory):
    from edgetl.core.metadata import read_model_info
    from edgetl.export.onnx import export_onnx

    tflite, _ = int8_export
    info = read_model_info(tflite)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path, details = export_onnx("onnx-int8", path, tflite_int8=tflite, class_names=info.class_names, contract=info.contract)
    return path, details, tflite, info


def _val_input(trained_run, contract):
    return contract.normalize(trained_run.split.val.x)


def test_onnx_int8_passes_full_check_with_metadata_and_opset(onnx_int8):
    import onnx

    path, details, _, info = onnx_int8
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17 == details["opset"]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["labels"]) == info.class_names
    assert json.loads(props["preprocessing"])["input_size"] == info.contract.input_size
    assert props["edgetl.target"] == "onnx-int8" and "tf2onnx.from_tflite" in props["edgetl.route"]
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["probabilities"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_onnx_int8_weights_are_int8_per_channel_and_activations_uint8(onnx_int8):
    import onnx
    from onnx import numpy_helper

    path, details, _, _ = onnx_int8
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.int8, f"{conv.name}: weight is not int8"
        assert inits[dq.input[1]].size == inits[dq.input[0]].shape[0] > 1, f"{conv.name}: weight scale is not per output channel"
    activation_zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert activation_zps and all(zp.dtype == np.uint8 for zp in activation_zps)
    assert details["rewrite"]["activation_zero_points_to_uint8"] == len(activation_zps)
    assert not [n for n in model.graph.node if n.op_type in ("Clip", "Relu")], "a ReLU6 clip is left between a conv and its quantizer"


def test_onnx_runtime_fuses_every_conv_to_int8(onnx_int8):
    from edgetl.runtime.onnxruntime import ort_fusion_report

    path, details, _, _ = onnx_int8
    graph = ort_fusion_report(path)
    assert graph == details["graph"]
    assert graph["convs"] > 0 and graph["int8_convs"] == graph["convs"]
    assert graph["float_convs_after_optimization"] == 0


def test_onnx_int8_agrees_with_litert_int8(onnx_int8, trained_run):
    from edgetl.runtime.litert import LiteRTModel
    from edgetl.runtime.onnxruntime import ORTModel

    path, _, tflite, info = onnx_int8
    x = _val_input(trained_run, info.contract)
    ort_probs = ORTModel(path).predict(x)
    litert_probs = LiteRTModel(tflite).predict(x)
    assert ort_probs.shape == litert_probs.shape == (len(x), len(info.class_names))
    assert np.mean(ort_probs.argmax(1) == litert_probs.argmax(1)) >= 0.99
    # Same scales: the output quantizer's step bounds the difference for almost every image. The two
    # runtimes' kernels round requantization ties differently (TFLite's fixed-point multiplier vs ONNX
    # Runtime's float scale), and a tie in an early layer can move one image's outputs several steps:
    # seen once, 12 steps (0.047) on one of 60 images, with the argmax unchanged.
    step = LiteRTModel(tflite).outputs[0].scale
    steps = np.abs(ort_probs - litert_probs).max(axis=1) / step
    assert np.mean(steps <= 2 + 1e-4) >= 0.95, np.sort(steps)[-5:]
    assert steps.max() <= 16 + 1e-4, np.sort(steps)[-5:]


def test_rewrite_changes_no_value(int8_export, trained_run, tmp_path):
    """The tf2onnx graph as converted and after edgetl's rewrite compute the same values.

    Both run unoptimized (ORT's reference QuantizeLinear/Conv/DequantizeLinear, no fusion), so
    any difference would come from the rewrite itself, not from fused int8 kernels rounding
    differently (that is what the LiteRT agreement test above bounds)."""
    import onnxruntime as ort
    import tf2onnx

    from edgetl.export.onnx_qdq import optimize_qdq_for_ort

    tflite, meta = int8_export
    raw, _ = tf2onnx.convert.from_tflite(str(tflite), opset=17)
    in_info, out_info = meta["inputs"][0], meta["outputs"][0]
    x = _val_input(trained_run, type(trained_run.contract).from_dict(meta["preprocessing"]))
    q = np.clip(np.round(x / in_info["scale"]) + in_info["zero_point"], -128, 127).astype(np.int8)

    def run(model, feed):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {session.get_inputs()[0].name: feed[i : i + 1]})[0] for i in range(len(feed))])

    before = (run(raw, q).astype(np.float32) - out_info["zero_point"]) * out_info["scale"]
    stats = optimize_qdq_for_ort(raw)
    assert stats["float_input_added"] == stats["float_output_added"] == 1 and stats["clips_removed"] > 0
    after = run(raw, x)
    np.testing.assert_array_equal(after, before)


def test_opset_is_configurable_and_checked(int8_export, tmp_path):
    import onnx

    from edgetl.core.metadata import read_model_info
    from edgetl.export.onnx import export_onnx

    tflite, _ = int8_export
    info = read_model_info(tflite)
    path, _ = export_onnx("onnx-int8", tmp_path / "m13.onnx", tflite_int8=tflite, class_names=info.class_names, contract=info.contract, opset=13)
    assert {o.domain or "ai.onnx": o.version for o in onnx.load(str(path)).opset_import}["ai.onnx"] == 13
    with pytest.raises(ConfigError, match="opset"):
        export_onnx("onnx-int8", tmp_path / "m9.onnx", tflite_int8=tflite, class_names=info.class_names, contract=info.contract, opset=9)
    assert not (tmp_path / "m9.onnx").exists()


def test_onnx_fp32_export_reproduces_keras(trained_run, shapes_dir, tmp_path):
    from edgetl.ml.model_io import predict_pixels
    from edgetl.pipeline.api import export_model
    from edgetl.runtime.onnxruntime import ORTModel

    path, meta = export_model(trained_run.out_dir, "onnx-fp32", data=shapes_dir, out=tmp_path / "fp32")
    assert path.name == "model.onnx" and meta["kind"] == "onnx" and meta["runtime"] == "onnxruntime"
    assert meta["verification"]["max_abs_diff"] < 1e-4
    x = trained_run.split.val.x
    ort_probs = ORTModel(path).predict(trained_run.contract.normalize(x))
    np.testing.assert_allclose(ort_probs, predict_pixels(trained_run.model, x, trained_run.contract), atol=1e-4)


def test_export_cli_onnx_int8_then_eval_from_metadata_alone(qat_run, shapes_dir, tmp_path):
    out = tmp_path / "onnx-int8"
    result = runner.invoke(app, ["export", "--model", str(qat_run.out_dir), "--format", "onnx-int8", "--data", str(shapes_dir), "--out", str(out), "--samples", "16"])
    assert result.exit_code == 0, result.output + result.stderr
    assert (out / "model.onnx").is_file() and (out / "model.tflite").is_file()
    meta = json.loads((out / "edgetl.json").read_text())
    assert meta["model_file"] == "model.onnx" and meta["graph"]["full_integer"]
    in_folder = runner.invoke(app, ["eval", str(out), "--data", str(shapes_dir), "--json"])
    assert in_folder.exit_code == 0, in_folder.output + in_folder.stderr
    assert json.loads(in_folder.stdout)["kind"] == "onnx"
    # the .onnx alone (no edgetl.json beside it) carries its labels and preprocessing
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "classifier.onnx").write_bytes((out / "model.onnx").read_bytes())
    alone = runner.invoke(app, ["eval", str(bare / "classifier.onnx"), "--data", str(shapes_dir), "--json"])
    assert alone.exit_code == 0, alone.output + alone.stderr
    assert json.loads(alone.stdout)["top1"] == json.loads(in_folder.stdout)["top1"] > 0.5


def test_onnx_bad_input(qat_run, shapes_dir, tmp_path):
    bad_opset = runner.invoke(app, ["export", "--model", str(qat_run.out_dir), "--format", "onnx-int8", "--data", str(shapes_dir), "--out", str(tmp_path / "x"), "--opset", "99"])
    assert bad_opset.exit_code != 0 and "opset" in bad_opset.stderr and "Traceback" not in bad_opset.output + bad_opset.stderr
    assert not (tmp_path / "x").exists()
    # an ONNX file without edgetl metadata
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(foreign))
    result = runner.invoke(app, ["eval", str(foreign), "--data", str(shapes_dir)])
    assert result.exit_code != 0 and "metadata_props" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_onnx_int8_opens_with_exact_int8_kernels_on_x86(onnx_int8):
    """On x86 CPUs without VNNI, ORT's U8S8 int8 kernels saturate (agreement with LiteRT fell to 40% on an
    AVX2-only AMD EPYC). edgetl opens ONNX models with session.x64quantprecision=1, whose weight rewrite
    needs every quantized weight to have its own zero-point initializer: the export gives it that."""
    from collections import Counter

    import onnx

    from edgetl.runtime.onnxruntime import ORTModel

    path, details, _, _ = onnx_int8
    model = onnx.load(str(path))
    initializers = {init.name for init in model.graph.initializer}
    reads = Counter(name for node in model.graph.node for name in node.input if name in initializers)
    assert reads and max(reads.values()) == 1, [name for name, n in reads.items() if n > 1][:5]
    assert details["rewrite"]["initializers_unshared"] > 0  # tf2onnx shares them: the rewrite did the work
    session = ORTModel(path)._session
    assert session.get_session_options().get_session_config_entry("session.x64quantprecision") == "1"
