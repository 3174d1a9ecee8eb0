"""Keras -> ONNX: ``onnx-fp32`` from the float model, ``onnx-int8`` from the int8 TFLite model.

The int8 route, and why:

* Converting the QAT Keras model with tf2onnx leaves the weights float (only activations get
  QuantizeLinear/DequantizeLinear), so ONNX Runtime computes in float; and ORT's own
  ``quantize_static`` would re-calibrate, throwing away the ranges QAT learned.
* The int8 TFLite model already holds the QAT ranges and int8 per-channel weights.
  ``tf2onnx.convert.from_tflite`` turns it into a QDQ graph with exactly those scales, but ORT
  runs that graph slower than fp32: its activations are int8 (ORT's x86 kernels fuse
  ``QLinearConv`` for uint8 activations with int8 weights, "U8S8") and a ``Clip`` (ReLU6) sits
  between each convolution and its QuantizeLinear, which blocks the fusion.
* :func:`edgetl.export.onnx_qdq.optimize_qdq_for_ort` therefore rewrites that graph, exactly:

  1. every activation QuantizeLinear/DequantizeLinear pair gets a uint8 zero point
     (``zp + 128``: the same real values, shifted codes); weights stay int8 per-channel;
  2. a ``Clip``/``Relu`` whose output goes only to a QuantizeLinear whose representable range
     lies inside the clip bounds is removed: the QuantizeLinear's saturation already clips;
     a tolerance of :data:`edgetl.export.onnx_qdq.CLIP_TOLERANCE` (absolute) admits "dead" activations whose
     calibrated range is a sliver around zero, where removing the clip moves values by less
     than that;
  3. an int8/uint8 graph input becomes a float input followed by a QuantizeLinear with the
     input tensor's own scale, and the int8 output gets a DequantizeLinear, so the ONNX model
     takes the same float input as ``onnx-fp32`` (the preprocessing contract's output) and
     returns probabilities;
  4. a convolution bias whose scale is not input scale x weight scale (EfficientNet's SE block,
     behind a Reshape) is re-expressed in that scale (an error below half an accumulator step).

  ORT then fuses every convolution into ``QLinearConv`` (52 of 52 for MobileNetV2), the same
  graph ``quantize_static`` makes, with the QAT scales. :func:`ort_fusion_report` counts it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgetl import __version__
from edgetl.core import fs as _fs
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError, ExportError, MissingDependencyError
from edgetl.core.native_output import native_output_to_log
from edgetl.core.types import IODType
from edgetl.export.onnx_qdq import optimize_qdq_for_ort
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.export.tflite import export_tflite
from edgetl.ml._keras import tf
from edgetl.runtime.onnxruntime import ort_fusion_report

log = logging.getLogger(__name__)

#: Opset written unless the user passes ``--opset`` (ONNX Runtime 1.17+ runs it; tf2onnx 1.17 is tested with it).
DEFAULT_OPSET = 17
#: Opsets tf2onnx 1.17 writes that ORT's QDQ fusions handle.
SUPPORTED_OPSETS = range(13, 19)
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def check_opset(opset: int) -> int:
    if int(opset) not in SUPPORTED_OPSETS:
        raise ConfigError(
            f"Received opset={opset}; edgetl writes ONNX opsets {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    return int(opset)


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError:
        raise MissingDependencyError("ONNX export needs tf2onnx: pip install 'tf2onnx==1.17.0'") from None
    return tf2onnx


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# The ONNX graph: I/O names, metadata, checks, what ONNX Runtime makes of it
# ----------------------------------------------------------------------------------------------


def _rename_io(model, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
    """Stable names and a symbolic batch dimension: ``input`` (N, H, W, C) -> ``probabilities`` (N, classes)."""
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"expected one input and one output, got {len(graph.input)} and {len(graph.output)}")
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)
    for value in (graph.input[0], graph.output[0]):
        value.name = renames[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def set_metadata(model, props: dict[str, Any]) -> None:
    """``metadata_props``: strings; dicts and lists are stored as JSON."""
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)


def check_model(model, what: str) -> None:
    """``onnx.checker`` with the full check (shape inference included)."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the {what} ONNX model fails onnx.checker: {_first_line(exc)}") from None


# ----------------------------------------------------------------------------------------------
# Converters
# ----------------------------------------------------------------------------------------------


def convert_fp32(model, *, contract: PreprocessContract, opset: int = DEFAULT_OPSET):
    """The float Keras model as an fp32 ONNX model (NHWC float input, softmax output)."""
    t = tf()
    tf2onnx = _tf2onnx()
    signature = (t.TensorSpec((None, *contract.input_shape), t.float32, name=INPUT_NAME),)
    opset = check_opset(opset)
    try:
        with native_output_to_log("ONNX conversion from Keras"):  # TensorFlow's C++ chatter: to the log
            onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises assorted exceptions
        raise ExportError(f"ONNX conversion (tf2onnx from Keras) failed: {_first_line(exc)}") from None
    _rename_io(onnx_model)
    return onnx_model, {"route": "tf2onnx.convert.from_keras on the float Keras model"}


def convert_int8_from_tflite(tflite_path: Path, *, opset: int = DEFAULT_OPSET):
    """An int8 TFLite model (QAT or PTQ) as an ONNX QDQ model ONNX Runtime runs in int8.

    Returns:
        The ONNX model and a description of the route with the rewrite's counts.
    """
    tf2onnx = _tf2onnx()
    opset = check_opset(opset)
    try:
        # tf2onnx reads the file with tf.lite.Interpreter, which prints "INFO: Created TensorFlow Lite XNNPACK delegate": to the log
        with native_output_to_log("ONNX conversion from TFLite"):
            onnx_model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=opset)
    except Exception as exc:
        raise ExportError(f"ONNX conversion (tf2onnx from TFLite) failed: {_first_line(exc)}") from None
    stats = optimize_qdq_for_ort(onnx_model)
    _rename_io(onnx_model)
    route = (
        "int8 TFLite (QAT ranges, int8 per-channel weights) -> tf2onnx.from_tflite -> edgetl's QDQ rewrite for ONNX Runtime: "
        "uint8 activation zero points (same real values), clips removed where the quantizer range already clips, float input/output"
    )
    return onnx_model, {"route": route, "rewrite": stats}


def write_onnx(onnx_model, path: Path, *, metadata: dict[str, Any], what: str) -> Path:
    """Stamp metadata, run the full checker, and write atomically."""
    set_metadata(onnx_model, metadata)
    check_model(onnx_model, what)
    _fs.write_bytes(Path(path), onnx_model.SerializeToString())
    log.info("wrote %s (%s)", _fs.final_path(path), what)
    return Path(path)


def onnx_metadata(*, target: str, class_names: list[str], contract: PreprocessContract, route: str) -> dict[str, Any]:
    """What an app or ``edgetl eval`` needs from the file alone (``metadata_props``)."""
    return {
        "edgetl.version": __version__,
        "edgetl.target": target,
        "labels": list(class_names),
        "preprocessing": contract.to_dict(),
        "edgetl.route": route,
    }


def export_onnx(
    target: str,
    path: Path,
    *,
    model=None,
    tflite_int8: Path | None = None,
    class_names: list[str],
    contract: PreprocessContract,
    opset: int = DEFAULT_OPSET,
) -> tuple[Path, dict[str, Any]]:
    """Write ``onnx-fp32`` (from the float Keras ``model``) or ``onnx-int8`` (from ``tflite_int8``).

    Returns:
        The path and what the export did (route, rewrite counts, ORT fusion report).

    Raises:
        ConfigError, ExportError, MissingDependencyError.
    """
    spec = TARGETS.get(target)
    if spec.format != "onnx":
        raise ConfigError(f"target {target} is not an ONNX target")
    opset = check_opset(opset)
    if spec.dtype == "int8":
        if tflite_int8 is None:
            raise ConfigError("onnx-int8 is made from the int8 TFLite model: export tflite-int8 first")
        onnx_model, details = convert_int8_from_tflite(tflite_int8, opset=opset)
    else:
        if model is None:
            raise ConfigError("onnx-fp32 needs the float Keras model")
        onnx_model, details = convert_fp32(model, contract=contract, opset=opset)
    details["opset"] = int(opset)
    write_onnx(onnx_model, path, metadata=onnx_metadata(target=target, class_names=class_names, contract=contract, route=details["route"]), what=target)
    details["graph"] = ort_fusion_report(path)
    return Path(path), details


def onnx_io_details(path: Path) -> dict[str, Any]:
    """Input/output tensor facts of a .onnx file (ONNX Runtime, no TF)."""
    from edgetl.runtime.onnxruntime import ORTModel  # [runtime]: ONNX Runtime loads when a file is read

    model = ORTModel(path)
    return {
        "inputs": [vars(t) | {"shape": list(t.shape)} for t in model.inputs],
        "outputs": [vars(t) | {"shape": list(t.shape)} for t in model.outputs],
    }


def onnx_graph_summary(details: dict[str, Any], target: TargetSpec) -> dict[str, Any]:
    """The ``graph`` block of an ONNX artifact: op counts, and how ONNX Runtime runs its convolutions."""
    graph = dict(details["graph"])
    if target.dtype == "int8":
        graph["full_integer"] = graph["convs"] == graph["int8_convs"] and graph["float_convs_after_optimization"] == 0
        graph["float_ops"] = [] if graph["full_integer"] else [{"op": "Conv", "count": graph["float_convs_after_optimization"]}]
    return graph


def export_target(
    model, spec: TargetSpec, folder: Path, *, class_names: list[str], contract: PreprocessContract,
    representative: np.ndarray | None, io_dtype: IODType, opset: int,
) -> tuple[Path, dict[str, Any]]:
    """The exporter of every ``onnx-*`` target (see :class:`~edgetl.export.targets.TargetSpec`):
    ``<folder>/model.onnx`` and its tensor, graph and route facts."""
    folder = Path(folder)
    if spec.dtype == "int8":
        # The int8 TFLite model carries the QAT ranges and int8 per-channel weights; the ONNX model
        # is rewritten from it, so both formats share the same scales (and both ship).
        tflite = export_tflite(
            model, "tflite-int8", folder / TARGETS.get("tflite-int8").filename, class_names=class_names,
            representative=representative, contract=contract, io_dtype=io_dtype,
        )
        artifact, details = export_onnx(spec.name, folder / spec.filename, tflite_int8=tflite, class_names=class_names, contract=contract, opset=opset)
    else:
        artifact, details = export_onnx(spec.name, folder / spec.filename, model=model, class_names=class_names, contract=contract, opset=opset)
    io = onnx_io_details(artifact)
    io["graph"] = onnx_graph_summary(details, spec)
    io["onnx"] = {k: v for k, v in details.items() if k != "graph"}
    return artifact, io
