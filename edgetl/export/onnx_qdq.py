"""The exact rewrite of tf2onnx's QDQ graph (from an int8 TFLite model) into the graph ONNX Runtime
fuses into int8 ``QLinearConv``: uint8 activation zero points, redundant clips removed, float
input/output, rescaled biases, unshared initializers. Why each step is exact: the docstring of
:mod:`edgetl.export.onnx`."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from edgetl.core.errors import ExportError

log = logging.getLogger(__name__)

#: A clip is redundant when the following quantizer's range exceeds its bounds by at most this much.
CLIP_TOLERANCE = 1e-5


#: Ops that carry a quantized tensor unchanged (a DequantizeLinear may sit behind them).
_PASS_THROUGH = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "MaxPool", "Identity"})


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
