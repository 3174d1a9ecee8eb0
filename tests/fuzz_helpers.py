"""Mutations of model files for the fuzz test (tests/unit/test_security_fuzz.py) and benchmarks/fuzz.py.

Nothing here imports edgetl: the mutations are plain byte edits of a seed file, seeded, so a
failing case is reproduced from ``(seed file, mutation name, seed)`` alone.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path


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
    import json

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
    import json
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
    import json
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
            "import sys; from tests.fuzz_helpers import worker; "
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
    import json
    import os

    import numpy as np

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx
    import tensorflow as tf
    import tf_keras as keras
    from onnx import TensorProto, helper, numpy_helper

    from edgetl.core.contract import PreprocessContract
    from edgetl.core.metadata import embedded_metadata
    from edgetl.runtime.litert import add_tflite_metadata

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
