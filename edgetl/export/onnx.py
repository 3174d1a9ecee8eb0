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
* :func:`optimize_qdq_for_ort` therefore rewrites that graph, exactly:

  1. every activation QuantizeLinear/DequantizeLinear pair gets a uint8 zero point
     (``zp + 128``: the same real values, shifted codes); weights stay int8 per-channel;
  2. a ``Clip``/``Relu`` whose output goes only to a QuantizeLinear whose representable range
     lies inside the clip bounds is removed: the QuantizeLinear's saturation already clips;
     a tolerance of :data:`CLIP_TOLERANCE` (absolute) admits "dead" activations whose
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
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError, ExportError
from edgetl.export import TARGETS

log = logging.getLogger(__name__)

#: Opset written unless the user passes ``--opset`` (ONNX Runtime 1.17+ runs it; tf2onnx 1.17 is tested with it).
DEFAULT_OPSET = 17
#: Opsets tf2onnx 1.17 writes that ORT's QDQ fusions handle.
SUPPORTED_OPSETS = range(13, 19)
#: A clip is redundant when the following quantizer's range exceeds its bounds by at most this much.
CLIP_TOLERANCE = 1e-5
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
#: Ops that carry a quantized tensor unchanged (a DequantizeLinear may sit behind them).
_PASS_THROUGH = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "MaxPool", "Identity"})


def check_opset(opset: int) -> int:
    if int(opset) not in SUPPORTED_OPSETS:
        raise ConfigError(
            f"Received --opset {opset}; edgetl writes ONNX opsets {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    return int(opset)


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError:
        from edgetl.core.errors import MissingDependencyError

        raise MissingDependencyError("ONNX export needs tf2onnx: pip install 'tf2onnx==1.17.0'") from None
    return tf2onnx


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# Graph rewrite for ONNX Runtime
# ----------------------------------------------------------------------------------------------


class _Graph:
    """Index of an ONNX graph: initializers, producers and consumers (rebuilt after edits)."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self._to_array = numpy_helper.to_array
        self._from_array = numpy_helper.from_array
        self.inits = {i.name: i for i in self.graph.initializer}
        self.reindex()

    def reindex(self) -> None:
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def array(self, name: str) -> np.ndarray:
        return self._to_array(self.inits[name])

    def add_init(self, name: str, value: np.ndarray) -> str:
        if name not in self.inits:
            tensor = self._from_array(value, name)
            self.graph.initializer.append(tensor)
            self.inits[name] = tensor
        return name

    def uint8_zero_point(self, name: str) -> str:
        """The uint8 twin of an int8 zero-point initializer (a new one: others may share ``name``)."""
        value = self.array(name)
        if value.dtype == np.uint8:
            return name
        if value.dtype != np.int8:
            raise ExportError(f"unexpected zero point dtype {value.dtype} in {name}")
        return self.add_init(f"{name}__u8", (value.astype(np.int16) + 128).astype(np.uint8))

    def dequantizers_behind(self, tensor: str) -> list[Any]:
        """DequantizeLinear nodes reading ``tensor``, directly or through pass-through ops."""
        found, stack = [], [tensor]
        while stack:
            for node in self.consumers[stack.pop()]:
                if node.op_type == "DequantizeLinear":
                    found.append(node)
                elif node.op_type in _PASS_THROUGH:
                    stack.append(node.output[0])
                else:
                    raise ExportError(f"quantized tensor {tensor} feeds {node.op_type} ({node.name}) directly; edgetl cannot retype it for ONNX Runtime")
        return found


def _scalar(g: _Graph, name: str, default: float) -> float:
    return float(g.array(name)) if name and name in g.inits else default


def optimize_qdq_for_ort(model) -> dict[str, int]:
    """Rewrite a tf2onnx-from-TFLite QDQ graph in place so ONNX Runtime fuses it to int8 kernels.

    See the module docstring for the three rewrites; none changes a computed value beyond
    :data:`CLIP_TOLERANCE`. Returns counts of what was changed, for the report.
    """
    from onnx import TensorProto, helper

    g = _Graph(model)
    stats = {"float_input_added": 0, "float_output_added": 0, "activation_zero_points_to_uint8": 0, "clips_removed": 0, "clips_kept": 0}

    # 3a. integer graph inputs -> float input + QuantizeLinear with the input's own scale.
    for graph_input in list(g.graph.input):
        elem = graph_input.type.tensor_type.elem_type
        if elem not in (TensorProto.INT8, TensorProto.UINT8):
            continue
        dqs = g.dequantizers_behind(graph_input.name)
        if not dqs:
            raise ExportError(f"integer input {graph_input.name} is never dequantized; not an int8 TFLite graph edgetl understands")
        scale, zero_point = dqs[0].input[1], dqs[0].input[2]
        float_name = graph_input.name + "__float"
        dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        new_input = helper.make_tensor_value_info(float_name, TensorProto.FLOAT, dims)
        g.graph.input.remove(graph_input)
        g.graph.input.insert(0, new_input)
        quantize = helper.make_node("QuantizeLinear", [float_name, scale, zero_point], [graph_input.name], name=graph_input.name + "__quantize")
        g.graph.node.insert(0, quantize)
        stats["float_input_added"] += 1
    # 3b. integer graph outputs -> DequantizeLinear to float.
    producers = {out: node for node in g.graph.node for out in node.output}
    for graph_output in list(g.graph.output):
        if graph_output.type.tensor_type.elem_type not in (TensorProto.INT8, TensorProto.UINT8):
            continue
        q = producers.get(graph_output.name)
        if q is None or q.op_type != "QuantizeLinear":
            raise ExportError(f"integer output {graph_output.name} is not made by a QuantizeLinear; not an int8 TFLite graph edgetl understands")
        internal = graph_output.name + "__quantized"
        q.output[0] = internal
        for node in g.graph.node:  # anything else reading the old name reads the quantized tensor
            for i, name in enumerate(node.input):
                if name == graph_output.name:
                    node.input[i] = internal
        g.graph.node.append(helper.make_node("DequantizeLinear", [internal, q.input[1], q.input[2]], [graph_output.name], name=graph_output.name + "__dequantize"))
        dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
        g.graph.output.remove(graph_output)
        g.graph.output.append(helper.make_tensor_value_info(graph_output.name, TensorProto.FLOAT, dims))
        stats["float_output_added"] += 1
    g.reindex()

    # 1. activation zero points int8 -> uint8 (weights, whose QuantizeLinear input is an initializer, stay int8).
    for q in [n for n in g.graph.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in g.inits or len(q.input) < 3 or g.array(q.input[2]).dtype != np.int8:
            continue
        q.input[2] = g.uint8_zero_point(q.input[2])
        for dq in g.dequantizers_behind(q.output[0]):
            dq.input[2] = g.uint8_zero_point(dq.input[2])
        stats["activation_zero_points_to_uint8"] += 1

    # 2. clips the next quantizer's saturation already enforces.
    for clip in [n for n in g.graph.node if n.op_type in ("Clip", "Relu")]:
        readers = g.consumers[clip.output[0]]
        if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or clip.output[0] in {o.name for o in g.graph.output}:
            stats["clips_kept"] += 1
            continue
        q = readers[0]
        scale, zero_point = float(g.array(q.input[1])), g.array(q.input[2])
        qmin, qmax = (0, 255) if zero_point.dtype == np.uint8 else (-128, 127)
        low, high = (qmin - int(zero_point)) * scale, (qmax - int(zero_point)) * scale
        if clip.op_type == "Relu":
            cmin, cmax = 0.0, np.inf
        else:
            cmin = _scalar(g, clip.input[1] if len(clip.input) > 1 else "", -np.inf)
            cmax = _scalar(g, clip.input[2] if len(clip.input) > 2 else "", np.inf)
        if low >= cmin - CLIP_TOLERANCE and high <= cmax + CLIP_TOLERANCE:
            q.input[0] = clip.input[0]
            g.graph.node.remove(clip)
            stats["clips_removed"] += 1
        else:
            stats["clips_kept"] += 1
            log.debug("kept %s: quantizer range [%g, %g] exceeds clip [%g, %g]", clip.name, low, high, cmin, cmax)
    g.reindex()

    # 4. a bias whose scale is not input scale x weight scale (seen after EfficientNet's SE Reshape,
    # where TFLite's conv input scale differs from the Reshape's): ORT fuses QLinearConv only when
    # it is, so re-express the int32 bias in that scale. The change is below half an accumulator
    # step (input scale x weight scale), far below one output step.
    stats["biases_rescaled"] = 0
    producers = {out: node for node in g.graph.node for out in node.output}
    for conv in [n for n in g.graph.node if n.op_type == "Conv" and len(n.input) == 3]:
        x_dq, w_dq, b_dq = (producers.get(name) for name in conv.input)
        if not all(d is not None and d.op_type == "DequantizeLinear" for d in (x_dq, w_dq, b_dq)):
            continue
        if b_dq.input[0] not in g.inits or w_dq.input[0] not in g.inits or x_dq.input[1] not in g.inits:
            continue
        bias_q = g.array(b_dq.input[0])
        if bias_q.dtype != np.int32:
            continue
        bias_scale = g.array(b_dq.input[1]).astype(np.float64)
        expected = (float(g.array(x_dq.input[1])) * g.array(w_dq.input[1]).astype(np.float64)).astype(np.float32)
        if np.allclose(bias_scale, expected, rtol=1e-6, atol=0):
            continue
        values = bias_q.astype(np.float64) * bias_scale
        rescaled = np.clip(np.round(values / expected.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
        base = b_dq.input[0]
        b_dq.input[0] = g.add_init(f"{base}__rescaled", rescaled)
        b_dq.input[1] = g.add_init(f"{base}__rescaled_scale", expected.reshape(np.shape(bias_scale)))
        if len(b_dq.input) > 2 and b_dq.input[2]:
            b_dq.input[2] = g.add_init(f"{base}__rescaled_zero_point", np.zeros(np.shape(g.array(b_dq.input[2])), np.int32))
        stats["biases_rescaled"] += 1
    _drop_unused_initializers(g)
    stats["initializers_unshared"] = _unshare_initializers(g)
    return stats


def _unshare_initializers(g: _Graph) -> int:
    """Give every node input that reads a shared initializer its own copy.

    tf2onnx (and the uint8 rewrite above) let many QuantizeLinear/DequantizeLinear nodes read one
    scale or zero-point initializer. ONNX Runtime's ``session.x64quantprecision`` rewrite (int8
    weights -> uint8 on x86 CPUs without VNNI, whose U8S8 kernels saturate) replaces each weight's
    zero point in place and fails with "Attempt to replace the existing tensor" on a shared one.
    The copies are scalars or per-channel vectors; every computed value stays the same.

    Returns:
        How many copies were added.
    """
    import onnx

    initializers = {init.name: init for init in g.graph.initializer}
    taken: set[str] = set()
    copies = 0
    for node in g.graph.node:
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name not in taken:
                taken.add(name)
                continue
            copies += 1
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[name])
            copy.name = f"{name}__use{copies}"
            g.graph.initializer.append(copy)
            node.input[i] = copy.name
    return copies


def _drop_unused_initializers(g: _Graph) -> None:
    used = {name for node in g.graph.node for name in node.input}
    for init in list(g.graph.initializer):
        if init.name not in used:
            g.graph.initializer.remove(init)


def _rename_io(model, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
    """Stable names and a symbolic batch dimension: ``input`` (N, H, W, 3) -> ``probabilities`` (N, classes)."""
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


def ort_fusion_report(path: Path) -> dict[str, Any]:
    """How ONNX Runtime (CPU, all graph optimizations) runs the model: its optimized op counts."""
    import onnx
    import onnxruntime as ort

    from edgetl.runtime.onnxruntime import create_session

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        create_session(ort, str(path), options)
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    ops = Counter(node.op_type for node in optimized.graph.node)
    source_ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    convs = source_ops.get("Conv", 0)
    return {
        "ops": dict(sorted(source_ops.items())),
        "ort_optimized_ops": dict(sorted(ops.items())),
        "convs": convs,
        "int8_convs": ops.get("QLinearConv", 0),
        "float_convs_after_optimization": ops.get("Conv", 0) + ops.get("FusedConv", 0),
    }


# ----------------------------------------------------------------------------------------------
# Converters
# ----------------------------------------------------------------------------------------------


def convert_fp32(model, *, contract: PreprocessContract, opset: int = DEFAULT_OPSET):
    """The float Keras model as an fp32 ONNX model (NHWC float input, softmax output)."""
    from edgetl.ml._keras import tf

    t = tf()
    tf2onnx = _tf2onnx()
    size = contract.input_size
    signature = (t.TensorSpec((None, size, size, 3), t.float32, name=INPUT_NAME),)
    opset = check_opset(opset)
    try:
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
    log.info("wrote %s (%s)", path, what)
    return Path(path)


def onnx_metadata(*, target: str, class_names: list[str], contract: PreprocessContract, route: str) -> dict[str, Any]:
    """What an app or ``edgetl eval`` needs from the file alone (``metadata_props``)."""
    from edgetl import __version__

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
