"""``package``: a model as an app needs it, checked on the runtime the app will use.

``package(artifact, "c" | "android" | "ios" | "python", out)`` writes one folder:

* ``c``: the ``.tflite`` as a 16-byte aligned C array (``model_data.h``/``model_data.cc``),
  ``labels.h``, ``model_settings.h`` (tensor shapes, dtypes, quantization, the preprocessing
  contract, a pixel -> input lookup table, the tensor arena size) and ``model_ops.h`` (a
  ``tflite::MicroMutableOpResolver<N>`` that registers exactly the operators the model uses).
  The arena is not estimated: the model is loaded in TFLite Micro's own interpreter
  (:mod:`edgetl.runtime.tflm`) and the smallest arena that allocates is found by bisection;
  a stated margin is added. TFLite Micro's int8 outputs are compared with LiteRT's on the same
  inputs, and the result is recorded in ``package.json``.
* ``android`` / ``ios`` / ``python``: the model file, ``labels.txt``, ``edgetl.json`` and a
  README with loading code for LiteRT (Kotlin, Swift) or ai-edge-litert / ONNX Runtime (Python,
  plus a runnable ``predict.py``), every constant of the preprocessing contract filled in.

Everything is checked before anything is written (budgets, dtypes, operators), then written into
a temporary folder that replaces ``out`` only when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import PackageConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError, BudgetError, ConfigError, OutputExistsError, VerificationError
from edgetl.core.metadata import SCHEMA_VERSION, ModelInfo, checked_metadata, labels_text, package_versions
from edgetl.core.progress import Progress, log_progress
from edgetl.core.text import c_string, kotlin_string, markdown_code, markdown_text, python_string, swift_string
from edgetl.core.types import PackageFor
from edgetl.core.units import human_size, parse_margin, parse_size

log = logging.getLogger(__name__)

#: ``package.json`` marks a folder ``package`` wrote (and may replace).
REPORT_FILE = "package.json"
REPORT_KIND = "edgetl-package"
#: Inputs compared between TFLite Micro and LiteRT: every input at its zero point, then seeded random tensors.
PARITY_RANDOM_SAMPLES = 3
PARITY_SEED = 0


# ----------------------------------------------------------------------------------------------
# Sizes and budgets
# ----------------------------------------------------------------------------------------------


def _margin_rule(margin: tuple[int, float]) -> str:
    size, fraction = margin
    parts = ([human_size(size)] if size else []) + ([f"{100 * fraction:g}% of the measured arena"] if fraction else [])
    if not parts:
        return "no margin"
    return parts[0] if len(parts) == 1 else f"the larger of {parts[0]} and {parts[1]}"


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


# ----------------------------------------------------------------------------------------------
# Inputs: the artifact, its metadata, the output folder
# ----------------------------------------------------------------------------------------------


@dataclass
class PackageResult:
    """What ``package`` wrote.

    Attributes:
        out_dir: the package folder.
        target: what it is for.
        files: file names in it.
        report: the content of ``package.json``.
    """

    out_dir: Path
    target: PackageFor
    files: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def resolve_artifact(path: Path) -> Path:
    """A model file for ``path``: the file itself, or the ``model_file`` an edgetl folder's ``edgetl.json`` names.

    Raises:
        ArtifactError: missing, or a folder without a model.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"artifact {path} does not exist; pass a .tflite/.onnx file or an edgetl build/export folder")
    if path.is_file():
        if path.suffix.lower() not in (".tflite", ".onnx"):
            raise ArtifactError(f"cannot package {path}: expected a .tflite or .onnx file or an edgetl build/export folder")
        return path
    marker = path / _fs.MARKER
    named = None
    if marker.is_file():
        try:
            named = _fs.read_json(marker).get("model_file")
        except (OSError, ValueError):
            named = None
    # model_file is one file name inside the folder: never a path that leads out of it
    if isinstance(named, str) and named == Path(named).name and (path / named).is_file() and Path(named).suffix.lower() in (".tflite", ".onnx"):
        return path / named
    raise ArtifactError(f"{path} is not an edgetl build/export folder with a model (no {_fs.MARKER} naming a .tflite/.onnx model_file)")


def _model_info(model: Path, metadata: dict[str, Any] | None) -> tuple[ModelInfo, dict[str, Any] | None]:
    """Labels and contract, and the full metadata when there is some that describes this very file."""
    if metadata is not None:
        try:
            class_names, contract = checked_metadata(metadata["class_names"], metadata["preprocessing"], f"the metadata of {model}")
        except KeyError as exc:
            raise ArtifactError(f"the metadata of {model} has no {exc.args[0]!r}; it needs class_names and preprocessing") from None
        backbone = metadata.get("backbone")
        return ModelInfo(class_names, contract, backbone if isinstance(backbone, str) else None, metadata), metadata
    from edgetl.core.metadata import read_model_info
    from edgetl.device.evaluate import model_info_for

    try:
        info = read_model_info(model)
        if info.extra.get("model_file") == model.name:
            return info, info.extra
    except ArtifactError:
        pass
    return model_info_for(model), None


def _check_out_dir(out: Path, force: bool) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; pass a folder for --out")
    if not out.is_dir() or force or not any(out.iterdir()):
        return
    report = out / REPORT_FILE
    try:
        ours = report.is_file() and _fs.read_json(report).get("kind") == REPORT_KIND
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise OutputExistsError(f"output folder {out} already holds files that are not an edgetl package; pass --force to replace it or choose another --out")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# TFLite Micro checks and measurements
# ----------------------------------------------------------------------------------------------


def check_tflm_model(model: Path, data: bytes) -> dict[str, int]:
    """Cheap checks that a ``.tflite`` can run in TFLite Micro: full-integer, every operator has a kernel.

    Returns:
        Operator name -> count.

    Raises:
        ArtifactError: a float model or float input/output (TFLite Micro wants int8), or an
            operator TFLite Micro lacks (named).
    """
    from edgetl.runtime.litert import LiteRTModel, op_report, tflite_operator_counts
    from edgetl.runtime.tflm import UnsupportedOpsError, unsupported_ops

    ops = tflite_operator_counts(data)
    missing = unsupported_ops(ops)
    if missing:
        raise UnsupportedOpsError(
            missing,
            f"{model} uses operator(s) TFLite Micro has no kernel for: {', '.join(missing)}; "
            "change the model (another backbone) or run it with LiteRT (`--for android|ios|python`)",
        )
    lite = LiteRTModel(model, use_xnnpack=False)
    float_io = [t for t in lite.inputs + lite.outputs if not t.quantized]
    float_ops = sorted({op["op"] for op in op_report(model)["float_ops"]})
    if float_io or float_ops:
        what = f"float input/output ({', '.join(f'{t.name}: {t.dtype}' for t in float_io)})" if float_io else f"float operators ({', '.join(float_ops)})"
        raise ArtifactError(
            f"{model} is not a full-integer int8 model: it has {what}. TFLite Micro packages need int8: "
            "build with `--target tflite-int8` (or `edgetl export --format tflite-int8`)"
        )
    return ops


def _random_inputs(infos: list[dict[str, Any]], rng: np.random.Generator) -> list[np.ndarray]:
    arrays = []
    for info in infos:
        limits = np.iinfo(np.dtype(info["dtype"]))
        arrays.append(rng.integers(limits.min, limits.max + 1, size=info["shape"], dtype=info["dtype"]))
    return arrays


def tflm_parity(model: Path, data: bytes, arena_size: int) -> dict[str, Any]:
    """TFLite Micro's outputs vs LiteRT's on the same int8 inputs.

    The inputs: every element at the input zero point (a mid-grey image for edgetl models) and
    ``PARITY_RANDOM_SAMPLES`` seeded uniform random tensors. TFLite Micro runs in ``arena_size``.
    Against LiteRT's reference kernels (the arithmetic TFLite Micro's kernels share) the outputs
    must be equal, or within 1 LSB; against LiteRT's default kernels (XNNPACK, what phone and
    desktop apps run) the difference is recorded with its reason.

    Raises:
        VerificationError: TFLite Micro and LiteRT's reference kernels differ by more than 1 LSB.
    """
    from edgetl.runtime.litert import LiteRTModel, _litert_version
    from edgetl.runtime.tflm import TFLMModel, tflm_version

    micro = TFLMModel(data, arena_size)
    reference = LiteRTModel(model, reference_kernels=True)
    default = LiteRTModel(model)
    rng = np.random.default_rng(PARITY_SEED)
    batches = [micro.zero_inputs()] + [_random_inputs(micro.inputs, rng) for _ in range(PARITY_RANDOM_SAMPLES)]
    diffs = {"reference": [], "default": []}
    top1 = {"reference": 0, "default": 0}
    for inputs in batches:
        ours = micro.invoke_raw(inputs)
        for name, lite in (("reference", reference), ("default", default)):
            theirs = lite.invoke_raw(inputs)
            diffs[name].append(max(int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) for a, b in zip(ours, theirs, strict=True)))
            top1[name] += int(np.argmax(ours[0]) == np.argmax(theirs[0]))
    worst = max(diffs["reference"])
    result = {
        "inputs": f"{len(batches)} input tensors: all elements at the input zero point, then {PARITY_RANDOM_SAMPLES} uniform random int8 tensors (seed {PARITY_SEED})",
        "arena_bytes": int(arena_size),
        "tflite_micro": tflm_version(),
        "litert": _litert_version(),
        "against_litert_reference_kernels": {
            "max_abs_diff_lsb": worst, "exact": worst == 0, "top1_agreement": top1["reference"] / len(batches),
            "per_input_max_diff_lsb": diffs["reference"],
        },
        "against_litert_default_kernels": {
            "max_abs_diff_lsb": max(diffs["default"]), "exact": max(diffs["default"]) == 0,
            "top1_agreement": top1["default"] / len(batches), "per_input_max_diff_lsb": diffs["default"],
        },
    }
    if worst == 1:
        result["against_litert_reference_kernels"]["reason"] = (
            "within 1 LSB: the last bit of a requantized value (fixed-point multiply and rounding) differs in a few elements"
        )
    if max(diffs["default"]) > 0:
        result["against_litert_default_kernels"]["reason"] = (
            "LiteRT's optimized int8 kernels (XNNPACK, ruy) requantize (fixed-point multiply, rounding shift) differently from "
            "the reference kernels TFLite Micro shares with LiteRT's reference path: the last bit of some elements differs, and "
            "those 1-LSB differences grow through the layers after them, most on random inputs, which are far from images"
        )
    if worst > 1:
        raise VerificationError(
            f"TFLite Micro and LiteRT's reference kernels disagree on {model} by up to {worst} LSB (per input: {diffs['reference']}); "
            f"the C package would not compute what was measured: report it with tflite-micro {tflm_version()} and ai-edge-litert {_litert_version()}"
        )
    return result


# ----------------------------------------------------------------------------------------------
# C / TFLite Micro files
# ----------------------------------------------------------------------------------------------


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,128}")


def _c_comment(text: str) -> str:
    """A value for a ``//`` comment: as is when it is a plain name, else as an escaped C string literal
    (a raw newline would end the comment, a trailing backslash would splice the next line into it)."""
    return text if _PLAIN_NAME.fullmatch(text) else c_string(text)


def _c_float(value: float) -> str:
    text = repr(float(np.float32(value)))
    return (text if ("." in text or "e" in text) else text + ".0") + "f"


def _banner(what: str) -> str:
    from edgetl import __version__

    return f"// {what}\n// Generated by edgetl {__version__} (`edgetl package --for c`); do not edit: package the model again.\n"


def c_model_data_files(data: bytes, model_name: str) -> dict[str, str]:
    """``model_data.h`` and ``model_data.cc``: the model bytes as ``alignas(16) const unsigned char g_model_data[]``."""
    header = (
        _banner(f"model_data.h: {_c_comment(model_name)} ({len(data)} bytes, sha256 {_sha256(data)}) as a C array.")
        + "// It is const, so it stays in flash; TFLite Micro reads the flatbuffer in place, which is why the array is\n"
        "// 16-byte aligned (alignas(16) in model_data.cc).\n"
        "#ifndef EDGETL_MODEL_DATA_H_\n#define EDGETL_MODEL_DATA_H_\n\n"
        "extern const unsigned char g_model_data[];\n"
        "extern const unsigned int g_model_data_len;\n\n"
        "#endif  // EDGETL_MODEL_DATA_H_\n"
    )
    hexes = [f"0x{b:02x}" for b in data]
    rows = ",\n".join("    " + ", ".join(hexes[i : i + 12]) for i in range(0, len(hexes), 12))
    source = (
        _banner(f"model_data.cc: {_c_comment(model_name)} ({len(data)} bytes, sha256 {_sha256(data)}).")
        + '#include "model_data.h"\n\n'
        "alignas(16) const unsigned char g_model_data[] = {\n"
        f"{rows}\n}};\n\n"
        f"const unsigned int g_model_data_len = {len(data)};\n\n"
        f'static_assert(sizeof(g_model_data) == {len(data)}, "g_model_data must hold the whole model");\n'
    )
    return {"model_data.h": header, "model_data.cc": source}


def c_labels_file(class_names: list[str]) -> str:
    names = ",\n".join(f"    {c_string(name)}" for name in class_names)
    return (
        _banner("labels.h: class names, in the order of the model's output scores.")
        + "#ifndef EDGETL_LABELS_H_\n#define EDGETL_LABELS_H_\n\n"
        f"constexpr int kCategoryCount = {len(class_names)};\n"
        f"constexpr const char* const kCategoryLabels[kCategoryCount] = {{\n{names},\n}};\n\n"
        "#endif  // EDGETL_LABELS_H_\n"
    )


def c_ops_file(ops: dict[str, int]) -> str:
    """``model_ops.h``: ``ModelOpResolver`` (``MicroMutableOpResolver<N>``, N = distinct operators) and ``RegisterModelOps``."""
    from edgetl.runtime.tflm import resolver_method

    calls = "\n".join(
        f"  if (resolver.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;  // {_c_comment(op)} x{count}"
        for op, count in sorted(ops.items())
    )
    return (
        _banner(f"model_ops.h: registers exactly the {len(ops)} operators the model uses, and no others (flash).")
        + "#ifndef EDGETL_MODEL_OPS_H_\n#define EDGETL_MODEL_OPS_H_\n\n"
        "// Define EDGETL_MODEL_OPS_NO_TFLM_INCLUDE to compile this against your own declaration of the resolver.\n"
        "#ifndef EDGETL_MODEL_OPS_NO_TFLM_INCLUDE\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
        "#endif\n\n"
        f"constexpr unsigned int kModelOpCount = {len(ops)};\n"
        "using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;\n\n"
        "// Call once, before building the tflite::MicroInterpreter.\n"
        "inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {\n"
        f"{calls}\n"
        "  return kTfLiteOk;\n"
        "}\n\n"
        "#endif  // EDGETL_MODEL_OPS_H_\n"
    )


def input_lookup_table(contract: PreprocessContract, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """``table[channel][pixel]``: the quantized model input for every 0..255 pixel value, per channel.

    Computed with edgetl's own normalization and quantization (the path accuracy was measured
    on), so the C code feeds the model bit-identical inputs without float arithmetic.
    """
    from edgetl.runtime.litert import TensorInfo, quantize

    pixels = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3))[None, None]  # (1, 1, 256, 3)
    q = quantize(contract.normalize(pixels), TensorInfo("input", (), dtype, float(scale), int(zero_point)))
    return q[0, 0].T  # (3, 256)


def c_settings_file(info: ModelInfo, model: dict[str, Any], arena: dict[str, Any], data_len: int) -> str:
    contract = info.contract
    inp, out = model["inputs"][0], model["outputs"][0]
    n, h, w, c = inp["shape"]
    c_type = {"int8": "int8_t", "uint8": "uint8_t"}[inp["dtype"]]
    out_type = {"int8": "int8_t", "uint8": "uint8_t"}[out["dtype"]]
    table = input_lookup_table(contract, inp["scale"], inp["zero_point"], inp["dtype"])
    rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in table[ch]) + "}" for ch in range(3))
    out_count = int(np.prod(out["shape"]))
    return (
        _banner("model_settings.h: what the model expects (input, preprocessing) and what it needs (tensor arena).")
        + "#ifndef EDGETL_MODEL_SETTINGS_H_\n#define EDGETL_MODEL_SETTINGS_H_\n\n"
        "#include <cstdint>\n\n"
        f"// ---- Input tensor: {inp['dtype']} {inp['shape']} (NHWC), quantized: real = kInputScale * (q - kInputZeroPoint)\n"
        f"constexpr int kInputBatch = {n};\nconstexpr int kInputHeight = {h};\nconstexpr int kInputWidth = {w};\nconstexpr int kInputChannels = {c};\n"
        f"constexpr int kInputElementCount = {n * h * w * c};\n"
        f"typedef {c_type} InputType;\n"
        f"constexpr float kInputScale = {_c_float(inp['scale'])};\nconstexpr int kInputZeroPoint = {inp['zero_point']};\n\n"
        f"// ---- Output tensor: {out['dtype']} {out['shape']}: one score per class (labels.h order), quantized\n"
        f"constexpr int kOutputElementCount = {out_count};\n"
        f"typedef {out_type} OutputType;\n"
        f"constexpr float kOutputScale = {_c_float(out['scale'])};\nconstexpr int kOutputZeroPoint = {out['zero_point']};\n\n"
        "// ---- Preprocessing contract (what training fed the model):\n"
        f"// resize the whole image (no crop, no padding) to {contract.input_size}x{contract.input_size} with {_c_comment(contract.resize)} filtering,\n"
        f"// {_c_comment(contract.channel_order)} channel order, {_c_comment(contract.layout)}; then per channel c: x = (pixel - kMean[c]) / kStd[c] and\n"
        "// q = clamp(round_half_to_even(x / kInputScale) + kInputZeroPoint). kInputLookup holds q for every pixel value.\n"
        f"constexpr int kImageSize = {contract.input_size};\n"
        f"constexpr const char kChannelOrder[] = {c_string(contract.channel_order)};\n"
        f"constexpr const char kResizeFilter[] = {c_string(contract.resize)};\n"
        f"constexpr float kMean[3] = {{{', '.join(_c_float(v) for v in contract.mean)}}};\n"
        f"constexpr float kStd[3] = {{{', '.join(_c_float(v) for v in contract.std)}}};\n"
        f"constexpr InputType kInputLookup[3][256] = {{\n{rows},\n}};\n\n"
        "// One 0..255 pixel value of channel `channel` (0 = R, 1 = G, 2 = B) as the model's input value.\n"
        "inline InputType QuantizePixel(uint8_t pixel, int channel) { return kInputLookup[channel][pixel]; }\n"
        "// One output score as a probability.\n"
        "inline float DequantizeOutput(OutputType q) { return kOutputScale * (static_cast<int>(q) - kOutputZeroPoint); }\n\n"
        "// ---- Tensor arena: measured, not estimated.\n"
        f"// {arena['measured_bytes']} bytes is the smallest arena in which TFLite Micro allocated this model (and invoked it):\n"
        f"// bisection in {arena['step_bytes']}-byte steps ({arena['measured_bytes'] - arena['step_bytes']} bytes fails), {arena['measured_with']}.\n"
        f"// Margin: +{arena['margin_bytes']} bytes ({arena['margin_rule']}), for a 32-bit MCU's different bookkeeping and for\n"
        "// scratch buffers optimized kernels (CMSIS-NN, ESP-NN) may request. Check interpreter.arena_used_bytes() on the device.\n"
        f"constexpr int kTensorArenaMeasuredSize = {arena['measured_bytes']};\n"
        f"constexpr int kTensorArenaMargin = {arena['margin_bytes']};\n"
        f"constexpr int kTensorArenaSize = {arena['arena_bytes']};  // alignas(16) static uint8_t tensor_arena[kTensorArenaSize];\n\n"
        f"// ---- Flash: the model array (model_data.cc)\nconstexpr unsigned int kModelDataSize = {data_len};\n\n"
        'static_assert(kInputElementCount == kInputBatch * kInputHeight * kInputWidth * kInputChannels, "input shape");\n'
        'static_assert(kTensorArenaSize % 16 == 0 && kTensorArenaSize >= kTensorArenaMeasuredSize, "arena");\n\n'
        "#endif  // EDGETL_MODEL_SETTINGS_H_\n"
    )


def _md_names(names: list[str]) -> str:
    return ", ".join(markdown_text(name) for name in names)


def c_readme(info: ModelInfo, model: dict[str, Any], report: dict[str, Any]) -> str:
    inp = model["inputs"][0]
    member = inp["dtype"]  # TfLiteTensor::data.int8 / data.uint8
    out_member = model["outputs"][0]["dtype"]
    arena, parity, budgets = report["tflm"]["arena"], report["tflm"]["parity"], report["budgets"]
    ref, default = parity["against_litert_reference_kernels"], parity["against_litert_default_kernels"]
    ops = ", ".join(f"{markdown_text(op)} ({n})" for op, n in sorted(report["tflm"]["ops"].items()))
    parity_line = "identical outputs" if ref["exact"] else f"outputs within {ref['max_abs_diff_lsb']} LSB ({ref.get('reason', '')})"
    default_line = (
        "identical outputs" if default["exact"]
        else f"up to {default['max_abs_diff_lsb']} LSB apart, same top-1 class on {100 * default['top1_agreement']:.0f}% of them: {default['reason']}"
    )
    budget_lines = []
    for key, what, value in (("ram_bytes", "RAM (tensor arena)", arena["arena_bytes"]), ("flash_bytes", "flash (model array)", report["model"]["size_bytes"])):
        if budgets.get(key):
            budget_lines.append(f"- {what}: {human_size(value)} of a {human_size(budgets[key])} budget ({budgets[key]} bytes)")
    return f"""# {markdown_text(report['model']['file'])} for TFLite Micro (C++)

Classes ({len(info.class_names)}): {_md_names(info.class_names)}.
Model: {report['model']['size_bytes']} bytes (sha256 `{report['model']['sha256']}`), input {inp['dtype']} {inp['shape']},
operators: {ops}.

| file | what |
|---|---|
| `model_data.h`, `model_data.cc` | the `.tflite` as `alignas(16) const unsigned char g_model_data[]` and `g_model_data_len` (flash) |
| `model_settings.h` | input/output shape, dtype, scale and zero point; the preprocessing contract and `QuantizePixel()`; `kTensorArenaSize` |
| `model_ops.h` | `ModelOpResolver` = `tflite::MicroMutableOpResolver<{len(report['tflm']['ops'])}>` and `RegisterModelOps()`: exactly the operators above |
| `labels.h` | `kCategoryLabels[kCategoryCount]`, in output order |
| `package.json` | how all of this was measured and checked |

## Use it

Add the four headers and `model_data.cc` to a project that builds TFLite Micro, then:

```cpp
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "labels.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"

alignas(16) static uint8_t tensor_arena[kTensorArenaSize];

// rgb: kImageSize x kImageSize x 3 bytes, {_c_comment(info.contract.channel_order)}, the whole image resized ({_c_comment(info.contract.resize)}).
// Returns the index of the best class (kCategoryLabels[index]) or -1.
int Classify(const uint8_t* rgb, float* probability) {{
  static ModelOpResolver resolver;
  static tflite::MicroInterpreter* interpreter = nullptr;
  if (interpreter == nullptr) {{
    if (RegisterModelOps(resolver) != kTfLiteOk) return -1;
    static tflite::MicroInterpreter static_interpreter(tflite::GetModel(g_model_data), resolver, tensor_arena, kTensorArenaSize);
    if (static_interpreter.AllocateTensors() != kTfLiteOk) return -1;
    interpreter = &static_interpreter;
  }}
  TfLiteTensor* input = interpreter->input(0);
  for (int i = 0; i < kInputElementCount; ++i) input->data.{member}[i] = QuantizePixel(rgb[i], i % 3);
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter->output(0);
  int best = 0;
  for (int i = 1; i < kOutputElementCount; ++i) {{
    if (output->data.{out_member}[i] > output->data.{out_member}[best]) best = i;
  }}
  *probability = DequantizeOutput(output->data.{out_member}[best]);
  return best;
}}
```

## Tensor arena: measured

- Smallest arena in which the model allocates and runs: **{arena['measured_bytes']} bytes** ({human_size(arena['measured_bytes'])}),
  found by bisection in {arena['step_bytes']}-byte steps ({arena['probes']} allocations; {arena['measured_bytes'] - arena['step_bytes']} bytes fails),
  with {arena['measured_with']}.
- Margin: **+{arena['margin_bytes']} bytes** ({arena['margin_rule']}){' (reduced to fit the RAM budget)' if arena.get('margin_reduced_to_fit_budget') else ''}.
  Why a margin: this measurement ran on a 64-bit host (a 32-bit MCU's bookkeeping is smaller), with
  TFLite Micro's reference kernels; optimized kernels (CMSIS-NN, ESP-NN) can ask for scratch buffers
  the reference kernels do not.
- `kTensorArenaSize` = **{arena['arena_bytes']} bytes** ({human_size(arena['arena_bytes'])}). After `AllocateTensors()` on the
  device, `interpreter->arena_used_bytes()` says what it really took; it must stay under `kTensorArenaSize`.
{chr(10).join(budget_lines) if budget_lines else '- No RAM/flash budget was given (`--ram-budget 256KB`, `--flash-budget 1MB`).'}

## Checked

TFLite Micro {parity['tflite_micro']} (in `kTensorArenaSize - margin` = the measured arena) and LiteRT {parity['litert']}
ran the model on the same {parity['inputs']}:

- against LiteRT's reference kernels: {parity_line};
- against LiteRT's default (XNNPACK) kernels: {default_line}.

The pixel lookup table in `model_settings.h` was computed with edgetl's own normalization and
quantization (round half to even), the code path its accuracy figures were measured on.
"""


def build_c_package(model: Path, data: bytes, info: ModelInfo, *, ram_budget: int | None, margin: tuple[int, float], progress: Progress) -> tuple[dict[str, str | bytes], dict[str, Any]]:
    """Check, measure and generate a TFLite Micro package (see the module docstring).

    Returns:
        File name -> content, and the ``tflm`` block of ``package.json``.

    Raises:
        ArtifactError, BudgetError, VerificationError, MissingDependencyError.
    """
    from edgetl.runtime.litert import LiteRTModel
    from edgetl.runtime.tflm import isolated, measure_arena

    ops = check_tflm_model(model, data)
    lite = LiteRTModel(model, use_xnnpack=False)
    io = {"inputs": [t.to_dict() for t in lite.inputs], "outputs": [t.to_dict() for t in lite.outputs]}
    shapes = [t.shape for t in lite.inputs + lite.outputs]
    if len(lite.inputs) != 1 or len(lite.outputs) != 1 or len(lite.inputs[0].shape) != 4 or lite.inputs[0].shape[-1] != 3:
        raise ArtifactError(f"{model} is not a one-input (N, H, W, 3) image classifier (tensor shapes {shapes}); C packages are made for those")
    if {t.dtype for t in lite.inputs + lite.outputs} - {"int8", "uint8"}:
        raise ArtifactError(f"{model} has {', '.join(t.dtype for t in lite.inputs + lite.outputs)} input/output; C packages take int8 or uint8: build with `--target tflite-int8`")
    progress("tensor arena", 0, 1, "bisecting in TFLite Micro")
    measured = isolated(measure_arena, data)  # a TFLite Micro abort() must not take edgetl down
    progress("tensor arena", 1, 1, f"{measured.min_bytes} bytes")
    if ram_budget is not None and measured.min_bytes > ram_budget:
        raise BudgetError(
            f"the model needs a {measured.min_bytes}-byte ({human_size(measured.min_bytes)}) tensor arena (measured in TFLite Micro), "
            f"more than --ram-budget {ram_budget} bytes ({human_size(ram_budget)}); make its activations smaller: "
            "a lower --input-size (the arena grows with its square) or --alpha, then build again"
        )
    margin_bytes = max(margin[0], int(np.ceil(margin[1] * measured.min_bytes)))
    arena_bytes = _round_up(measured.min_bytes + margin_bytes, measured.step_bytes)
    reduced = False
    if ram_budget is not None and arena_bytes > ram_budget:
        arena_bytes, reduced = max(measured.min_bytes, ram_budget // measured.step_bytes * measured.step_bytes), True
        log.warning("the arena margin does not fit --ram-budget: kTensorArenaSize is %d bytes, %d above the measured minimum", arena_bytes, arena_bytes - measured.min_bytes)
    arena = {
        "measured_bytes": measured.min_bytes,
        "step_bytes": measured.step_bytes,
        "probes": measured.probes,
        "invoked": measured.invoked,
        "measured_with": f"tflite-micro {measured.tflm_version} ({measured.allocator})",
        "margin_bytes": arena_bytes - measured.min_bytes,
        "margin_rule": _margin_rule(margin),
        "margin_reduced_to_fit_budget": reduced,
        "arena_bytes": arena_bytes,
    }
    progress("TFLite Micro vs LiteRT", 0, 1, "")
    parity = isolated(tflm_parity, model, data, measured.min_bytes)
    progress("TFLite Micro vs LiteRT", 1, 1, "")
    files: dict[str, str | bytes] = dict(c_model_data_files(data, model.name))
    files["labels.h"] = c_labels_file(info.class_names)
    files["model_ops.h"] = c_ops_file(ops)
    files["model_settings.h"] = c_settings_file(info, io, arena, len(data))
    return files, {"ops": ops, "arena": arena, "parity": parity, **io}


# ----------------------------------------------------------------------------------------------
# Android / iOS / Python
# ----------------------------------------------------------------------------------------------

_APP_METADATA_KEYS = (
    "schema_version", "kind", "target", "model_file", "dtype", "runtime", "backbone", "class_names", "preprocessing",
    "inputs", "outputs", "size_bytes", "quantization_mode", "int8_ranges", "note",
)


def app_metadata(model: Path, info: ModelInfo, metadata: dict[str, Any] | None, io: dict[str, Any]) -> dict[str, Any]:
    """The ``edgetl.json`` an app package carries: what loading code needs, no build-machine details."""
    from edgetl import __version__

    base = {k: metadata[k] for k in _APP_METADATA_KEYS if metadata and k in metadata}
    base.update({
        "schema_version": SCHEMA_VERSION,
        "kind": model.suffix.lower().lstrip("."),
        "model_file": model.name,
        "class_names": list(info.class_names),
        "preprocessing": info.contract.to_dict(),
        "inputs": base.get("inputs") or io["inputs"],
        "outputs": base.get("outputs") or io["outputs"],
        "size_bytes": model.stat().st_size,
        "packaged_by": f"edgetl {__version__}",
    })
    accuracy = (metadata or {}).get("accuracy") or {}
    summary = {k: accuracy[k] for k in ("split", "images", "artifact_top1", "artifact_top5", "float_top1") if k in accuracy}
    if summary:
        base["accuracy"] = summary
    return base


def _kotlin_floats(values) -> str:
    return ", ".join(f"{float(v)!r}f" for v in values)


def android_readme(model_name: str, info: ModelInfo, inp: dict[str, Any], out: dict[str, Any]) -> str:
    contract = info.contract
    size, n = contract.input_size, len(info.class_names)
    quantized_in, quantized_out = inp["dtype"] in ("int8", "uint8"), out["dtype"] in ("int8", "uint8")
    low, high = (-128, 127) if inp["dtype"] == "int8" else (0, 255)
    bytes_per = 1 if quantized_in else 4
    if quantized_in:
        put = (
            f"                // {inp['dtype']} input: quantize with the input tensor's scale and zero point\n"
            f"                val q = Math.rint((x / INPUT_SCALE).toDouble()).toInt() + INPUT_ZERO_POINT\n"
            f"                input.put(q.coerceIn({low}, {high}).toByte())"
        )
    else:
        put = "                input.putFloat(x)"
    if quantized_out:
        mask = " and 0xFF" if out["dtype"] == "uint8" else ""
        read = f"(output.get().toInt(){mask} - OUTPUT_ZERO_POINT) * OUTPUT_SCALE"
        out_bytes = 1
    else:
        read, out_bytes = "output.getFloat()", 4
    return f"""# {markdown_text(model_name)} for Android (LiteRT)

Classes ({n}): {_md_names(info.class_names)}. Files: {markdown_code(model_name)}, `labels.txt` (one class per line, in output order),
`edgetl.json` (the same facts as data), `package.json` (what was checked).

1. Copy {markdown_code(model_name)} and `labels.txt` to `app/src/main/assets/`, and keep the model uncompressed
   (`android {{ androidResources {{ noCompress += "tflite" }} }}` in `build.gradle.kts`).
2. Add LiteRT: `implementation("com.google.ai.edge.litert:litert:<version>")` (it keeps the
   `org.tensorflow.lite` package names).
3. Preprocessing contract (what training fed the model): the whole image resized to {size}x{size} with
   {markdown_text(contract.resize)} filtering (no crop), {markdown_text(contract.channel_order)}, then per channel `(pixel - mean) / std` with
   mean {list(contract.mean)} and std {list(contract.std)}{f", then quantized with the input scale {inp['scale']!r} and zero point {inp['zero_point']}" if quantized_in else ""}.
   Input tensor: {inp['dtype']} {list(inp['shape'])}; output: {out['dtype']} {list(out['shape'])}{f" (scale {out['scale']!r}, zero point {out['zero_point']})" if quantized_out else ""}.

```kotlin
import android.content.Context
import android.graphics.Bitmap
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Interpreter

class ImageClassifier(context: Context) : AutoCloseable {{
    private val interpreter = Interpreter(loadModel(context), Interpreter.Options().setNumThreads(2))
    val labels: List<String> = context.assets.open("labels.txt").bufferedReader().readLines().filter {{ it.isNotBlank() }}

    private fun loadModel(context: Context): MappedByteBuffer =
        context.assets.openFd({kotlin_string(model_name)}).use {{ fd ->
            FileInputStream(fd.fileDescriptor).channel.use {{ channel ->
                channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }}
        }}

    /** Class names with probabilities, best first. */
    fun classify(bitmap: Bitmap): List<Pair<String, Float>> {{
        val scaled = Bitmap.createScaledBitmap(bitmap, SIZE, SIZE, true)  // true: bilinear filtering
        val pixels = IntArray(SIZE * SIZE)
        scaled.getPixels(pixels, 0, SIZE, 0, 0, SIZE, SIZE)
        val input = ByteBuffer.allocateDirect(SIZE * SIZE * 3 * {bytes_per}).order(ByteOrder.nativeOrder())
        for (pixel in pixels) {{
            val rgb = intArrayOf((pixel shr 16) and 0xFF, (pixel shr 8) and 0xFF, pixel and 0xFF)
            for (c in 0 until 3) {{
                val x = (rgb[c] - MEAN[c]) / STD[c]
{put}
            }}
        }}
        input.rewind()
        val output = ByteBuffer.allocateDirect(NUM_CLASSES * {out_bytes}).order(ByteOrder.nativeOrder())
        interpreter.run(input, output)
        output.rewind()
        val scores = FloatArray(NUM_CLASSES) {{ {read} }}
        return labels.zip(scores.toList()).sortedByDescending {{ it.second }}
    }}

    override fun close() = interpreter.close()

    companion object {{
        const val SIZE = {size}
        const val NUM_CLASSES = {n}
        val MEAN = floatArrayOf({_kotlin_floats(contract.mean)})
        val STD = floatArrayOf({_kotlin_floats(contract.std)})
        const val INPUT_SCALE = {float(inp['scale'] or 0.0)!r}f
        const val INPUT_ZERO_POINT = {int(inp['zero_point'])}
        const val OUTPUT_SCALE = {float(out['scale'] or 0.0)!r}f
        const val OUTPUT_ZERO_POINT = {int(out['zero_point'])}
    }}
}}
```

`Math.rint` rounds half to even, as edgetl does when it measures accuracy.
"""


def ios_readme(model_name: str, info: ModelInfo, inp: dict[str, Any], out: dict[str, Any]) -> str:
    contract = info.contract
    size, n = contract.input_size, len(info.class_names)
    quantized_in, quantized_out = inp["dtype"] in ("int8", "uint8"), out["dtype"] in ("int8", "uint8")
    swift_in = {"int8": "Int8", "uint8": "UInt8"}.get(inp["dtype"], "Float32")
    swift_out = {"int8": "Int8", "uint8": "UInt8"}.get(out["dtype"], "Float32")
    stem, ext = Path(model_name).stem, Path(model_name).suffix.lstrip(".")
    if quantized_in:
        convert = (
            f"            // {inp['dtype']} input: quantize with the input tensor's scale and zero point\n"
            f"            let q = Int((x / inputScale).rounded(.toNearestOrEven)) + inputZeroPoint\n"
            f"            input[i] = {swift_in}(clamping: q)"
        )
    else:
        convert = "            input[i] = x"
    if quantized_out:
        scores = "raw.map { (Float($0) - Float(outputZeroPoint)) * outputScale }"
        raw = f"let raw = output.data.withUnsafeBytes {{ Array($0.bindMemory(to: {swift_out}.self)) }}"
    else:
        scores = "raw"
        raw = "let raw = output.data.withUnsafeBytes { Array($0.bindMemory(to: Float32.self)) }"
    return f"""# {markdown_text(model_name)} for iOS (LiteRT, TensorFlowLiteSwift)

Classes ({n}): {_md_names(info.class_names)}. Files: {markdown_code(model_name)}, `labels.txt` (one class per line, in output order),
`edgetl.json` (the same facts as data), `package.json` (what was checked).

1. Add {markdown_code(model_name)} and `labels.txt` to the app target (Copy Bundle Resources).
2. Add LiteRT for Swift: `pod 'TensorFlowLiteSwift'` in the Podfile.
3. Preprocessing contract (what training fed the model): the whole image resized to {size}x{size} with
   {markdown_text(contract.resize)} filtering (no crop), {markdown_text(contract.channel_order)}, then per channel `(pixel - mean) / std` with
   mean {list(contract.mean)} and std {list(contract.std)}{f", then quantized with the input scale {inp['scale']!r} and zero point {inp['zero_point']}" if quantized_in else ""}.
   Input tensor: {inp['dtype']} {list(inp['shape'])}; output: {out['dtype']} {list(out['shape'])}{f" (scale {out['scale']!r}, zero point {out['zero_point']})" if quantized_out else ""}.

```swift
import CoreGraphics
import Foundation
import TensorFlowLite

final class ImageClassifier {{
    static let size = {size}
    let mean: [Float] = [{', '.join(repr(float(v)) for v in contract.mean)}]
    let std: [Float] = [{', '.join(repr(float(v)) for v in contract.std)}]
    let inputScale: Float = {float(inp['scale'] or 0.0)!r}
    let inputZeroPoint = {int(inp['zero_point'])}
    let outputScale: Float = {float(out['scale'] or 0.0)!r}
    let outputZeroPoint = {int(out['zero_point'])}
    let labels: [String]
    private let interpreter: Interpreter

    init() throws {{
        let modelPath = Bundle.main.path(forResource: {swift_string(stem)}, ofType: {swift_string(ext)})!
        interpreter = try Interpreter(modelPath: modelPath)
        try interpreter.allocateTensors()
        let labelsPath = Bundle.main.path(forResource: "labels", ofType: "txt")!
        labels = try String(contentsOfFile: labelsPath, encoding: .utf8).split(separator: "\\n").map(String.init)
    }}

    /// The whole image, resized to size x size, as RGB bytes (CoreGraphics, high-quality = smooth filtering).
    static func rgbPixels(of image: CGImage) -> [UInt8] {{
        var rgba = [UInt8](repeating: 0, count: size * size * 4)
        rgba.withUnsafeMutableBytes {{ buffer in
            let context = CGContext(data: buffer.baseAddress, width: size, height: size, bitsPerComponent: 8, bytesPerRow: size * 4,
                                    space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
            context.interpolationQuality = .high
            context.draw(image, in: CGRect(x: 0, y: 0, width: size, height: size))
        }}
        return rgba.enumerated().filter {{ $0.offset % 4 != 3 }}.map {{ $0.element }}
    }}

    /// Class names with probabilities, best first.
    func classify(_ image: CGImage) throws -> [(label: String, score: Float)] {{
        let rgb = ImageClassifier.rgbPixels(of: image)
        var input = [{swift_in}](repeating: 0, count: rgb.count)
        for i in 0..<rgb.count {{
            let c = i % 3
            let x = (Float(rgb[i]) - mean[c]) / std[c]
{convert}
        }}
        try interpreter.copy(input.withUnsafeBufferPointer {{ Data(buffer: $0) }}, toInputAt: 0)
        try interpreter.invoke()
        let output = try interpreter.output(at: 0)
        {raw}
        let scores = {scores}
        return zip(labels, scores).map {{ (label: $0.0, score: $0.1) }}.sorted {{ $0.score > $1.score }}
    }}
}}
```

CoreGraphics' smooth resampling is close to, not identical with, the {markdown_text(contract.resize)} filter edgetl
trained with; resize with a {markdown_text(contract.resize)} filter where the pixels must match exactly.
"""


#: The validated contract ``resize`` names (:data:`edgetl.core.contract.RESIZE_FILTERS`) -> Pillow's constant names.
_PIL_RESAMPLING_NAMES = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "box": "BOX", "hamming": "HAMMING"}


def _pil_resampling_name(resize: str) -> str:
    """The ``Image.Resampling`` member for a contract's filter, by fixed lookup (never text the model supplied)."""
    try:
        return _PIL_RESAMPLING_NAMES[resize]
    except KeyError:
        raise ArtifactError(f"resize filter {resize!r} is not one of {', '.join(_PIL_RESAMPLING_NAMES)}") from None


def python_script(model_name: str, info: ModelInfo) -> str:
    """``predict.py``: a stand-alone classifier for the packaged model (numpy, Pillow, and ai-edge-litert or onnxruntime)."""
    contract = info.contract
    is_onnx = model_name.lower().endswith(".onnx")
    if is_onnx:
        runtime = '''import onnxruntime as ort

OPTIONS = ort.SessionOptions()
# x86 CPUs without VNNI: exact int8 kernels instead of saturating ones (no effect elsewhere)
OPTIONS.add_session_config_entry("session.x64quantprecision", "1")
SESSION = ort.InferenceSession(str(MODEL), OPTIONS, providers=["CPUExecutionProvider"])
INPUT = SESSION.get_inputs()[0]


def scores(x: np.ndarray) -> np.ndarray:
    """Float model input (1, SIZE, SIZE, 3) -> class scores (edgetl ONNX models take float input)."""
    return SESSION.run(None, {INPUT.name: x})[0][0].astype(np.float32)
'''
    else:
        runtime = '''from ai_edge_litert.interpreter import Interpreter

INTERPRETER = Interpreter(model_path=str(MODEL))
INTERPRETER.allocate_tensors()
INPUT = INTERPRETER.get_input_details()[0]
OUTPUT = INTERPRETER.get_output_details()[0]


def scores(x: np.ndarray) -> np.ndarray:
    """Float model input (1, SIZE, SIZE, 3) -> class scores, (de)quantizing integer tensors."""
    if np.issubdtype(INPUT["dtype"], np.integer):  # full-integer model: the input tensor's own scale and zero point
        scale, zero_point = INPUT["quantization"]
        limits = np.iinfo(INPUT["dtype"])
        x = np.clip(np.round(x / np.float32(scale)) + zero_point, limits.min, limits.max).astype(INPUT["dtype"])
    INTERPRETER.set_tensor(INPUT["index"], x)
    INTERPRETER.invoke()
    y = INTERPRETER.get_tensor(OUTPUT["index"])[0]
    if np.issubdtype(OUTPUT["dtype"], np.integer):
        scale, zero_point = OUTPUT["quantization"]
        return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
    return y.astype(np.float32)
'''
    needs = "onnxruntime" if is_onnx else "ai-edge-litert"
    return f'''"""Classify images with the packaged model (MODEL below): `python predict.py IMAGE [IMAGE ...]`.

Needs numpy, Pillow and {needs}. Generated by edgetl; the constants below are the model's
preprocessing contract (what training fed it).
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
MODEL = HERE / {python_string(model_name)}
LABELS = [line for line in (HERE / "labels.txt").read_text(encoding="utf-8").splitlines() if line]
SIZE = {contract.input_size}
MEAN = np.array({[float(v) for v in contract.mean]!r}, dtype=np.float32)
STD = np.array({[float(v) for v in contract.std]!r}, dtype=np.float32)
RESAMPLE = Image.Resampling.{_pil_resampling_name(contract.resize)}

{runtime}

def preprocess(path) -> np.ndarray:
    """The whole image (no crop), resized to SIZE x SIZE, RGB, (pixel - MEAN) / STD, as (1, SIZE, SIZE, 3) float32."""
    with Image.open(path) as image:
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    if rgb.size != (SIZE, SIZE):
        rgb = rgb.resize((SIZE, SIZE), RESAMPLE)
    return ((np.asarray(rgb, dtype=np.uint8).astype(np.float32) - MEAN) / STD)[None]


def classify(path, top_k: int = 3) -> list[tuple[str, float]]:
    probabilities = scores(preprocess(path))
    best = np.argsort(-probabilities)[:top_k]
    return [(LABELS[i], float(probabilities[i])) for i in best]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python predict.py IMAGE [IMAGE ...]")
    for arg in sys.argv[1:]:
        print(json.dumps({{"image": arg, "top": [{{"label": label, "score": score}} for label, score in classify(arg)]}}))
'''


def python_readme(model_name: str, info: ModelInfo, inp: dict[str, Any]) -> str:
    contract = info.contract
    runtime = "onnxruntime" if model_name.lower().endswith(".onnx") else "ai-edge-litert"
    return f"""# {markdown_text(model_name)} for Python ({runtime})

Classes ({len(info.class_names)}): {_md_names(info.class_names)}. Files: {markdown_code(model_name)}, `labels.txt` (one class per
line, in output order), `edgetl.json` (the same facts as data), `predict.py`, `package.json`.

```bash
pip install numpy pillow {runtime}
python predict.py photo.jpg          # one JSON line per image: the top-3 classes and scores
```

Preprocessing contract (what training fed the model), as `predict.py` applies it: the whole image
resized to {contract.input_size}x{contract.input_size} with Pillow's {markdown_text(contract.resize)} filter (no crop),
{markdown_text(contract.channel_order)}, then per channel `(pixel - mean) / std` with mean {list(contract.mean)} and std {list(contract.std)}.
Input tensor: {inp['dtype']} {list(inp['shape'])}{f"; integer inputs are quantized with the tensor's own scale ({inp['scale']!r}) and zero point ({inp['zero_point']}), rounding half to even" if inp['dtype'] in ('int8', 'uint8') else ''}.

In your own code:

```python
from predict import classify
print(classify("photo.jpg", top_k=3))
```
"""


def build_app_package(target: PackageFor, model: Path, info: ModelInfo, metadata: dict[str, Any] | None) -> tuple[dict[str, str | bytes], dict[str, Any]]:
    """Files of an Android, iOS or Python package, and their tensor facts."""
    from edgetl.device.evaluate import open_model

    runtime_model = open_model(model)
    io = {"inputs": [t.to_dict() for t in runtime_model.inputs], "outputs": [t.to_dict() for t in runtime_model.outputs]}
    if len(io["inputs"]) != 1 or len(io["outputs"]) != 1:
        raise ArtifactError(f"{model} has {len(io['inputs'])} inputs and {len(io['outputs'])} outputs; app packages are for one-input, one-output classifiers")
    inp, out = io["inputs"][0], io["outputs"][0]
    files: dict[str, str | bytes] = {
        model.name: model.read_bytes(),
        "labels.txt": labels_text(info.class_names),
        _fs.MARKER: json.dumps(app_metadata(model, info, metadata, io), indent=2, default=str) + "\n",
    }
    if target is PackageFor.android:
        files["README.md"] = android_readme(model.name, info, inp, out)
    elif target is PackageFor.ios:
        files["README.md"] = ios_readme(model.name, info, inp, out)
    else:
        files["README.md"] = python_readme(model.name, info, inp)
        files["predict.py"] = python_script(model.name, info)
    return files, io


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def package(
    artifact: Path,
    target: PackageFor | str,
    out: Path,
    *,
    ram_budget: str | int | None = None,
    flash_budget: str | int | None = None,
    arena_margin: str | None = None,
    force: bool = False,
    metadata: dict[str, Any] | None = None,
    progress: Progress = log_progress,
) -> PackageResult:
    """Bundle ``artifact`` for ``target`` into ``out`` (see the module docstring).

    Args:
        artifact: a ``.tflite``/``.onnx`` file, or an edgetl build/export folder (its ``edgetl.json``
            ``model_file``).
        target: ``c``, ``android``, ``ios`` or ``python``.
        out: the package folder; replaced whole when complete. A folder holding other files is
            refused unless ``force``.
        ram_budget: ``c``: the most RAM the tensor arena may take (``"256KB"``, ``"1MB"``, bytes).
        flash_budget: the largest model file allowed.
        arena_margin: ``c``: added to the measured arena: bytes or ``"10%"``; None: 16 KiB or 10%,
            whichever is larger.
        metadata: the model's ``edgetl.json`` content when the caller has it (``build`` does, before
            writing it); otherwise read from beside the model or from the model itself.

    Returns:
        What was written.

    Raises:
        ConfigError: unknown target, malformed budget or margin, an option the target does not take.
        ArtifactError: missing or unusable model (float or unsupported operators for ``c``).
        BudgetError: the model does not fit ``ram_budget``/``flash_budget``.
        VerificationError: TFLite Micro computes something else than LiteRT.
        OutputExistsError: ``out`` holds files that are not an edgetl package.
    """
    from edgetl import __version__

    try:
        target = PackageFor(target)
    except ValueError:
        raise ConfigError(f"Received --for {target!r}; pass one of {', '.join(t.value for t in PackageFor)}") from None
    ram = parse_size(ram_budget, "--ram-budget") if ram_budget is not None else None
    flash = parse_size(flash_budget, "--flash-budget") if flash_budget is not None else None
    margin = parse_margin(arena_margin)
    if target is not PackageFor.c and (ram is not None or arena_margin is not None):
        raise ConfigError(f"--ram-budget and --arena-margin size a TFLite Micro tensor arena: they go with --for c, not --for {target.value}")
    model = resolve_artifact(artifact)
    if target is PackageFor.c and model.suffix.lower() != ".tflite":
        raise ArtifactError(f"C packages are for TFLite Micro and need an int8 .tflite model; {model} is {model.suffix}: build with `--target tflite-int8`")
    if target in (PackageFor.android, PackageFor.ios) and model.suffix.lower() != ".tflite":
        raise ArtifactError(
            f"{target.value} packages use LiteRT and need a .tflite model; {model} is {model.suffix}: "
            "package the model.tflite an int8 build writes beside model.onnx, or use `--for python`"
        )
    out = Path(out)
    _check_out_dir(out, force)
    info, full_metadata = _model_info(model, metadata)
    data = model.read_bytes()
    if flash is not None and len(data) > flash:
        raise BudgetError(
            f"{model} is {len(data)} bytes ({human_size(len(data))}), more than --flash-budget {flash} bytes ({human_size(flash)}); "
            "make the model smaller: a lower --alpha (e.g. 0.35) or a smaller backbone (and int8, `--target tflite-int8`, for a float model), then build again"
        )
    report: dict[str, Any] = {
        "kind": REPORT_KIND,
        "schema_version": SCHEMA_VERSION,
        "for": target.value,
        "model": {"file": model.name, "size_bytes": len(data), "sha256": _sha256(data)},
        "class_names": list(info.class_names),
        "preprocessing": info.contract.to_dict(),
        "budgets": {"ram_bytes": ram, "flash_bytes": flash},
        "versions": {**package_versions(), "edgetl": __version__},
    }
    if target is PackageFor.c:
        files, tflm = build_c_package(model, data, info, ram_budget=ram, margin=margin, progress=progress)
        report["tflm"] = tflm
        report["versions"]["tflite-micro"] = tflm["parity"]["tflite_micro"]
        files["README.md"] = c_readme(info, tflm, report)
    else:
        files, io = build_app_package(target, model, info, full_metadata)
        report.update(io)
    report["files"] = sorted([*files, REPORT_FILE])
    files[REPORT_FILE] = json.dumps(report, indent=2, default=str) + "\n"
    with _fs.atomic_dir(out) as staging:
        for name, content in files.items():
            path = staging / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    log.info("wrote the %s package of %s to %s (%d files)", target.value, model, out, len(files))
    return PackageResult(out, target, report["files"], report)


def package_build(artifact: Path, folder: Path, config: PackageConfig, *, metadata: dict[str, Any], progress: Progress = log_progress) -> dict[str, Any]:
    """``build``'s packaging step: one ``<folder>/package-<for>/`` per configured target.

    Returns:
        For ``edgetl.json``: target -> the package folder name and its key figures.
    """
    results = {}
    for target in config.targets:
        name = f"package-{PackageFor(target).value}"
        progress("package", 0, 1, name)
        result = package(
            artifact, target, Path(folder) / name, ram_budget=config.ram_budget if target is PackageFor.c else None,
            flash_budget=config.flash_budget, arena_margin=config.arena_margin if target is PackageFor.c else None,
            force=True, metadata=metadata, progress=progress,
        )
        entry: dict[str, Any] = {"folder": name, "files": result.files}
        if "tflm" in result.report:
            entry["tensor_arena_bytes"] = result.report["tflm"]["arena"]["arena_bytes"]
            entry["tensor_arena_measured_bytes"] = result.report["tflm"]["arena"]["measured_bytes"]
            entry["tflm_matches_litert_reference"] = result.report["tflm"]["parity"]["against_litert_reference_kernels"]["exact"]
        results[PackageFor(target).value] = entry
        progress("package", 1, 1, name)
    return results


def check_build_packaging(config) -> None:
    """``build``'s cheap checks for ``[package]``, before any training.

    Raises:
        ConfigError: a package the target cannot make.
    """
    from edgetl.export import TARGETS

    target = TARGETS.get(config.target)
    for wanted in config.package.targets:
        wanted = PackageFor(wanted)
        if wanted is PackageFor.c and target.name != "tflite-int8":
            raise ConfigError(f"--package c needs --target tflite-int8 (TFLite Micro runs full-integer int8 models); received --target {target.name}")
        if wanted in (PackageFor.android, PackageFor.ios) and target.format != "tflite":
            raise ConfigError(f"--package {wanted.value} needs a TFLite target (LiteRT); received --target {target.name}")

