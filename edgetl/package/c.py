"""``package --for c``: a model for TFLite Micro, checked, measured and written as C/C++ sources.

* :func:`check_tflm_model`: full-integer, every operator has a TFLite Micro kernel.
* :func:`build_c_package`: the tensor arena measured by bisection in TFLite Micro's own interpreter
  (:mod:`edgetl.runtime.tflm`, in a child process) plus a margin, :func:`tflm_parity` (TFLite Micro's
  outputs against LiteRT's on the same inputs), and the files: ``model_data.h``/``.cc`` (the model as a
  16-byte aligned array), ``labels.h``, ``model_ops.h`` (the op resolver), ``model_settings.h`` (tensor
  facts, the preprocessing contract as a pixel lookup table, the arena size) and ``README.md``.

The files are templates (:mod:`edgetl.package.render`); class names, the file name and contract text
reach them only as C string literals (:func:`edgetl.core.text.c_string`) or plain-name comments.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgetl import __version__
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError, BudgetError, VerificationError
from edgetl.core.metadata import ModelInfo
from edgetl.core.progress import Progress
from edgetl.core.text import c_string, markdown_text
from edgetl.core.units import human_size
from edgetl.package.render import markdown_names, render
from edgetl.runtime.litert import LiteRTModel, _litert_version, op_report, quantize
from edgetl.runtime.model import TensorInfo
from edgetl.runtime.tflite_file import tflite_operator_counts
from edgetl.runtime.tflm import (
    TFLMModel,
    UnsupportedOpsError,
    isolated,
    measure_arena,
    resolver_method,
    tflm_version,
    unsupported_ops,
)

log = logging.getLogger(__name__)

#: Inputs compared between TFLite Micro and LiteRT: every input at its zero point, then seeded random tensors.
PARITY_RANDOM_SAMPLES = 3
PARITY_SEED = 0


def _margin_rule(margin: tuple[int, float]) -> str:
    size, fraction = margin
    parts = ([human_size(size)] if size else []) + ([f"{100 * fraction:g}% of the measured arena"] if fraction else [])
    if not parts:
        return "no margin"
    return parts[0] if len(parts) == 1 else f"the larger of {parts[0]} and {parts[1]}"


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, in hex (``package.json``, the C array's header)."""
    return hashlib.sha256(data).hexdigest()


def check_tflm_model(model: Path, data: bytes) -> dict[str, int]:
    """Cheap checks that a ``.tflite`` can run in TFLite Micro: full-integer, every operator has a kernel.

    Returns:
        Operator name -> count.

    Raises:
        ArtifactError: a float model or float input/output (TFLite Micro wants int8), or an
            operator TFLite Micro lacks (named).
    """
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


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,128}")


def _c_comment(text: str) -> str:
    """A value for a ``//`` comment: as is when it is a plain name, else as an escaped C string literal
    (a raw newline would end the comment, a trailing backslash would splice the next line into it)."""
    return text if _PLAIN_NAME.fullmatch(text) else c_string(text)


def _c_float(value: float) -> str:
    text = repr(float(np.float32(value)))
    return (text if ("." in text or "e" in text) else text + ".0") + "f"


def _render_c(name: str, **values: object) -> str:
    """A C/C++ template: its first lines say which edgetl wrote it."""
    return render(name, version=__version__, **values)


def c_model_data_files(data: bytes, model_name: str) -> dict[str, str]:
    """``model_data.h`` and ``model_data.cc``: the model bytes as ``alignas(16) const unsigned char g_model_data[]``."""
    facts = {"model_name": _c_comment(model_name), "size": len(data), "sha256": sha256_hex(data)}
    hexes = [f"0x{b:02x}" for b in data]
    rows = ",\n".join("    " + ", ".join(hexes[i : i + 12]) for i in range(0, len(hexes), 12))
    return {"model_data.h": _render_c("model_data.h.tmpl", **facts), "model_data.cc": _render_c("model_data.cc.tmpl", rows=rows, **facts)}


def c_labels_file(class_names: list[str]) -> str:
    """``labels.h``: ``kCategoryLabels``, each name a C string literal."""
    names = ",\n".join(f"    {c_string(name)}" for name in class_names)
    return _render_c("labels.h.tmpl", count=len(class_names), names=names)


def c_ops_file(ops: dict[str, int]) -> str:
    """``model_ops.h``: ``ModelOpResolver`` (``MicroMutableOpResolver<N>``, N = distinct operators) and ``RegisterModelOps``."""
    calls = "\n".join(
        f"  if (resolver.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;  // {_c_comment(op)} x{count}"
        for op, count in sorted(ops.items())
    )
    return _render_c("model_ops.h.tmpl", count=len(ops), calls=calls)


def input_lookup_table(contract: PreprocessContract, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """``table[channel][pixel]``: the quantized model input for every 0..255 pixel value, per channel.

    Computed with edgetl's own normalization and quantization (the path accuracy was measured
    on), so the C code feeds the model bit-identical inputs without float arithmetic.
    """
    pixels = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, contract.channels))[None, None]  # (1, 1, 256, C)
    q = quantize(contract.normalize(pixels), TensorInfo("input", (), dtype, float(scale), int(zero_point)))
    return q[0, 0].T  # (C, 256)


def c_settings_file(info: ModelInfo, model: dict[str, Any], arena: dict[str, Any], data_len: int) -> str:
    """``model_settings.h``: tensor facts, the preprocessing contract and its pixel lookup table, the arena size."""
    contract = info.contract
    inp, out = model["inputs"][0], model["outputs"][0]
    n, h, w, c = inp["shape"]
    table = input_lookup_table(contract, inp["scale"], inp["zero_point"], inp["dtype"])
    return _render_c(
        "model_settings.h.tmpl",
        input_dtype=inp["dtype"], input_shape=inp["shape"], batch=n, height=h, width=w, channels=c, input_count=n * h * w * c,
        input_type={"int8": "int8_t", "uint8": "uint8_t"}[inp["dtype"]], input_scale=_c_float(inp["scale"]), input_zero_point=inp["zero_point"],
        output_dtype=out["dtype"], output_shape=out["shape"], output_count=int(np.prod(out["shape"])),
        output_type={"int8": "int8_t", "uint8": "uint8_t"}[out["dtype"]], output_scale=_c_float(out["scale"]), output_zero_point=out["zero_point"],
        image_size_line=(
            f"constexpr int kImageSize = {contract.input_size};  // square input" if contract.input_size is not None
            else "// no kImageSize: the input is not square (kImageWidth x kImageHeight)"
        ),
        gray_comment=" (grayscale: one luma byte per pixel, ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B)" if contract.channels == 1 else "",
        channel_names="0 = R, 1 = G, 2 = B" if contract.channels == 3 else "0 = gray",
        resize_comment=_c_comment(contract.resize), channel_order_comment=_c_comment(contract.channel_order),
        layout_comment=_c_comment(contract.layout), channel_order=c_string(contract.channel_order), resize=c_string(contract.resize),
        mean=", ".join(_c_float(v) for v in contract.mean), std=", ".join(_c_float(v) for v in contract.std),
        lookup_rows=",\n".join("    {" + ", ".join(str(int(v)) for v in table[ch]) + "}" for ch in range(contract.channels)),
        measured=arena["measured_bytes"], step=arena["step_bytes"], failing=arena["measured_bytes"] - arena["step_bytes"],
        measured_with=arena["measured_with"], margin=arena["margin_bytes"], margin_rule=arena["margin_rule"], arena=arena["arena_bytes"],
        data_len=data_len,
    )


def c_readme(info: ModelInfo, model: dict[str, Any], report: dict[str, Any]) -> str:
    """The C package's ``README.md``: its files, a ``Classify()`` to start from, how the arena was measured and checked."""
    inp = model["inputs"][0]
    arena, parity, budgets = report["tflm"]["arena"], report["tflm"]["parity"], report["budgets"]
    ref, default = parity["against_litert_reference_kernels"], parity["against_litert_default_kernels"]
    budget_lines = []
    for key, what, value in (("ram_bytes", "RAM (tensor arena)", arena["arena_bytes"]), ("flash_bytes", "flash (model array)", report["model"]["size_bytes"])):
        if budgets.get(key):
            budget_lines.append(f"- {what}: {human_size(value)} of a {human_size(budgets[key])} budget ({budgets[key]} bytes)")
    return render(
        "README-c.md.tmpl",
        model_file=markdown_text(report["model"]["file"]), class_count=len(info.class_names), class_names=markdown_names(info.class_names),
        size=report["model"]["size_bytes"], sha256=report["model"]["sha256"], input_dtype=inp["dtype"], input_shape=inp["shape"],
        ops=", ".join(f"{markdown_text(op)} ({n})" for op, n in sorted(report["tflm"]["ops"].items())), op_count=len(report["tflm"]["ops"]),
        channel_order_comment=_c_comment(info.contract.channel_order), resize_comment=_c_comment(info.contract.resize),
        input_member=inp["dtype"], output_member=model["outputs"][0]["dtype"],  # TfLiteTensor::data.int8 / data.uint8
        measured=arena["measured_bytes"], measured_human=human_size(arena["measured_bytes"]), step=arena["step_bytes"],
        probes=arena["probes"], failing=arena["measured_bytes"] - arena["step_bytes"], measured_with=arena["measured_with"],
        margin=arena["margin_bytes"], margin_rule=arena["margin_rule"],
        margin_reduced=" (reduced to fit the RAM budget)" if arena.get("margin_reduced_to_fit_budget") else "",
        arena=arena["arena_bytes"], arena_human=human_size(arena["arena_bytes"]),
        budget_lines="\n".join(budget_lines) if budget_lines else "- No RAM/flash budget was given (`--ram-budget 256KB`, `--flash-budget 1MB`).",
        tflite_micro=parity["tflite_micro"], litert=parity["litert"], parity_inputs=parity["inputs"],
        parity_line="identical outputs" if ref["exact"] else f"outputs within {ref['max_abs_diff_lsb']} LSB ({ref.get('reason', '')})",
        default_line=(
            "identical outputs" if default["exact"]
            else f"up to {default['max_abs_diff_lsb']} LSB apart, same top-1 class on {100 * default['top1_agreement']:.0f}% of them: {default['reason']}"
        ),
    )


def build_c_package(model: Path, data: bytes, info: ModelInfo, *, ram_budget: int | None, margin: tuple[int, float], progress: Progress) -> tuple[dict[str, str | bytes], dict[str, Any]]:
    """Check, measure and generate a TFLite Micro package (see the module docstring).

    Returns:
        File name -> content, and the ``tflm`` block of ``package.json``.

    Raises:
        ArtifactError, BudgetError, VerificationError, MissingDependencyError.
    """
    ops = check_tflm_model(model, data)
    lite = LiteRTModel(model, use_xnnpack=False)
    io = {"inputs": [t.to_dict() for t in lite.inputs], "outputs": [t.to_dict() for t in lite.outputs]}
    shapes = [t.shape for t in lite.inputs + lite.outputs]
    expected = (info.contract.input_height, info.contract.input_width, info.contract.channels)
    if len(lite.inputs) != 1 or len(lite.outputs) != 1 or len(lite.inputs[0].shape) != 4 or tuple(lite.inputs[0].shape[1:]) != expected:
        raise ArtifactError(
            f"{model} is not a one-input (N, {', '.join(map(str, expected))}) image classifier as its metadata says (tensor shapes {shapes}); "
            "C packages are made for those"
        )
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
