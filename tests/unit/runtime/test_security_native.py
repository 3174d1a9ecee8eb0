"""Issue 12, findings 5 and 6: hostile model files never crash, hang or traceback edgetl.

A .tflite whose operator writes the wrong tensor, or carries a NaN quantization scale, made
LiteRT abort() inside `inspect`, `predict`, `eval` and `package`; an operator removed gave
`RuntimeError: Input tensor .. lacks data`; an ONNX input name that is not UTF-8 broke `inspect`;
ONNX input dims of 2^40 broke `bench`. Each is now a one-line error (or, for the name, a result).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetl.cli.app import app
from edgetl.core.errors import ArtifactError
from edgetl.runtime import isolation
from edgetl.runtime.tflite_file import verify_tflite_file
from tests.helpers import assert_one_line_error, make_inputs, run_command

runner = CliRunner()


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _write(model, folder: Path, metadata: dict) -> Path:
    import flatbuffers

    folder.mkdir(parents=True)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = folder / "model.tflite"
    path.write_bytes(builder.Output())
    (folder / "edgetl.json").write_text(json.dumps({**metadata, "model_file": path.name}), encoding="utf-8")
    return path


def _litert_dies(path: Path, reference: bool = False) -> bool:
    """True when a bare LiteRT interpreter dies by a signal loading and running ``path``, with
    XNNPACK (what predict/eval run) or without default delegates (what inspect and `package --for c` load)."""
    import multiprocessing

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def body(resolver):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interpreter.invoke()

    resolvers = (OpResolverType.BUILTIN_REF,) if reference else (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for resolver in resolvers:
        process = multiprocessing.get_context("fork").Process(target=body, args=(resolver,))  # the closure needs a fork
        process.start()
        process.join(120)
        if process.exitcode is not None and process.exitcode < 0:
            return True
    return False


@pytest.fixture(scope="module")
def hostile(int8_export, tmp_path_factory) -> dict[str, Path]:
    """The shared int8 MobileNetV2 (0.35, 32 px), edited in four ways that crashed or broke edgetl."""
    schema = _schema()
    source, metadata = int8_export
    source = Path(source)
    meta = json.loads((source.parent / "edgetl.json").read_text(encoding="utf-8"))
    data = source.read_bytes()
    root = tmp_path_factory.mktemp("hostile")
    codes = lambda m: [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]  # noqa: E731
    files = {}

    # 1. the first ADD's output redirected to the output of the next CONV_2D of another channel count:
    # structurally valid, aborts LiteRT
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    code = codes(model)
    first = next(i for i, op in enumerate(sg.operators) if code[op.opcodeIndex] == schema.BuiltinOperator.ADD)
    add_shape = list(sg.tensors[int(sg.operators[first].outputs[0])].shape)
    conv = next(
        op for op in sg.operators[first + 1 :]
        if code[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D and list(sg.tensors[int(op.outputs[0])].shape)[:3] == add_shape[:3]
        and list(sg.tensors[int(op.outputs[0])].shape) != add_shape
    )
    sg.operators[first].outputs = np.array([int(conv.outputs[0])], np.int32)
    files["output_redirected"] = _write(model, root / "output_redirected", meta)

    # 2. the first ADD writes into a convolution's weights (a constant tensor)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    code = codes(model)
    conv = next(op for op in sg.operators if code[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    add = next(op for op in sg.operators if code[op.opcodeIndex] == schema.BuiltinOperator.ADD)
    add.outputs = np.array([int(conv.inputs[1])], np.int32)
    files["writes_constant"] = _write(model, root / "writes_constant", meta)

    # 3. a NaN quantization scale on the first convolution's output
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    conv = next(op for op in sg.operators if codes(model)[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    quant = sg.tensors[int(conv.outputs[0])].quantization
    quant.scale = np.full(len(quant.scale), np.nan, np.float32)
    files["nan_scale"] = _write(model, root / "nan_scale", meta)

    # 4. an operator removed: the next one reads a tensor nothing writes
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    sg.operators = sg.operators[:1] + sg.operators[2:]
    files["operator_removed"] = _write(model, root / "operator_removed", meta)
    return files


@pytest.fixture(scope="module")
def reference_crasher(int8_export, tmp_path_factory) -> Path:
    """The SOFTMAX fed an earlier activation instead of the classifier's logits: structurally valid (the
    verifier passes it), and LiteRT's reference kernels (what `package --for c` compares with) abort on it."""
    schema = _schema()
    data = Path(int8_export[0]).read_bytes()
    root = tmp_path_factory.mktemp("reference_crasher")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    ops = model.subgraphs[0].operators
    code = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    softmax = next(i for i, op in enumerate(ops) if code[op.opcodeIndex] == schema.BuiltinOperator.SOFTMAX)
    written = [int(t) for op in ops[:softmax] for t in op.outputs]
    for tensor in reversed(written):
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        model.subgraphs[0].operators[softmax].inputs = np.array([tensor], np.int32)
        path = _write(model, root / f"softmax_reads_{tensor}", {})
        if _litert_dies(path, reference=True):
            return path
    # Whether one does depends on the trained weights' scales (seen: 1 of 64 on one export, none on another).
    pytest.skip(f"none of {len(written)} redirections of the SOFTMAX input crashes LiteRT's reference kernels on this export")


def test_the_redirected_output_really_kills_litert(hostile):
    # the premise: without the checks these files end the process with no message
    assert _litert_dies(hostile["output_redirected"])
    with pytest.raises(ArtifactError, match="no earlier operator writes"):  # the op that should have written it now writes elsewhere
        verify_tflite_file(hostile["output_redirected"])


def test_the_verifier_refuses_writes_to_constants_and_nan_scales(hostile):
    with pytest.raises(ArtifactError, match="writes to constant tensor"):
        verify_tflite_file(hostile["writes_constant"])
    with pytest.raises(ArtifactError, match="quantization scale nan"):
        verify_tflite_file(hostile["nan_scale"])
    with pytest.raises(ArtifactError, match="no earlier operator writes"):  # was `RuntimeError: Input tensor .. lacks data`
        verify_tflite_file(hostile["operator_removed"])


def test_the_probe_survives_a_file_that_kills_litert(hostile):
    """The probe on its own (no verifier in front): a file that aborts LiteRT is one ArtifactError line, and
    this process lives on. Deterministic, unlike the reference-kernel crasher below."""
    path = hostile["output_redirected"]
    with pytest.raises(ArtifactError, match=r"the LiteRT runtime crashed \((signal SIG[A-Z]+|exit code -?\d+)\) loading/running") as info:
        isolation.probe_model(path, runtime="litert")
    assert "\n" not in str(info.value)


def test_the_probe_turns_a_runtime_crash_into_one_line_and_caches_it(reference_crasher):
    from edgetl.runtime.litert import LiteRTModel

    path = reference_crasher
    verify_tflite_file(path)  # passes every structural check: only the child-process probe stands between it and an abort()
    with pytest.raises(ArtifactError, match=r"the LiteRT runtime crashed \(signal SIGABRT\) loading/running .*malformed or not supported") as info:
        LiteRTModel(path, reference_kernels=True)
    assert "\n" not in str(info.value)
    assert any(key[0] == str(path.resolve()) for key in isolation._cache)
    with pytest.raises(ArtifactError, match="crashed"):  # from the cache: same answer
        isolation.probe_model(path, kernels="reference")


@pytest.mark.parametrize("command", ["inspect", "predict", "eval", "package"])
def test_every_command_answers_hostile_tflite_files_with_one_line(hostile, command, tmp_path):
    """Each command in a worker process (a crash would kill pytest itself); every file: a one-line error."""
    extra = make_inputs(tmp_path)
    shutil.rmtree(Path(extra["data"]))
    data = Path(extra["data"])
    from PIL import Image

    classes = json.loads((hostile["nan_scale"].parent / "edgetl.json").read_text(encoding="utf-8"))["class_names"]
    for name in classes[:2]:
        (data / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / name / "0.png")
    image = tmp_path / "image32.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    extra["image"] = str(image)
    rows = run_command(command, list(hostile.values()), tmp_path / "runs", extra, file_timeout=120, python=__import__("sys").executable)
    outcomes = {Path(r["file"]).parent.name: (r["outcome"], r["message"]) for r in rows}
    assert all(outcome == "error" for outcome, _ in outcomes.values()), outcomes
    assert "no earlier operator writes" in outcomes["output_redirected"][1]
    assert "no earlier operator writes" in outcomes["operator_removed"][1]
    assert "scale nan" in outcomes["nan_scale"][1] and "writes to constant tensor" in outcomes["writes_constant"][1]


# ---------------------------------------------------------------------------------------------- ONNX


def _onnx_with_input(path: Path, name: str, dims: list[int | str]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [name], ["pooled"], axes=[1, 2], keepdims=0), helper.make_node("Softmax", ["pooled"], ["probabilities"], axis=-1)],
        "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [dims[0], 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_onnx_input_name_that_is_not_utf8_is_shown_not_a_traceback(tmp_path):
    path = _onnx_with_input(tmp_path / "m.onnx", "inpXt", ["N", 8, 8, 3])
    raw = path.read_bytes()
    assert raw.count(b"inpXt") >= 2
    path.write_bytes(raw.replace(b"inpXt", b"inp\xfft"))  # same length: the protobuf stays valid, the name is not UTF-8
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["inspect", str(path), *extra], env={"COLUMNS": "200"})
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        if result.exit_code == 0:
            assert "inp\ufffdt" in result.stdout
        else:
            assert_one_line_error(result)
    report = json.loads(runner.invoke(app, ["inspect", str(path), "--json"]).stdout)
    assert all(isinstance(t["name"], str) for t in report["inputs"])


def test_bench_refuses_absurd_onnx_dims_up_front(tmp_path):
    path = _onnx_with_input(tmp_path / "huge.onnx", "input", [1, 2**40, 8, 3])
    result = runner.invoke(app, ["bench", str(path), "--runs", "2", "--warmup", "1", "--out", str(tmp_path / "b")], env={"COLUMNS": "200"})
    assert_one_line_error(result, "beyond what edgetl allocates")


def test_absurd_shapes_are_refused_before_allocation():
    with pytest.raises(ArtifactError, match="at most 1048576"):
        isolation.check_input_shape([1, 2**40, 8, 3], "input 'x'")
    with pytest.raises(ArtifactError, match="elements"):
        isolation.check_input_shape([64, 4096, 4096, 3], "input 'x'")
    isolation.check_input_shape([1, 224, 224, 3], "input 'x'")
