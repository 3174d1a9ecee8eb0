"""The tests' shared helpers, in one place (test modules never import each other).

- Fuzzing (tests/unit/runtime/test_security_fuzz.py and benchmarks/fuzz.py): mutations of model files are
  plain byte edits of a seed file, seeded, so a failing case is reproduced from
  ``(seed file, mutation name, seed)`` alone.
- Tiny models built without edgetl (ONNX graphs, TFLite flatbuffers, a small Keras model), the
  generated-C compile-and-run check, CLI error assertions, the tiny build settings.
- :func:`block_training_imports`: the one TensorFlow import blocker.

Nothing here imports edgetl at module level (the fuzz worker imports this file in a child process).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def zero_region(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    start = rng.randrange(len(out))
    length = rng.choice((4, 16, 64, 256))
    out[start : start + length] = bytes(len(out[start : start + length]))
    return bytes(out)


def inflate_integer(data: bytes, rng: random.Random) -> bytes:
    """Overwrite an aligned 32-bit word with a large or negative value (an offset, index, length or dimension)."""
    out = bytearray(data)
    pos = rng.randrange(max(len(out) // 4, 1)) * 4
    value = rng.choice((0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000, 2**24 + 1, 0xFFFF, rng.getrandbits(32)))
    if pos + 4 <= len(out):
        struct.pack_into("<I", out, pos, value)
    return bytes(out)


def small_integer_change(data: bytes, rng: random.Random) -> bytes:
    """Add or subtract a small amount to an aligned 32-bit word (a tensor index, a count: off by a little)."""
    out = bytearray(data)
    pos = rng.randrange(max(len(out) // 4, 1)) * 4
    if pos + 4 <= len(out):
        (value,) = struct.unpack_from("<i", out, pos)
        struct.pack_into("<i", out, pos, max(min(value + rng.choice((-2, -1, 1, 2, 3)), 2**31 - 1), -(2**31)))
    return bytes(out)


def nan_float(data: bytes, rng: random.Random) -> bytes:
    """Overwrite an aligned 32-bit word with NaN, infinity, 0 or a negative float (a scale, a weight)."""
    out = bytearray(data)
    pos = rng.randrange(max(len(out) // 4, 1)) * 4
    if pos + 4 <= len(out):
        struct.pack_into("<f", out, pos, rng.choice((float("nan"), float("inf"), -1.0, 0.0, 1e38)))
    return bytes(out)


def append_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.choice((1, 7, 100, 4096)))


def splice(data: bytes, rng: random.Random) -> bytes:
    """Copy one region of the file over another (a plausible-looking but wrong structure)."""
    out = bytearray(data)
    length = rng.choice((8, 32, 128))
    src, dst = rng.randrange(len(out)), rng.randrange(len(out))
    chunk = data[src : src + length]
    out[dst : dst + len(chunk)] = chunk
    return bytes(out[: len(data)])


#: Name -> mutation; each takes the seed file's bytes and a seeded ``random.Random``.
MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bit_flips": bit_flips,
    "truncate": truncate,
    "zero_region": zero_region,
    "inflate_integer": inflate_integer,
    "small_integer_change": small_integer_change,
    "nan_float": nan_float,
    "append_garbage": append_garbage,
    "splice": splice,
}


def mutants(seeds: dict[str, bytes], count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` mutated files, cycling through the seed files and the mutations: ``(name, bytes)``.

    The name says how to reproduce the file: ``<seed file stem>-<mutation>-<index>``.
    """
    names = sorted(seeds)
    kinds = sorted(MUTATIONS)
    for index in range(count):
        source = names[index % len(names)]
        kind = kinds[(index // len(names)) % len(kinds)]
        rng = random.Random(f"{seed}-{index}")
        yield f"{Path(source).stem}-{kind}-{index}", MUTATIONS[kind](seeds[source], rng)


def write_corpus(seeds: dict[str, Path], out_dir: Path, count: int, seed: int, sidecar: bytes | None = None) -> list[Path]:
    """Write ``count`` mutants of the seed files (by suffix) into ``out_dir``, one folder each, plus the
    special cases: an empty file, and a directory named like a model, per suffix.

    Args:
        seeds: seed model files (``.tflite``, ``.onnx``).
        sidecar: bytes of an ``edgetl.json`` to put beside each mutant (labels and preprocessing), so
            commands that need metadata reach the model itself; its ``model_file`` is rewritten per file.

    Returns:
        The mutated model paths, in a stable order.
    """

    datas = {str(path): path.read_bytes() for path in seeds.values()}
    suffix_of = {str(path): path.suffix for path in seeds.values()}
    paths = []
    specials: list[tuple[str, bytes | None, str]] = []
    for suffix in sorted({path.suffix for path in seeds.values()}):
        specials += [(f"empty{suffix[1:]}", b"", suffix), (f"folder{suffix[1:]}", None, suffix)]
    for name, data, suffix in specials:
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"x{suffix}"
        if data is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)
        paths.append(path)
    for index, (name, data) in enumerate(mutants(datas, count, seed)):
        source = sorted(datas)[index % len(datas)]
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"model{suffix_of[source]}"
        path.write_bytes(data)
        paths.append(path)
    if sidecar is not None:
        meta = json.loads(sidecar)
        for path in paths:
            (path.parent / "edgetl.json").write_text(json.dumps({**meta, "model_file": path.name}), encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------------------------
# Running the CLI over a corpus: one worker process per command, watched from outside
# ----------------------------------------------------------------------------------------------

#: What a file's run may end as. Only ``ok`` and ``error`` are acceptable.
OUTCOMES = ("ok", "error", "noisy-error", "traceback", "crash", "hang")


def command_args(command: str, path: Path, extra: dict[str, str]) -> list[str]:
    """The ``edgetl`` arguments for one file: ``inspect``, ``predict``, ``eval``, ``package`` (python) or ``package-c``."""
    if command == "inspect":
        return ["inspect", str(path)]
    if command == "inspect-json":
        return ["inspect", str(path), "--json"]
    if command == "predict":
        return ["predict", str(path), extra["image"]]
    if command == "eval":
        return ["eval", str(path), "--data", extra["data"]]
    if command == "package":
        return ["package", str(path), "--for", "python", "--out", str(path.parent / "pkg-python"), "--force"]
    if command == "package-c":
        return ["package", str(path), "--for", "c", "--out", str(path.parent / "pkg-c"), "--force"]
    raise ValueError(command)


def classify(exit_code: int, exception: BaseException | None, stdout: str, stderr: str) -> str:
    """``ok`` (exit 0), ``error`` (non-zero exit, stderr ends in one ``error:`` line, no traceback),
    ``noisy-error`` (non-zero exit with more on stderr), or ``traceback`` (an exception escaped)."""
    if exception is not None and not isinstance(exception, SystemExit):
        return "traceback"
    if "Traceback (most recent call last)" in stdout + stderr:
        return "traceback"
    if exit_code == 0:
        return "ok"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) == 1 and lines[0].startswith("error:"):
        return "error"
    return "noisy-error"


def worker(command: str, list_file: str, out_file: str, extra_json: str) -> None:
    """Run ``edgetl <command>`` in this process on each file listed in ``list_file`` (typer's CliRunner),
    appending ``{"file", "outcome", "exit_code", "message"}`` per file to ``out_file`` (a ``start`` line first,
    so a watcher knows which file killed or hung the worker)."""
    import time

    from typer.testing import CliRunner

    from edgetl.cli.app import app


    extra = json.loads(extra_json)
    runner = CliRunner()
    paths = [line for line in Path(list_file).read_text(encoding="utf-8").splitlines() if line]
    with open(out_file, "a", encoding="utf-8") as out:
        for path in paths:
            out.write(json.dumps({"start": path}) + "\n")
            out.flush()
            started = time.monotonic()
            result = runner.invoke(app, command_args(command, Path(path), extra), env={"COLUMNS": "200"})
            stderr = result.stderr if hasattr(result, "stderr") else ""
            outcome = classify(result.exit_code, result.exception, result.stdout, stderr)
            message = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
            if outcome == "traceback" and result.exception is not None:
                message = f"{type(result.exception).__name__}: {result.exception}"[:300]
            seconds = round(time.monotonic() - started, 3)
            out.write(json.dumps({"file": path, "outcome": outcome, "exit_code": result.exit_code, "message": message, "seconds": seconds}) + "\n")
            out.flush()


def run_command(command: str, paths: list[Path], work: Path, extra: dict[str, str], *, file_timeout: float, python: str) -> list[dict]:
    """Every path through ``edgetl <command>`` in worker processes (restarted after a crash or a hang).

    Returns:
        One ``{"file", "outcome", "exit_code", "message"}`` per path, in order; a worker that died
        by a signal gives ``crash`` for the file it was on, one that made no progress for
        ``file_timeout`` seconds gives ``hang``.
    """
    import os
    import subprocess
    import time

    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    pending = [str(p) for p in paths]
    attempt = 0
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    while pending:
        attempt += 1
        list_file, out_file, log_file = (work / f"{command}-{attempt}.{ext}" for ext in ("list", "jsonl", "log"))
        list_file.write_text("\n".join(pending) + "\n", encoding="utf-8")
        code = (
            "import sys; from tests.helpers import worker; "
            f"worker({command!r}, {str(list_file)!r}, {str(out_file)!r}, {json.dumps(extra)!r})"
        )
        with open(log_file, "w", encoding="utf-8") as log:
            proc = subprocess.Popen([python, "-c", code], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
            last_size, last_change = -1, time.monotonic()
            while proc.poll() is None:
                time.sleep(0.2)
                size = out_file.stat().st_size if out_file.exists() else 0
                if size != last_size:
                    last_size, last_change = size, time.monotonic()
                # the first file also waits for the worker's imports
                elif time.monotonic() - last_change > file_timeout + (30 if size == 0 else 0):
                    proc.kill()
                    proc.wait()
                    break
        current = None
        if out_file.exists():
            for line in out_file.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if "start" in entry:
                    current = entry["start"]
                else:
                    results[entry["file"]] = entry
                    current = None
        if proc.returncode == 0 and current is None:
            break
        if current is None:  # died before starting a file: its imports failed
            raise RuntimeError(f"the {command} worker failed before its first file:\n{log_file.read_text(encoding='utf-8')[-3000:]}")
        outcome = "hang" if proc.returncode in (-9,) and current not in results else "crash"
        results[current] = {"file": current, "outcome": outcome, "exit_code": proc.returncode, "message": f"worker ended with {proc.returncode} on this file"}
        pending = [p for p in pending if p not in results]
    return [results[str(p)] for p in paths]


def make_seed_models(out_dir: Path) -> tuple[dict[str, Path], bytes]:
    """Small real models to mutate: an int8 ``.tflite`` classifier (TensorFlow's converter) and a float
    ``.onnx`` one, both (N, 8, 8, 3) -> 2 classes; and the ``edgetl.json`` bytes that describe them.

    Imports TensorFlow and edgetl (to embed metadata); only the mutations above are edgetl-free.
    """
    import os

    import numpy as np

    from edgetl.core.contract import PreprocessContract
    from edgetl.core.metadata import embedded_metadata
    from edgetl.runtime.tflite_file import add_tflite_metadata

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx
    import tensorflow as tf
    import tf_keras as keras
    from onnx import TensorProto, helper, numpy_helper


    out_dir.mkdir(parents=True, exist_ok=True)
    classes, contract = ["a", "b"], PreprocessContract(input_size=8)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax"),
    ])
    calibration = np.random.default_rng(1).uniform(-1, 1, (8, 1, 8, 8, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    tflite = out_dir / "seed_int8.tflite"
    tflite.write_bytes(add_tflite_metadata(converter.convert(), "edgetl", embedded_metadata(classes, contract)))

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("ReduceMean", ["relu"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "fc_w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "seed", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])], inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    for key, value in {"labels": json.dumps(classes), "preprocessing": json.dumps(contract.to_dict())}.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx_path = out_dir / "seed.onnx"
    onnx.save(onnx_model, str(onnx_path))
    sidecar = json.dumps({"class_names": classes, "preprocessing": contract.to_dict()}).encode()
    return {"tflite": tflite, "onnx": onnx_path}, sidecar


def make_inputs(out_dir: Path) -> dict[str, str]:
    """An 8x8 image and a two-class image folder (``a``, ``b``) for ``predict`` and ``eval``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    data = out_dir / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(data / name / f"{i}.png")
    image = out_dir / "image.png"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(image)
    return {"image": str(image), "data": str(data)}


ONNX_NUM_CLASSES = 4
ONNX_CHANNELS = 3
TFLITE_NUM_CLASSES = 3


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert err.startswith("error:"), err
    assert "\n" not in err, f"error is not one line:\n{err}"
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def build_onnx_model(
    path: Path,
    *,
    batch: int | str = "N",
    height: int | str = 32,
    width: int | str = 32,
    metadata: dict[str, str] | None = None,
    filters: int = 4,
    seed: int = 0,
) -> Path:
    """A tiny NCHW classifier: 1x1 Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> Add -> Softmax.

    A string dimension is symbolic (dynamic). The 1x1 convolution keeps a numpy reference
    (:func:`reference`) a few lines long.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "W": rng.standard_normal((filters, ONNX_CHANNELS, 1, 1)).astype(np.float32),
        "D": (rng.standard_normal((filters, ONNX_NUM_CLASSES)) * 3).astype(np.float32),
        "b": rng.standard_normal(ONNX_NUM_CLASSES).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "D"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, ONNX_CHANNELS, height, width])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, ONNX_NUM_CLASSES])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


INPUT_SHAPE = (16, 16, 3)


def build_tflite_models(out_dir: Path) -> dict:
    """A tiny Keras classifier, its fp32 TFLite file and its full-integer int8 TFLite file."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input(INPUT_SHAPE),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(TFLITE_NUM_CLASSES, activation="softmax"),
        ]
    )
    # Spread the logits so top-1 is decisive and int8 rounding rarely flips it.
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 20.0, bias])

    fp32 = out_dir / "tiny_fp32.tflite"
    fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    rng = np.random.default_rng(1)
    calibration = rng.standard_normal((20, 1, *INPUT_SHAPE)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8 = out_dir / "tiny_int8.tflite"
    int8.write_bytes(converter.convert())
    return {"keras": model, "fp32": fp32, "int8": int8}


def build_tflite(path: Path, ops: list[str]) -> Path:
    """A float model written with the flatbuffer schema (no converter): x[1,8] -> ADD(x, const) -> each of ``ops`` -> y.

    ``ops`` are one-input builtin operators, e.g. SIGN (LiteRT runs it; XNNPACK and TFLite Micro do not).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name: str, buffer: int = 0):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [1, 8], schema.TensorType.FLOAT32, buffer
        return t

    constant = schema.BufferT()
    constant.data = np.arange(8, dtype=np.float32).tobytes()
    model = schema.ModelT()
    model.version, model.description = 3, "edgetl test model"
    model.buffers = [schema.BufferT(), schema.BufferT(), constant]
    tensors, operators, codes = [tensor("x"), tensor("c", buffer=2)], [], []
    for i, name in enumerate(["ADD", *ops]):
        if name not in codes:
            codes.append(name)
        op = schema.OperatorT()
        op.opcodeIndex = codes.index(name)
        op.inputs = [len(tensors) - 1 if i else 0] + ([1] if name == "ADD" else [])
        op.outputs = [len(tensors)]
        if name == "ADD":
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
        tensors.append(tensor(f"t{i}"))
        operators.append(op)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [len(tensors) - 1], operators
    model.subgraphs = [subgraph]
    model.operatorCodes = []
    for name in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, name)
        code.deprecatedBuiltinCode, code.version = min(code.builtinCode, 127), 1
        model.operatorCodes.append(code)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


MAIN_CC = r"""
#define EDGETL_MODEL_OPS_NO_TFLM_INCLUDE
#include "stub_tflm.h"
#include <cstdint>
#include <cstdio>
#include "labels.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"

static_assert(kOutputElementCount == kCategoryCount, "one score per label");
static_assert(kInputHeight == kImageHeight && kInputWidth == kImageWidth && kInputChannels == kImageChannels, "input is the image");
static_assert(kTensorArenaSize >= kTensorArenaMeasuredSize + kTensorArenaMargin, "arena");
static_assert(sizeof(kInputLookup) == kImageChannels * 256 * sizeof(InputType), "lookup table");

int main() {
  ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return 3;
  std::printf("ops %u", kModelOpCount);
  for (const auto& op : resolver.added) std::printf(" %s", op.c_str());
  unsigned long long hash = 1469598103934665603ULL;  // FNV-1a over the array
  for (unsigned int i = 0; i < g_model_data_len; ++i) { hash ^= g_model_data[i]; hash *= 1099511628211ULL; }
  std::printf("\nmodel %u %llu %d\n", g_model_data_len, hash, static_cast<int>(reinterpret_cast<std::uintptr_t>(g_model_data) % 16));
  std::printf("labels");
  for (int i = 0; i < kCategoryCount; ++i) std::printf(" %s", kCategoryLabels[i]);
  std::printf("\nlookup");
  for (int c = 0; c < kImageChannels; ++c) for (int p = 0; p < 256; ++p) std::printf(" %d", static_cast<int>(QuantizePixel(static_cast<uint8_t>(p), c)));
  std::printf("\narena %d\nprobability %.8f\n", kTensorArenaSize, DequantizeOutput(static_cast<OutputType>(kOutputZeroPoint + 64)));
  return 0;
}
"""


def _stub_resolver() -> str:
    """Declarations standing in for TFLite Micro's headers: every Add...() edgetl knows, each recording its call."""
    from edgetl.runtime.tflm import TFLM_CUSTOM_OP_RESOLVER_METHODS, TFLM_OP_RESOLVER_METHODS

    methods = {**TFLM_OP_RESOLVER_METHODS, **TFLM_CUSTOM_OP_RESOLVER_METHODS}
    adds = "\n".join(f'  TfLiteStatus {method}() {{ return Add("{op}"); }}' for op, method in sorted(methods.items()))
    return f"""#include <string>
#include <vector>
enum TfLiteStatus {{ kTfLiteOk = 0, kTfLiteError = 1 }};
namespace tflite {{
template <unsigned int tOpCount>
class MicroMutableOpResolver {{
 public:
  std::vector<std::string> added;
  TfLiteStatus Add(const char* op) {{
    if (added.size() >= tOpCount) return kTfLiteError;  // the resolver's capacity N
    for (const auto& name : added) if (name == op) return kTfLiteError;  // TFLM refuses a second registration
    added.push_back(op);
    return kTfLiteOk;
  }}
{adds}
}};
}}  // namespace tflite
"""


def compile_and_run_c_package(out: Path, build: Path) -> dict[str, str]:
    """Compile a `--for c` package in ``out`` with :data:`MAIN_CC` (g++, -Werror) in ``build``, run it,
    and return what it printed as ``{key: rest of line}``; skips (or fails under EDGETL_REQUIRE_GXX) without g++."""
    gxx = shutil.which("g++")
    if gxx is None:
        if os.environ.get("EDGETL_REQUIRE_GXX"):
            pytest.fail("g++ is required (EDGETL_REQUIRE_GXX is set) but not installed")
        pytest.skip("g++ not installed (apt-get install g++)")
    build.mkdir(parents=True, exist_ok=True)
    for name in ("labels.h", "model_data.h", "model_data.cc", "model_ops.h", "model_settings.h"):
        shutil.copy(out / name, build / name)
    (build / "stub_tflm.h").write_text(_stub_resolver())
    (build / "main.cc").write_text(MAIN_CC)
    compiled = subprocess.run(
        [gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O0", "main.cc", "model_data.cc", "-o", "check"],
        cwd=build, capture_output=True, text=True, timeout=600,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    ran = subprocess.run([str(build / "check")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return dict(line.split(" ", 1) for line in ran.stdout.strip().splitlines())


def _nhwc_onnx_classifier(path: Path, *, metadata: dict[str, str] | None, size: int = 32) -> tuple[Path, dict[str, np.ndarray]]:
    """NHWC float input -> Transpose -> 1x1 Conv -> GlobalAveragePool -> Flatten -> MatMul -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weights = {"W": rng.standard_normal((6, 3, 1, 1)).astype(np.float32), "D": (rng.standard_normal((6, 4)) * 4).astype(np.float32)}
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "W"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "D"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "nhwc",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path, weights


#: MobileNetV2 alpha 0.35 at 32 px (as tfmot's own tests), trained for a few seconds.
TINY_SETTINGS = {
    "model": {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 32, "weights": "none"},
    "data": {"val_split": 0.25, "seed": 0, "batch_size": 16},
    # Epochs are cheap at 32 px (conversion dominates); a decisive model makes int8 parity meaningful.
    "train": {"head_epochs": 3, "head_lr": 3e-3, "fine_tune_epochs": 30, "patience": 8, "augment": False, "schedule": "cosine"},
    "qat": {"epochs": 2, "lr": 1e-4},
    "export": {"representative_samples": 16},
    "bench": {"warmup": 2, "runs": 5, "threads": [1]},
}


def tiny_config(data: Path, **sections):
    from edgetl.core.config import validate
    from edgetl.pipeline.config import deep_merge

    settings = deep_merge(TINY_SETTINGS, {"data": {"path": str(data)}})
    return validate(deep_merge(settings, sections), "test settings")


#: What a device (TensorFlow-free) install does not have.
TRAINING_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx")


def import_blocker(blocked: tuple[str, ...] = TRAINING_MODULES, *, log_env: str | None = None, report_attempts: bool = False) -> str:
    """Python source that makes ``blocked`` packages unimportable in the process that runs it, as if
    they were not installed (``ModuleNotFoundError``).

    Put it at the top of a ``python -c`` script, or write it as ``sitecustomize.py`` in a folder on
    ``PYTHONPATH`` to reach child processes too (:func:`blocker_site`). With ``log_env``, every
    process that installs it appends its pid to the file named by that environment variable, so a
    test can check that the blocker reached the processes it meant to. With ``report_attempts``,
    the process prints ``BLOCKED IMPORTS: ...`` to stderr at exit if anything tried to import a
    blocked package (a device command must not even try).
    """
    log = (
        f"with open(os.environ[{log_env!r}], 'a') as _log:\n    _log.write(f'{{os.getpid()}}\\n')\n" if log_env else ""
    )
    report = (
        "import atexit\n"
        "atexit.register(lambda: _BlockImports.attempts and print('BLOCKED IMPORTS: ' + ', '.join(sorted(set(_BlockImports.attempts))), file=sys.stderr))\n"
        if report_attempts else ""
    )
    return (
        "import os\nimport sys\n"
        + log
        + "class _BlockImports:\n"
        f"    blocked = {tuple(blocked)!r}\n"
        "    attempts = []\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.blocked:\n"
        "            self.attempts.append(name)\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked for this test)', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _BlockImports())\n"
        + report
    )


def blocker_site(folder: Path, blocked: tuple[str, ...] = TRAINING_MODULES, *, log_env: str | None = None) -> Path:
    """A folder holding a ``sitecustomize.py`` with :func:`import_blocker`: prepend it to PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(import_blocker(blocked, log_env=log_env))
    return folder


def structure(data: bytes) -> list:
    """Every op in order with its tensors' dtype, shape, shape signature, quantization and, for
    constant tensors (weights, biases), their bytes. Tensor names are left out: they differ."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    described = []
    for op in ops:
        entries = []
        for index in [*op["inputs"], *op["outputs"]]:
            if index < 0:
                entries.append(None)
                continue
            t = tensors[index]
            q = t["quantization_parameters"]
            constant = interpreter.get_tensor(index).tobytes() if index not in produced else None
            entries.append((str(t["dtype"]), tuple(t["shape"]), tuple(t["shape_signature"]), tuple(q["scales"]), tuple(q["zero_points"]), constant))
        described.append((op["op_name"], entries))
    return described


def savedmodel_route(model, target, representative, contract) -> bytes:
    """The conversion as before: ``from_keras_model`` (SavedModel written and read back)."""
    from edgetl.export import tflite as tflite_exporter

    return tflite_exporter.convert(model, target, representative=representative, contract=contract, route="savedmodel")


#: A valid preprocessing entry of edgetl metadata.
GOOD = {"input_size": 32, "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5], "resize": "bilinear", "channel_order": "RGB", "layout": "NHWC", "pixel_range": [0, 255]}


def run_cli(*args):
    """``edgetl ARGS`` in this process (typer's CliRunner); arguments are turned into strings."""
    from typer.testing import CliRunner

    from edgetl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


#: Headless browsers the report tests open self-contained HTML reports in.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """A headless browser on PATH; skips the test without one, fails it under ``EDGETL_REQUIRE_CHROMIUM=1`` (CI)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("EDGETL_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"EDGETL_REQUIRE_CHROMIUM=1 but none of {', '.join(CHROMIUM_NAMES)} is on PATH (apt-get install chromium)")
    pytest.skip(f"no headless browser: none of {', '.join(CHROMIUM_NAMES)} is on PATH (apt-get install chromium)")


def headless(browser: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``browser`` headless with its own profile under ``tmp_path``."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=90,
    )


def html_elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of ``html`` with its attributes, in order."""
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    parser = Elements()
    parser.feed(html)
    return parser.tags
