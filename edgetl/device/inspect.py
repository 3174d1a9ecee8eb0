"""What a model file holds and where it can run: the data behind ``edgetl inspect``.

For any ``.tflite`` or ``.onnx`` file (edgetl's or anyone's; no ``edgetl.json`` needed):
inputs and outputs with dtypes, shapes and quantization, the operators and how many of each,
and the constant weight tensors (parameter count and bytes). Then, per format:

* ``.tflite`` (:mod:`edgetl.device.inspect_tflite`): which operators LiteRT's XNNPACK delegate
  takes and which run on LiteRT's own kernels, and whether every operator is one TFLite Micro has
  a kernel for (checked again in TFLite Micro's interpreter when ``tflite-micro`` is installed).
* ``.onnx`` (:mod:`edgetl.device.inspect_onnx`): opset, QuantizeLinear/DequantizeLinear counts and
  pairs, and which operators ONNX Runtime's CPU provider runs in int8 after its graph optimizations.

:func:`inspect_artifact` finds the inspector through the format registry
(:data:`edgetl.runtime.formats.FORMATS`); :func:`render` draws a report as rich tables. Nothing here
imports TensorFlow; ``onnx`` and ONNX Runtime are imported only when an ``.onnx`` file is inspected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgetl.core.errors import ArtifactError
from edgetl.core.text import display_safe
from edgetl.device.inspect_onnx import QDQ_OPS
from edgetl.runtime.formats import find_format, known_suffixes, resolve

# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def inspect_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a ``.tflite`` or ``.onnx`` model file (see the module docstring).

    Returns:
        A JSON-able dict: ``inputs``, ``outputs``, ``ops``, ``parameters`` and the per-format sections.

    Raises:
        ArtifactError: missing file, a folder, an unknown suffix, or a corrupt model.
        MissingDependencyError: ``.onnx`` without the ``onnx`` package.
    """
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder without a model.tflite or model.onnx; pass a model file")
    fmt = find_format(path)
    if fmt is None or fmt.inspector is None:
        suffix = path.suffix.lower()
        known = ", ".join(known_suffixes(lambda f: f.inspector))
        raise ArtifactError(f"Received {path}: edgetl inspect reads {known} files, not {suffix or 'files without a suffix'}")
    inspect = resolve(fmt.inspector)
    return inspect(path)


# ----------------------------------------------------------------------------------------------
# Tables for the CLI
# ----------------------------------------------------------------------------------------------


def _shape_text(shape: list[int | str]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _quant_text(q: dict[str, Any] | None) -> str:
    if not q:
        return "-"
    scale, zero = q.get("scale"), q.get("zero_point")
    if isinstance(scale, list):
        return f"per-channel ({len(scale)} scales, axis {q.get('axis')})"
    where = f" ({q['in_graph']})" if q.get("in_graph") else ""
    return f"scale {scale:.6g}, zero point {zero}{where}" if isinstance(scale, float) else f"scale {scale}, zero point {zero}{where}"


def _size_text(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    return f"{nbytes / 2**20:.2f} MiB" if nbytes >= 2**20 else f"{nbytes / 1024:.1f} KiB"


def render(report: dict[str, Any]) -> list[Any]:
    """Rich renderables (tables and lines) for an :func:`inspect_artifact` report.

    Names come from the model file (anyone's): every one is shown through :func:`edgetl.core.text.display_safe`
    (control and bidi characters escaped; rich markup escaped in table cells, which rich parses).
    """
    from rich.table import Table
    from rich.text import Text as RichText

    def Text(text: str) -> RichText:  # noqa: N802 - a line of plain text (no markup), control and bidi characters escaped
        return RichText(display_safe(text, markup=False))

    items: list[Any] = []
    params = report["parameters"]
    head = (
        f"{report['path']} ({report['format']}, {_size_text(report['size_bytes'])}): {report['op_count']} ops, "
        f"{params['count']:,} parameters in {params['tensors']} constant tensors ({_size_text(params['bytes'])}: "
        + ", ".join(f"{d} {v['count']:,}" for d, v in params["by_dtype"].items()) + ")"
    )
    if report["format"] == "onnx":
        head += f"; opset {report['opset']}"
    items.append(Text(head))

    io = Table(title="inputs and outputs")
    for col in ("", "name", "dtype", "shape", "quantization"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            shape = t.get("declared_shape", t["shape"])
            io.add_row(kind[:-1], display_safe(t["name"]), display_safe(t["dtype"]), display_safe(_shape_text(shape)), display_safe(_quant_text(t["quantization"])))
    items.append(io)

    ops = Table(title="operators")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    if report["format"] == "tflite":
        xnn, tflm = report["xnnpack"], report["tflm"]
        ops.add_column("XNNPACK")
        ops.add_column("TFLite Micro")
        for op, n in report["ops"].items():
            delegated, fallback = xnn.get("delegated", {}).get(op, 0), xnn.get("fallback", {}).get(op, 0)
            where = "n/a" if "error" in xnn else "delegated" if not fallback else "fallback" if not delegated else f"{delegated} delegated, {fallback} fallback"
            ops.add_row(display_safe(op), str(n), where, "[red]not supported[/]" if op in tflm["unsupported"] else "yes")
        items.append(ops)
        if "error" in xnn:
            items.append(Text(f"XNNPACK: not measured ({xnn['error']})"))
        else:
            items.append(Text(
                f"XNNPACK ({xnn['runtime']}): {xnn['delegated_nodes']} of {xnn['nodes']} ops delegated in {xnn['partitions']} partition(s)"
                + (f"; falling back to LiteRT kernels: {', '.join(f'{op} x{n}' for op, n in xnn['fallback'].items())}" if xnn["fallback"] else "")
            ))
        if tflm["all_supported"]:
            verdict = "every op has a TFLite Micro kernel"
        else:
            verdict = f"ops TFLite Micro lacks: {', '.join(tflm['unsupported'])}"
        if not report["full_integer"]:
            verdict += "; the model computes in float (TFLite Micro targets want int8: export tflite-int8)"
        checked = tflm["interpreter"]
        if checked is not None:
            if checked["loads"]:
                verdict += f"; tflite-micro {checked['version']} loads it"
            elif checked["missing_ops"]:
                verdict += f"; tflite-micro {checked['version']} confirms: no kernel for {', '.join(checked['missing_ops'])}"
            else:
                verdict += f"; tflite-micro {checked['version']} does not load it ({checked['error']})"
        items.append(Text(f"TFLite Micro: {verdict}"))
        return items

    ort = report["ort_cpu"]
    for op, n in report["ops"].items():
        ops.add_row(display_safe(op), str(n))
    items.append(ops)
    qdq = report["qdq"]
    items.append(Text(
        f"QDQ: {qdq['quantize_linear']} QuantizeLinear, {qdq['dequantize_linear']} DequantizeLinear "
        f"({qdq['weight_dequantizers']} on weights), {qdq['pairs']} Q->DQ pairs"
    ))
    items.append(Text(f"{ort['runtime']}, CPU provider, after graph optimization: {ort['int8_convs']} of {ort['convs']} Conv run in int8"))
    kernels = Table(title="ONNX Runtime CPU kernels")
    kernels.add_column("kernel")
    kernels.add_column("count", justify="right")
    kernels.add_column("computes in")
    for op, n in ort["int8_ops"].items():
        kernels.add_row(display_safe(op), str(n), "int8")
    for op, n in {**ort["quantize_dequantize_left"], **ort["other_ops"]}.items():
        kernels.add_row(display_safe(op), str(n), "(de)quantize" if op in QDQ_OPS else "float / data movement")
    items.append(kernels)
    return items
