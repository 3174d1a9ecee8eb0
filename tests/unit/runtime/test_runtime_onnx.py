"""edgetl.runtime.onnxruntime: loading, predicting, profiling, and refusing bad files, with real ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgetl.bench.board_runner import top_ops_from_profile
from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.runtime.formats import find_format, open_model
from edgetl.runtime.model import LoadedModel, TensorInfo
from edgetl.runtime.onnxruntime import ORTModel
from tests.helpers import ONNX_CHANNELS, ONNX_NUM_CLASSES, TRAINING_MODULES, build_onnx_model, import_blocker

REPO_ROOT = Path(__file__).resolve().parents[3]
NUM_CLASSES = ONNX_NUM_CLASSES
CHANNELS = ONNX_CHANNELS
#: The op types of :func:`build_onnx_model`'s graph, as ONNX Runtime runs them unoptimized.
GRAPH_OPS = {"Conv", "Relu", "GlobalAveragePool", "Flatten", "MatMul", "Add", "Softmax"}


def reference(x: np.ndarray, seed: int = 0, filters: int = 4) -> np.ndarray:
    """What :func:`build_onnx_model`'s graph computes, in numpy."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((filters, CHANNELS, 1, 1)).astype(np.float32)
    d = (rng.standard_normal((filters, NUM_CLASSES)) * 3).astype(np.float32)
    b = rng.standard_normal(NUM_CLASSES).astype(np.float32)
    conv = np.maximum(np.einsum("nchw,fc->nfhw", x, w[:, :, 0, 0]), 0)
    logits = conv.mean(axis=(2, 3)) @ d + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def build_cast_model(path: Path) -> Path:
    """uint8 input -> Cast to float: shows how predict() feeds an integer input."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "cast",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {
        "dynamic": build_onnx_model(root / "dynamic.onnx", metadata={"edgetl.labels": "a,b,c,d", "author": "test"}),
        "fixed4": build_onnx_model(root / "fixed4.onnx", batch=4),
        "hw": build_onnx_model(root / "hw.onnx", height="H", width="W"),
        "cast": build_cast_model(root / "cast.onnx"),
    }


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(2).standard_normal((10, CHANNELS, 32, 32)).astype(np.float32)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT)


# ---------------------------------------------------------------- loading and describing


def test_onnx_is_opened_by_suffix_as_a_loaded_model(models):
    model = open_model(models["dynamic"], num_threads=1)
    assert isinstance(model, ORTModel) and isinstance(model, LoadedModel)
    fmt = find_format(models["dynamic"])
    assert (fmt.name, fmt.runtime) == ("onnx", model.runtime)
    assert fmt.version() == model.describe()["runtime_version"]


def test_inputs_outputs_metadata_and_versions(models):
    model = ORTModel(models["dynamic"], num_threads=1)
    (inp,), (out,) = model.inputs, model.outputs
    assert isinstance(inp, TensorInfo) and isinstance(out, TensorInfo)
    assert inp.name == "x" and inp.shape == (-1, CHANNELS, 32, 32) and inp.dtype == "float32" and not inp.quantized
    assert out.name == "probs" and out.shape == (-1, NUM_CLASSES) and out.dtype == "float32"
    assert model.declared_shapes == [("N", CHANNELS, 32, 32)]
    assert model.metadata == {"edgetl.labels": "a,b,c,d", "author": "test"}
    assert model.runtime == "onnxruntime" and model.provider == "CPUExecutionProvider"
    assert model.version[0].isdigit() and model.size_bytes == models["dynamic"].stat().st_size
    info = model.describe()
    assert info["inputs"][0]["declared_shape"] == ["N", CHANNELS, 32, 32] and info["num_threads"] == 1
    json.dumps(info)
    assert ORTModel(models["hw"]).declared_shapes == [("N", CHANNELS, "H", "W")]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_threads": 0}, "num_threads=0"),
    ({"num_threads": "2"}, "num_threads='2'"),
    ({"optimization": "max"}, "optimization='max'"),
])
def test_bad_options(models, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ORTModel(models["dynamic"], **kwargs)


# ---------------------------------------------------------------- predict and invoke_raw


@pytest.mark.parametrize("batch_size", [None, 1, 3])
def test_predict_matches_numpy_for_any_batch(models, x, batch_size):
    got = ORTModel(models["dynamic"]).predict(x, batch_size=batch_size)
    assert got.dtype == np.float32 and got.shape == (len(x), NUM_CLASSES)
    np.testing.assert_allclose(got, reference(x), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_predict_pads_to_a_fixed_batch(models, x):
    got = ORTModel(models["fixed4"]).predict(x[:7])  # chunks of 4: the last is padded, padding dropped
    assert got.shape == (7, NUM_CLASSES)
    np.testing.assert_allclose(got, reference(x[:7]), atol=1e-5)


def test_predict_with_dynamic_spatial_dims(models):
    small = np.random.default_rng(4).standard_normal((3, CHANNELS, 9, 13)).astype(np.float32)
    np.testing.assert_allclose(ORTModel(models["hw"]).predict(small), reference(small), atol=1e-5)


def test_predict_integer_input_rounds_and_clips(models):
    got = ORTModel(models["cast"]).predict(np.array([[-3.0, 2.6, 300.0], [0.4, 255.0, 17.0]], np.float32))
    np.testing.assert_array_equal(got, [[0, 3, 255], [0, 255, 17]])


def test_predict_and_invoke_raw_reject_bad_input(models, x):
    model = ORTModel(models["dynamic"])
    with pytest.raises(DataError, match=r"Received input of shape \(2, 3, 16, 16\)"):
        model.predict(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(DataError, match="batch_size=0"):
        model.predict(x, batch_size=0)
    assert model.predict(x[:0]).shape == (0, NUM_CLASSES)
    with pytest.raises(DataError, match="Received 2 input arrays"):
        model.invoke_raw([x, x])
    with pytest.raises(DataError, match="rejected the raw inputs") as info:
        model.invoke_raw([x.astype(np.float64)])
    assert "\n" not in str(info.value)
    (out,) = model.invoke_raw([x[:2]])
    assert out.shape == (2, NUM_CLASSES)


# ---------------------------------------------------------------- profiling


def test_profile_top_ops_counts_every_kernel(models, x):
    model = ORTModel(models["dynamic"], num_threads=1, profile=True, optimization="disable")
    for _ in range(5):
        model.invoke_raw([x[:1]])
    ops = top_ops_from_profile(model.profile_events(), 10)
    assert {o["op"] for o in ops} == GRAPH_OPS
    assert all(o["calls"] == 5 for o in ops)
    assert [o["total_ms"] for o in ops] == sorted((o["total_ms"] for o in ops), reverse=True)
    assert sum(o["percent"] for o in ops) == pytest.approx(100.0)
    assert [o["op"] for o in top_ops_from_profile(model.profile_events(), 2)] == [o["op"] for o in ops[:2]]  # served from the parsed profile
    assert model._profile_dir is None  # the temporary profile file is gone


def test_optimization_level_changes_the_graph_that_runs(models, x):
    """At "all" ONNX Runtime fuses Conv+Relu and adds NCHWc layout nodes; "disable" runs the graph as written."""
    model = ORTModel(models["dynamic"], num_threads=1, profile=True, optimization="all")
    model.invoke_raw([x[:1]])
    optimized = {o["op"] for o in top_ops_from_profile(model.profile_events(), 10)}
    assert "Relu" not in optimized and optimized != GRAPH_OPS


def test_top_ops_needs_profile(models):
    with pytest.raises(ConfigError, match="profile=True"):
        ORTModel(models["dynamic"]).profile_events()


def test_top_ops_from_profile_ranks_node_events():
    events = [
        {"cat": "Session", "name": "session_initialization", "dur": 9999},
        {"cat": "Node", "name": "conv_kernel_time", "dur": 300, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv_fence_before", "dur": 50, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv2_kernel_time", "dur": 300, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "relu_kernel_time", "dur": 100, "args": {"op_name": "Relu"}},
        {"cat": "Node", "name": "pool_kernel_time", "dur": 200, "args": {"op_name": "MaxPool"}},
        {"cat": "Node", "name": "no_op_name", "dur": 5, "args": {}},
    ]
    ops = top_ops_from_profile(events, n=2)
    assert ops == [
        {"op": "Conv", "total_ms": 0.6, "percent": pytest.approx(100 * 600 / 900), "calls": 2},  # fence skipped
        {"op": "MaxPool", "total_ms": 0.2, "percent": pytest.approx(100 * 200 / 900), "calls": 1},
    ]
    assert top_ops_from_profile([], n=10) == []


# ---------------------------------------------------------------- bad files


def _damaged(data: bytes, case: str) -> bytes:
    if case == "empty":
        return b""
    if case == "text":
        return b"this is a README, not a model\n" * 20
    if case == "half":
        return data[: len(data) // 2]
    if case == "tflite":
        return b"\x1c\x00\x00\x00TFL3" + bytes(200)
    raise AssertionError(case)


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("directory", "not a regular file"),
    ("empty", "is empty"),
    ("text", "not an ONNX model"),
    ("half", "not an ONNX model"),
    ("tflite", "not an ONNX model"),
])
def test_bad_files_give_one_line_artifact_errors(models, tmp_path, case, fragment):
    path = tmp_path / "bad.onnx"
    if case == "directory":
        path.mkdir()
    elif case != "missing":
        path.write_bytes(_damaged(models["dynamic"].read_bytes(), case))
    with pytest.raises(ArtifactError, match=fragment) as info:
        ORTModel(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "[ONNXRuntimeError]" not in message


def test_unknown_op_is_an_artifact_error(models, tmp_path):
    data = models["dynamic"].read_bytes()
    bad = tmp_path / "unknown_op.onnx"
    bad.write_bytes(data.replace(b"GlobalAveragePool", b"GlobalAverXgePool"))
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load .*GlobalAverXgePool"):
        ORTModel(bad)


FUZZ = """
import sys
import numpy as np
from edgetl.core.errors import ArtifactError, DataError
from edgetl.runtime.onnxruntime import ORTModel
source, scratch = sys.argv[1], sys.argv[2]
data = open(source, "rb").read()
outcomes = {"ok": 0, "refused": 0}
for seed in range(40):
    rng = np.random.default_rng(seed)
    mutable = bytearray(data)
    for i in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
        mutable[i] = int(rng.integers(0, 256))
    open(scratch, "wb").write(bytes(mutable))
    try:
        ORTModel(scratch).predict(np.zeros((2, 3, 32, 32), np.float32))
        outcomes["ok"] += 1  # the flips hit weight data: still a valid model
    except (ArtifactError, DataError) as exc:
        assert "\\n" not in str(exc)
        outcomes["refused"] += 1
print(outcomes["ok"], outcomes["refused"])
"""


def test_random_byte_flips_never_crash(models, tmp_path):
    result = run_python(FUZZ, str(models["dynamic"]), str(tmp_path / "fuzzed.onnx"))
    assert result.returncode == 0, f"returncode {result.returncode}: {result.stderr[-2000:]}"
    ok, refused = map(int, result.stdout.split())
    assert ok + refused == 40 and refused >= 10


def test_imports_lazily_and_runs_without_tensorflow(models):
    code = import_blocker((*TRAINING_MODULES, "onnx")) + textwrap.dedent("""
    import numpy as np
    import edgetl.runtime.onnxruntime as rt
    assert "onnxruntime" not in sys.modules, "onnxruntime imported at module import"
    out = rt.ORTModel(sys.argv[1]).predict(np.zeros((3, 3, 32, 32), np.float32))
    assert out.shape == (3, 4), out.shape
    print("ok", "tensorflow" in sys.modules, "onnx" in sys.modules)
    """)
    result = run_python(code, str(models["dynamic"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ok", "False", "False"]
