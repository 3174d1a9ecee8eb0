"""Selective int8: find the layers int8 hurts most, and keep them in float.

:func:`layer_sensitivity` runs TFLite's ``QuantizationDebugger`` on the model calibrated with
representative images. The debug model runs every quantized op twice from the same (quantized)
input, once in int8 and once in float, so each op's error is its own, not the sum of the errors
upstream. The score is the mean over output channels of ``rms(int8 - float) / rms(float)``: per-tensor
int8 activations give every channel the same step, so a channel far smaller than the tensor's largest
(one outlier channel is enough) loses most of its signal, which the debugger's own ``rmse/scale``
(about 0.29 for any well-behaved rounding) does not show. With zero exactly representable and no
clipping, int8 rounding never moves a value by more than its own size, so the score lies in [0, 1]:
0 is exact, 1 means the channels' signal is gone.

:func:`export_selective` converts with the top ``keep_float`` of that ranking (or the named tensors)
denylisted, so they run in float while the rest stays int8. Its input and output are float32 (the
debugger's quantizer keeps float model I/O), which every edgetl runtime handles.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError, ExportError
from edgetl.core.native_output import native_output_to_log
from edgetl.export.tflite import frozen_converter, representative_dataset, write_tflite
from edgetl.ml._keras import tf

log = logging.getLogger(__name__)

#: The name written into the selective model's embedded metadata and facts.
SELECTIVE_TARGET = "tflite-int8-selective"
SELECTIVE_FILENAME = "model.tflite"


def channel_relative_error(float_values: np.ndarray, quant_values: np.ndarray, scale: float, zero_point: int) -> float:
    """Mean over channels (the last axis) of ``rms(dequantized - float) / rms(float)``; channels that
    are zero in float (dead ReLUs) count as exact. A ``layer_direct_compare_metrics`` function."""
    reference = np.asarray(float_values, dtype=np.float64)
    dequantized = (np.asarray(quant_values, dtype=np.float64) - zero_point) * scale
    channels = reference.shape[-1] if reference.ndim else 1
    reference, dequantized = reference.reshape(-1, channels), dequantized.reshape(-1, channels)
    signal = np.sqrt(np.mean(reference**2, axis=0))
    error = np.sqrt(np.mean((dequantized - reference) ** 2, axis=0))
    live = signal > 0
    if not live.any():
        return 0.0
    return float(np.mean(np.where(live, error / np.where(live, signal, 1.0), 0.0)))


def _debugger(model, representative: np.ndarray, contract: PreprocessContract, samples: int):
    """A converter calibrated on ``representative`` and a QuantizationDebugger over it."""
    t = tf()
    if representative is None or len(representative) == 0:
        raise ConfigError("selective int8 needs representative images: pass --data DIR (training images)")
    if samples < 1:
        raise ConfigError(f"samples must be at least 1; received {samples}")
    converter = frozen_converter(model)
    converter.optimizations = [t.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(representative, contract)
    debug_dataset = representative_dataset(representative[:samples], contract)
    try:
        with warnings.catch_warnings(), native_output_to_log("TFLite calibration for selective int8"):
            warnings.simplefilter("ignore")  # the debugger runs tf.lite.Interpreter, deprecated since TF 2.20
            debugger = t.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_dataset)
    except Exception as exc:  # the converter raises ConverterError / RuntimeError / ValueError
        raise ExportError(f"TFLite calibration for selective int8 failed: {_first_line(exc)}") from None
    return debugger, debug_dataset


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _float_graph(calibrated: bytes) -> dict[str, list[str]]:
    """The calibrated (still float) model's op output names, each with the output names of the ops
    that read it. These are the names ``denylisted_nodes`` matches (the quantized model renames some)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(model_content=calibrated, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the only op listing LiteRT's Python API offers
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"cannot read the calibrated model's graph: {_first_line(exc)}") from None
    readers: dict[str, list[str]] = {names[int(op["outputs"][0])]: [] for op in ops if len(op["outputs"])}
    for op in ops:
        if not len(op["outputs"]):
            continue
        for index in op["inputs"]:
            source = names.get(int(index))
            if source in readers:
                readers[source].append(names[int(op["outputs"][0])])
    return readers


def _layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def keras_layers_of(tensor_name: str, layer_names: list[str]) -> list[str]:
    """The Keras layers named in a TFLite tensor name, in the order they appear there.

    A fused op's tensor lists every TensorFlow op folded into it (``model/conv/Relu;model/conv/BiasAdd;...``),
    each under its layer's name scope.
    """
    found: list[tuple[int, str]] = []
    for name in layer_names:
        match = re.search(rf"(?:^|[/;]){re.escape(name)}/", tensor_name)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


#: Ops whose output keeps the order of their input: float there cannot change the top-1 class.
ORDER_KEEPING_OPS = frozenset({"SOFTMAX"})


def layer_sensitivity(
    model, representative: np.ndarray, contract: PreprocessContract, *, samples: int = 32, debugger=None,
) -> list[dict[str, Any]]:
    """Rank the int8 model's quantized ops by their own int8 error, most sensitive first (the softmax,
    which cannot change the top-1 class, last).

    Args:
        model: the float tf_keras model (input: the normalized float image).
        representative: uint8 training images (N, H, W, C): calibration and the error measurement.
        contract: preprocessing applied to ``representative``.
        samples: how many of ``representative`` the errors are measured on.
        debugger: a QuantizationDebugger already calibrated for ``model`` (internal reuse).

    Returns:
        One dict per quantized op: ``rank``, ``tensor`` (the op's output tensor name, what
        :func:`export_selective` takes in ``keep_float``), ``op`` (``CONV_2D``...), ``layer`` (the Keras
        layer it comes from, or None) and ``layers`` (every Keras layer fused into it), ``score`` (mean
        per-channel relative error, 0..1), ``rmse_over_scale`` and ``mean_squared_error`` (the debugger's
        own), ``scale`` and ``zero_point`` of its int8 output.

    Raises:
        ConfigError: no representative images.
        ExportError: calibration or the debug run failed.
    """
    t = tf()
    if debugger is None:
        debugger, _ = _debugger(model, representative, contract, samples)
    debug_dataset = representative_dataset(representative[:samples], contract)
    options = t.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"channel_relative_error": channel_relative_error})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a second debugger over the same debug model, read from its bytes: only that way does its
            # interpreter keep every intermediate tensor, which the direct comparison reads after invoke
            measuring = t.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=debugger.quant_model, debug_dataset=debug_dataset, debug_options=options,
            )
            measuring.run()
        dump = io.StringIO()
        measuring.layer_statistics_dump(dump)
    except Exception as exc:  # the interpreter raises ValueError / RuntimeError
        raise ExportError(f"measuring the int8 error per layer failed: {_first_line(exc)}") from None
    layer_names = _layer_names(model)
    entries = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale, mse = float(row["scale"]), float(row["mean_squared_error"])
        layers = keras_layers_of(row["tensor_name"], layer_names)
        entries.append({
            "tensor": row["tensor_name"],
            "op": row["op_name"],
            "layer": layers[0] if layers else None,
            "layers": layers,
            "score": float(row["channel_relative_error"]),
            "rmse_over_scale": float(np.sqrt(mse) / scale) if scale else float("nan"),
            "mean_squared_error": mse,
            "scale": scale,
            "zero_point": int(float(row["zero_point"])),
        })
    # the softmax's int8 output has a large relative error on small probabilities, but keeping it in float
    # cannot change which class wins (it keeps the order of its inputs): it ranks last, whatever its score
    entries.sort(key=lambda e: (e["op"] in ORDER_KEEPING_OPS, -np.nan_to_num(e["score"], nan=-1.0), e["tensor"]))
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    return [{"rank": e.pop("rank"), **e} for e in entries]


def export_selective(
    model,
    folder: Path,
    *,
    keep_float: int | list[str],
    representative: np.ndarray,
    contract: PreprocessContract,
    class_names: list[str] | None,
    samples: int = 32,
    sensitivity: list[dict[str, Any]] | None = None,
    with_readers: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Write ``<folder>/model.tflite``: int8 except the most int8-sensitive ops, kept in float.

    Args:
        model: the float tf_keras model.
        folder: output folder (created); the file is written atomically.
        keep_float: how many of the most sensitive ops (by :func:`layer_sensitivity`) stay float, or
            the output tensor names of the ops to keep float (``tensor`` of its entries).
        representative: uint8 training images (N, H, W, C) for calibration.
        contract: preprocessing applied to ``representative``; embedded with the labels.
        class_names: the labels to embed (None: no embedded metadata).
        samples: images the sensitivity is measured on (when ``keep_float`` is a number).
        sensitivity: a ranking :func:`layer_sensitivity` already made for this model and data.
        with_readers: also keep float the ops that read a kept op's output. The sensitivity measures the
            int8 rounding of an op's *output*; an int8 op reading it would quantize it again with the same
            range, so only then is the error gone (False: the named ops alone, as ``denylisted_nodes`` does).

    Returns:
        The artifact's path and its facts: ``target``, ``keep_float`` (tensor names), ``keep_float_layers``
        (their Keras layers), ``denylisted_nodes`` (those and their readers), ``sensitivity`` (the ranking used, if any), ``float_ops`` (how many ops
        touch float tensors), ``float_op_names``, ``ops``, ``io_dtype`` (``float32``).

    Raises:
        ConfigError: ``keep_float`` is negative, more than the quantized ops, or names unknown tensors.
        ExportError: conversion failed.
    """
    from edgetl.runtime.litert import op_report  # [runtime]: LiteRT reads the file written

    debugger, _ = _debugger(model, representative, contract, samples)
    if isinstance(keep_float, int) and not isinstance(keep_float, bool):
        if keep_float < 0:
            raise ConfigError(f"keep_float must be 0 or more; received {keep_float}")
        if sensitivity is None and keep_float > 0:
            sensitivity = layer_sensitivity(model, representative, contract, samples=samples, debugger=debugger)
        ranked = sensitivity or []
        if keep_float > len(ranked) and keep_float > 0:
            raise ConfigError(f"keep_float={keep_float}, but the int8 model has {len(ranked)} quantized ops; pass at most {len(ranked)}")
        nodes = [entry["tensor"] for entry in ranked[:keep_float]]
    else:
        nodes = list(keep_float)
    readers = _float_graph(debugger.calibrated_model)
    unknown = [n for n in nodes if n not in readers]
    if unknown:
        raise ConfigError(f"keep_float names {unknown}, which are not ops of this model; use the `tensor` of layer_sensitivity() entries")
    denylisted = list(dict.fromkeys(nodes + [r for n in nodes for r in readers[n]] if with_readers else nodes))
    t = tf()
    try:
        with warnings.catch_warnings(), native_output_to_log("TFLite selective int8 quantization"):
            warnings.simplefilter("ignore")
            debugger.options = t.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted)
            data = debugger.get_nondebug_quantized_model()
    except Exception as exc:  # mlir_quantize raises ConverterError / RuntimeError / ValueError
        raise ExportError(f"selective int8 quantization (float: {denylisted}) failed: {_first_line(exc)}") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    artifact = write_tflite(data, folder / SELECTIVE_FILENAME, target=SELECTIVE_TARGET, class_names=class_names, contract=contract)
    graph = op_report(artifact)
    layer_names = _layer_names(model)
    facts = {
        "target": SELECTIVE_TARGET,
        "keep_float": nodes,
        "keep_float_layers": [(keras_layers_of(n, layer_names) or [None])[0] for n in nodes],
        "denylisted_nodes": denylisted,
        "float_ops": len(graph["float_ops"]),
        # ops computing in float, not counting the QUANTIZE/DEQUANTIZE at float/int8 borders
        "float_compute_ops": sum(op["op"] not in ("QUANTIZE", "DEQUANTIZE") for op in graph["float_ops"]),
        "float_op_names": sorted({op["op"] for op in graph["float_ops"]}),
        "ops": sum(graph["ops"].values()),
        "io_dtype": "float32",
        "sensitivity": sensitivity,
    }
    log.info(
        "selective int8: %d op(s) kept float with their readers (%s); %d of %d ops compute in float",
        len(nodes), ", ".join(facts["keep_float_layers"][i] or n for i, n in enumerate(nodes)) or "none", facts["float_compute_ops"], facts["ops"],
    )
    return artifact, facts
