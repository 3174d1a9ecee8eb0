"""edgetl.runtime.litert: loading, predicting, describing, and refusing bad files without crashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.runtime.formats import find_format, open_model
from edgetl.runtime.litert import LiteRTModel
from edgetl.runtime.model import LoadedModel, TensorInfo
from edgetl.runtime.tflite_file import _walk_model, verify_tflite_file
from tests.helpers import INPUT_SHAPE, TFLITE_NUM_CLASSES, build_tflite_models

REPO_ROOT = Path(__file__).resolve().parents[3]
NUM_CLASSES = TFLITE_NUM_CLASSES


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    built = build_tflite_models(tmp_path_factory.mktemp("litert"))
    x = np.random.default_rng(2).standard_normal((40, *INPUT_SHAPE)).astype(np.float32)
    built["x"] = x
    built["expected"] = built["keras"].predict(x, verbose=0)
    return built


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )


# ---------------------------------------------------------------- tensor info and describe


def test_tensor_info_float_model(models):
    model = LiteRTModel(models["fp32"])
    (inp,) = model.inputs
    (out,) = model.outputs
    assert isinstance(inp, TensorInfo)
    assert inp.shape == (1, *INPUT_SHAPE) and inp.dtype == "float32"
    assert (inp.scale, inp.zero_point) == (0.0, 0) and not inp.quantized
    assert out.shape == (1, NUM_CLASSES) and out.dtype == "float32" and out.scale == 0.0


def test_tensor_info_int8_model(models):
    model = LiteRTModel(models["int8"])
    (inp,) = model.inputs
    (out,) = model.outputs
    assert inp.dtype == "int8" and out.dtype == "int8"
    assert inp.scale > 0 and -128 <= inp.zero_point <= 127 and inp.quantized
    # A softmax output in int8 is quantized to [0, 1] with scale 1/256 and zero point -128.
    assert out.scale == pytest.approx(1 / 256) and out.zero_point == -128


def test_tflite_is_opened_by_suffix_as_a_loaded_model(models):
    model = open_model(models["int8"], num_threads=1)
    assert isinstance(model, LiteRTModel) and isinstance(model, LoadedModel)
    fmt = find_format(models["int8"])
    assert (fmt.name, fmt.runtime) == ("tflite", model.runtime)
    assert fmt.version() == model.describe()["runtime_version"]


def test_describe(models):
    info = LiteRTModel(models["int8"], num_threads=1).describe()
    assert info["runtime"] == "litert"
    assert info["size_bytes"] == models["int8"].stat().st_size
    assert info["runtime_version"][0].isdigit()
    assert info["inputs"][0]["dtype"] == "int8" and info["inputs"][0]["shape"] == [1, *INPUT_SHAPE]
    json.dumps(info)


# ---------------------------------------------------------------- predict and invoke_raw


@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_float_predict_matches_keras(models, batch_size):
    model = LiteRTModel(models["fp32"])
    got = model.predict(models["x"], batch_size=batch_size)
    assert got.dtype == np.float32 and got.shape == (len(models["x"]), NUM_CLASSES)
    np.testing.assert_allclose(got, models["expected"], atol=1e-5)


def test_float_predict_without_xnnpack(models):
    got = LiteRTModel(models["fp32"], use_xnnpack=False).predict(models["x"][:5])
    np.testing.assert_allclose(got, models["expected"][:5], atol=1e-5)


def test_model_is_reusable_across_batch_sizes(models):
    model = LiteRTModel(models["fp32"])
    first = model.predict(models["x"][:9], batch_size=4)
    model.predict(models["x"][:1])
    again = model.predict(models["x"][:9], batch_size=4)
    np.testing.assert_array_equal(first, again)


def test_int8_predict_is_dequantized_and_agrees_on_top1(models):
    got = LiteRTModel(models["int8"]).predict(models["x"], batch_size=16)
    assert got.dtype == np.float32 and got.shape == (len(models["x"]), NUM_CLASSES)
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=0.05)
    agreement = np.mean(got.argmax(axis=1) == models["expected"].argmax(axis=1))
    assert agreement >= 0.9, f"int8 top-1 agrees with Keras on only {agreement:.0%} of inputs"
    np.testing.assert_allclose(got, models["expected"], atol=0.1)


def test_predict_rejects_wrong_shape(models):
    model = LiteRTModel(models["fp32"])
    with pytest.raises(DataError, match=r"Received input of shape \(2, 8, 8, 3\)"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32))


def test_bad_num_threads(models):
    with pytest.raises(ConfigError, match="num_threads=0"):
        LiteRTModel(models["fp32"], num_threads=0)


def test_invoke_raw_shapes_and_dtypes(models):
    model = LiteRTModel(models["int8"])
    raw = np.zeros((1, *INPUT_SHAPE), dtype=np.int8)
    (out,) = model.invoke_raw([raw])
    assert out.shape == (1, NUM_CLASSES) and out.dtype == np.int8
    with pytest.raises(DataError, match="Received 2 input arrays"):
        model.invoke_raw([raw, raw])


# ---------------------------------------------------------------- verification


def test_verifier_agrees_with_generated_schema(models):
    from ai_edge_litert import schema_py_generated as schema

    for key in ("fp32", "int8"):
        data = verify_tflite_file(models[key])
        parsed = schema.Model.GetRootAs(data, 0)
        counts = _walk_model(data, len(data))
        assert counts == {
            "subgraphs": parsed.SubgraphsLength(),
            "buffers": parsed.BuffersLength(),
            "operator_codes": parsed.OperatorCodesLength(),
        }


LOAD_AND_RUN = """
import sys
import numpy as np
from edgetl.core.errors import ArtifactError
from edgetl.runtime.litert import LiteRTModel
try:
    model = LiteRTModel(sys.argv[1])
    model.predict(np.zeros((2, 16, 16, 3), np.float32))
except ArtifactError as exc:
    print("ArtifactError:", exc)
    sys.exit(1)
print("OK")
"""


def corrupt(data: bytes, case: str) -> bytes:
    if case == "empty":
        return b""
    if case == "text":
        return b"this is a README, not a model\n" * 20
    if case == "half":
        return data[: len(data) // 2]
    if case == "ninety_percent":
        return data[: int(len(data) * 0.9)]
    if case == "flipped_middle":
        mutable = bytearray(data)
        rng = np.random.default_rng(3)
        middle = len(data) // 2
        mutable[middle - 256 : middle + 256] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
        return bytes(mutable)
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "half", "ninety_percent", "flipped_middle"])
def test_bad_file_gives_one_line_artifact_error_in_subprocess(models, tmp_path, case):
    path = tmp_path / "bad.tflite"
    if case != "missing":
        path.write_bytes(corrupt(models["fp32"].read_bytes(), case))
    result = run_python(LOAD_AND_RUN, str(path))
    assert result.returncode == 1, f"returncode {result.returncode} (negative: killed by a signal): {result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ArtifactError:"), result.stdout + result.stderr
    assert str(path) in lines[0]


def test_bad_files_raise_in_process(tmp_path, models):
    with pytest.raises(ArtifactError, match="does not exist"):
        verify_tflite_file(tmp_path / "nope.tflite")
    with pytest.raises(ArtifactError, match="not a regular file"):
        verify_tflite_file(tmp_path)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty"):
        verify_tflite_file(empty)
    text = tmp_path / "text.tflite"
    text.write_bytes(corrupt(b"", "text"))
    with pytest.raises(ArtifactError, match="file identifier"):
        verify_tflite_file(text)
    half = tmp_path / "half.tflite"
    half.write_bytes(corrupt(models["int8"].read_bytes(), "half"))
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        LiteRTModel(half)


@pytest.mark.parametrize("key", ["fp32", "int8"])
@pytest.mark.parametrize("case", ["half", "ninety_percent", "flipped_middle"])
def test_verifier_catches_damage_before_the_interpreter(models, tmp_path, key, case):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(corrupt(models[key].read_bytes(), case))
    with pytest.raises(ArtifactError, match="is corrupt or truncated") as info:
        verify_tflite_file(path)
    assert "\n" not in str(info.value)


FUZZ = """
import sys
import numpy as np
from edgetl.core.errors import ArtifactError, DataError
from edgetl.runtime.litert import LiteRTModel
source, scratch = sys.argv[1], sys.argv[2]
data = open(source, "rb").read()
outcomes = {"ok": 0, "refused": 0}
for seed in range(60):
    rng = np.random.default_rng(seed)
    mutable = bytearray(data)
    for i in rng.integers(len(data) // 4, 3 * len(data) // 4, size=int(rng.integers(1, 12))):
        mutable[i] = int(rng.integers(0, 256))
    open(scratch, "wb").write(bytes(mutable))
    try:
        LiteRTModel(scratch).predict(np.zeros((2, 16, 16, 3), np.float32))
        outcomes["ok"] += 1  # the flips hit weight data: still a valid model
    except (ArtifactError, DataError) as exc:
        assert "\\n" not in str(exc)
        outcomes["refused"] += 1
print(outcomes["ok"], outcomes["refused"])
"""


@pytest.mark.parametrize("key", ["fp32", "int8"])
def test_random_byte_flips_never_crash(models, tmp_path, key):
    result = run_python(FUZZ, str(models[key]), str(tmp_path / "fuzzed.tflite"))
    assert result.returncode == 0, f"returncode {result.returncode}: {result.stderr[-2000:]}"
    ok, refused = map(int, result.stdout.split())
    assert ok + refused == 60 and refused >= 30


def test_runtime_imports_and_runs_without_tensorflow(models):
    code = """
    import sys
    import numpy as np
    import edgetl.bench.harness
    from edgetl.runtime.litert import LiteRTModel
    out = LiteRTModel(sys.argv[1]).predict(np.zeros((3, 16, 16, 3), np.float32))
    assert out.shape == (3, 3), out.shape
    edgetl.bench.harness.bench_tflite(sys.argv[1], threads=[1], warmup=1, runs=2)
    loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.", "tf_keras")))
    assert not loaded, loaded
    print("no tensorflow")
    """
    result = run_python(code, str(models["int8"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no tensorflow" in result.stdout


def test_declared_shapes_and_resize_inputs(models):
    model = LiteRTModel(models["int8"])
    assert model.declared_shapes == [("?", *INPUT_SHAPE)]  # Keras' None batch is -1 in shape_signature
    model.resize_inputs([(3, *INPUT_SHAPE)])
    assert model.inputs[0].shape == (3, *INPUT_SHAPE) and model.declared_shapes == [("?", *INPUT_SHAPE)]
    (out,) = model.invoke_raw([np.zeros((3, *INPUT_SHAPE), np.int8)])
    assert out.shape == (3, NUM_CLASSES)
    with pytest.raises(DataError, match="Received 2 input shapes"):
        model.resize_inputs([(1, *INPUT_SHAPE), (1, *INPUT_SHAPE)])
    with pytest.raises(DataError, match="LiteRT cannot run .* with input shapes") as info:
        model.resize_inputs([(2, 16)])
    assert "\n" not in str(info.value)
