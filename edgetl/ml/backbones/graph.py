"""Rewrite a stock Keras application into edgetl form: input scaling folded out, real layers only.

Two rewrites, both by walking the functional config and re-calling copies of the stock layers, so
every layer with weights keeps its name and receives the stock layer's weights (ImageNet or a user
file loaded into the stock model first):

- **Input scaling.** ``Rescaling``/``Normalization`` (and EfficientNet's ``x * 1/sqrt(std)``)
  at the start of the graph are an affine map per channel. It is measured by running that prefix
  on constant images, checked to be affine, turned into the preprocessing contract's mean and
  std, and dropped from the graph. Int8 models then take normalized input directly instead of
  spending a quantize-requantize pair on a scaling op.
- **Hard-swish.** MobileNetV3 writes ``hard_sigmoid(x) = relu6(x + 3) * (1/6)`` and
  ``hard_swish(x) = x * hard_sigmoid(x)`` as ``TFOpLambda`` arithmetic, which tfmot cannot
  annotate. The chain becomes one :class:`~edgetl.ml.backbones.layers.HardSigmoid` layer; hard-swish
  stays the stock ``Multiply`` of ``x`` by its own hard-sigmoid. In float the TFLite converter
  fuses that pair into one ``HARD_SWISH`` kernel anyway; in a QAT int8 model the quantizer between
  them keeps it as ``ADD`` (fused ReLU6), ``MUL``, ``MUL``, which LiteRT's XNNPACK delegate runs in
  int8, while XNNPACK has no int8 ``HARD_SWISH``: one fused :class:`~edgetl.ml.backbones.layers.HardSwish`
  layer (``fuse_hard_swish=True``) gives a graph that LiteRT splits into a partition per
  activation, with the activations on its slow reference kernel (``benchmarks/RESULTS.md``:
  MobileNetV3 int8 1.7-2.6x slower than fp32 that way).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from edgetl.core.errors import ConfigError

log = logging.getLogger(__name__)

_SCALING_OPS = {"math.multiply", "math.truediv", "__operators__.add", "math.add", "math.subtract", "math.divide"}


def _inbound(layer_config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(source layer, call kwargs)`` for each input of a layer's single call in a functional config."""
    nodes = layer_config.get("inbound_nodes", [])
    if not nodes:
        return []
    if isinstance(nodes[0], list) and nodes[0] and isinstance(nodes[0][0], str):
        nodes = [nodes]  # TFOpLambda serializes its one call un-nested: [name, node, tensor, kwargs]
    if len(nodes) != 1:
        raise ConfigError(f"layer {layer_config['name']!r} is called {len(nodes)} times; edgetl rebuilds only graphs without shared layers")
    return [(entry[0], entry[3] if len(entry) > 3 else {}) for entry in nodes[0]]


def _is_scaling(layer) -> bool:
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    k = keras()
    if isinstance(layer, (k.layers.Rescaling, k.layers.Normalization)):
        return True
    return type(layer).__name__ == "TFOpLambda" and layer.get_config().get("function") in _SCALING_OPS


def input_scaling_prefix(model) -> list[str]:
    """Names of the per-channel scaling layers the graph starts with (in order; may be empty)."""
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    consumers: dict[str, list[str]] = {}
    for lc in config["layers"]:
        for src, _ in _inbound(lc):
            consumers.setdefault(src, []).append(lc["name"])
    prefix: list[str] = []
    current = config["input_layers"][0][0]
    while len(consumers.get(current, [])) == 1:
        nxt = consumers[current][0]
        if not _is_scaling(by_name[nxt]):
            break
        prefix.append(nxt)
        current = nxt
    return prefix


def measure_affine(model, last_layer: str, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, offset)`` of the sub-graph from the input to ``last_layer``, measured.

    Raises:
        ConfigError: the sub-graph is not an affine map per channel (it mixes pixels or channels).
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    k = keras()
    sub = k.Model(model.input, model.get_layer(last_layer).output)
    height, width = model.input_shape[1] or 8, model.input_shape[2] or 8  # non-square inputs too
    probes = np.stack([np.full((height, width, channels), v, np.float32) for v in (0.0, 255.0, 97.0)])
    out = sub.predict_on_batch(probes).astype(np.float64)
    offset = out[0].mean(axis=(0, 1))
    scale = (out[1].mean(axis=(0, 1)) - offset) / 255.0
    if not (np.allclose(out, out[:, :1, :1, :], atol=1e-5) and np.allclose(out[2].mean(axis=(0, 1)), 97.0 * scale + offset, rtol=1e-4, atol=1e-4)):
        raise ConfigError(f"the layers up to {last_layer!r} are not a per-channel scaling; edgetl cannot fold them into the preprocessing contract")
    return scale, offset


def _per_channel(value: Any, channels: int = 3) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (channels,)).copy()


def exact_affine(model, prefix: list[str], channels: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """``(scale, offset)`` of the scaling prefix computed in float64 from the layers' constants.

    Returns None for a layer whose constants it cannot read (the measured map is used then).
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    k = keras()
    configs = {lc["name"]: lc for lc in model.get_config()["layers"]}
    scale, offset = np.ones(channels), np.zeros(channels)
    for name in prefix:
        layer = model.get_layer(name)
        try:
            if isinstance(layer, k.layers.Rescaling):
                a, b = _per_channel(layer.scale), _per_channel(layer.offset)
                scale, offset = scale * a, offset * a + b
            elif isinstance(layer, k.layers.Normalization):
                denom = np.maximum(np.sqrt(_per_channel(layer.variance.numpy())), k.backend.epsilon())
                scale, offset = scale / denom, (offset - _per_channel(layer.mean.numpy())) / denom
            else:
                (_, kwargs), = _inbound(configs[name])
                y = _per_channel(kwargs["y"])
                function = layer.get_config()["function"]
                if function == "math.multiply":
                    scale, offset = scale * y, offset * y
                elif function in ("math.truediv", "math.divide"):
                    scale, offset = scale / y, offset / y
                elif function in ("__operators__.add", "math.add"):
                    offset = offset + y
                elif function == "math.subtract":
                    offset = offset - y
                else:
                    return None
        except (KeyError, ValueError, TypeError, AttributeError):
            return None
    return scale, offset


def fold_input_scaling(model) -> tuple[str | None, tuple[float, ...], tuple[float, ...]]:
    """The scaling prefix's last layer and the contract ``(mean, std)`` on 0..255 pixels equivalent to it.

    ``model_input = pixels * scale + offset = (pixels - mean) / std`` with ``std = 1/scale`` and
    ``mean = -offset/scale``. The map is computed from the layers' constants in float64 and
    checked against the graph's own output on constant images. With no prefix:
    ``(None, (0, 0, 0), (1, 1, 1))``.
    """
    prefix = input_scaling_prefix(model)
    if not prefix:
        return None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    measured = measure_affine(model, prefix[-1])
    exact = exact_affine(model, prefix)
    if exact is not None and not (np.allclose(exact[0], measured[0], rtol=1e-4) and np.allclose(exact[1], measured[1], rtol=1e-4, atol=1e-4)):
        log.warning("input scaling of %s: constants %s disagree with the graph's output %s; using the measured map", model.name, exact, measured)
        exact = None
    scale, offset = exact if exact is not None else measured
    if np.any(scale <= 0):
        raise ConfigError(f"input scaling up to {prefix[-1]!r} flips the sign of a channel; edgetl cannot express it as mean/std")
    mean = tuple(float(v) + 0.0 for v in -offset / scale)  # + 0.0: no negative zero
    std = tuple(float(v) for v in 1.0 / scale)
    log.debug("folded %s into the contract: mean %s std %s", prefix, mean, std)
    return prefix[-1], mean, std


def _unique(name: str, taken: set[str]) -> str:
    candidate, index = name, 1
    while candidate in taken:
        candidate = f"{name}_{index}"
        index += 1
    taken.add(candidate)
    return candidate


def _scoped(source: str, what: str) -> str:
    """``expanded_conv_3/expand/BatchNorm`` -> ``expanded_conv_3/expand/hard_swish``."""
    return f"{source.rsplit('/', 1)[0]}/{what}" if "/" in source else f"{source}_{what}"


def _deterministic_names(model, layer_configs: list[dict[str, Any]]) -> dict[str, str]:
    """``{old: new}`` for weightless layers whose name is Keras' automatic ``<snake_case>_<counter>``."""
    from tf_keras.src.utils.generic_utils import to_snake_case

    by_name = {layer.name: layer for layer in model.layers}
    counts: dict[str, int] = {}
    renamed = {}
    for lc in layer_configs:
        layer = by_name[lc["name"]]
        if layer.weights or type(layer).__name__ == "InputLayer":
            continue
        base = f"tf.{layer.get_config().get('function')}" if type(layer).__name__ == "TFOpLambda" else to_snake_case(type(layer).__name__)
        if re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name):
            index = counts.get(base, 0)
            counts[base] = index + 1
            renamed[layer.name] = base if index == 0 else f"{base}_{index}"
    return renamed


def _hard_sigmoid_chains(model, layer_configs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``{add layer: (relu layer, multiply layer)}`` for every ``relu6(x + 3) * (1/6)`` chain."""
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    relu = keras().layers.ReLU
    by_name = {layer.name: layer for layer in model.layers}
    consumers: dict[str, list[str]] = {}
    for lc in layer_configs:
        for src, _ in _inbound(lc):
            consumers.setdefault(src, []).append(lc["name"])

    def only_consumer(name: str) -> str | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    chains = {}
    for lc in layer_configs:
        layer = by_name[lc["name"]]
        if type(layer).__name__ != "TFOpLambda" or layer.get_config().get("function") != "__operators__.add":
            continue
        inputs = _inbound(lc)
        if len(inputs) != 1 or abs(float(inputs[0][1].get("y", 0.0)) - 3.0) > 1e-6:
            continue
        relu_name = only_consumer(lc["name"])
        if relu_name is None or not isinstance(by_name[relu_name], relu) or by_name[relu_name].max_value != 6.0:
            continue
        mul_name = only_consumer(relu_name)
        if mul_name is None or type(by_name[mul_name]).__name__ != "TFOpLambda" or by_name[mul_name].get_config().get("function") != "math.multiply":
            continue
        (_, mul_kwargs), = _inbound(next(c for c in layer_configs if c["name"] == mul_name))
        if abs(float(mul_kwargs.get("y", 0.0)) - 1.0 / 6.0) > 1e-6:
            continue
        chains[lc["name"]] = (relu_name, mul_name)
    return chains


def rebuild(
    model, *, drop_through: str | None = None, hard_swish_layers: bool = True, fuse_hard_swish: bool = False,
    input_name: str = "image", name: str | None = None,
):
    """A copy of the flat functional ``model`` in edgetl form, weights copied by layer name.

    Args:
        model: the stock model (weights already loaded).
        drop_through: drop every layer up to and including this one; a new input takes its output's shape.
        hard_swish_layers: replace MobileNetV3's hard-sigmoid/hard-swish ``TFOpLambda`` chains by layers.
        fuse_hard_swish: also replace ``x * hard_sigmoid(x)`` by one ``HardSwish`` layer (see the module docstring).
        input_name: name of the new input layer.
        name: the new model's name (default: the old one's).
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras
    from edgetl.ml.backbones.layers import HardSigmoid, HardSwish  # defines Keras layers: imports TensorFlow

    k = keras()
    config = model.get_config()
    layer_configs = config["layers"]
    old = {layer.name: layer for layer in model.layers}
    chains = _hard_sigmoid_chains(model, layer_configs) if hard_swish_layers else {}
    folded_away = {relu for relu, _ in chains.values()} | {mul for _, mul in chains.values()}

    # Weightless layers Keras named with a session-wide counter (re_lu_32, multiply_18,
    # tf.__operators__.add_27) get names counted within this model, so a rebuild is deterministic.
    renamed = _deterministic_names(model, layer_configs)
    taken = ({lc["name"] for lc in layer_configs} - set(renamed)) | set(renamed.values())

    tensors: dict[str, Any] = {}
    hard_sigmoid_of: dict[int, Any] = {}  # id(hard-sigmoid output) -> its input tensor
    new_input = None
    dropping = drop_through is not None
    for lc in layer_configs:
        layer_name = lc["name"]
        layer = old[layer_name]
        if (isinstance(layer, k.layers.InputLayer) and not dropping) or (dropping and layer_name == drop_through):
            new_input = k.Input(shape=tuple(layer.output.shape[1:]), name=input_name)
            tensors[layer_name] = new_input
            dropping = False
            continue
        if dropping or layer_name in folded_away:
            continue
        inputs = _inbound(lc)
        if layer_name in chains:
            (source, _), = inputs
            out = HardSigmoid(name=_unique(_scoped(source, "hard_sigmoid"), taken))(tensors[source])
            hard_sigmoid_of[id(out)] = tensors[source]
            tensors[chains[layer_name][1]] = out
            continue
        args = [tensors[source] for source, _ in inputs]
        if fuse_hard_swish and hard_swish_layers and isinstance(layer, k.layers.Multiply) and len(args) == 2:
            a, b = args
            x = a if hard_sigmoid_of.get(id(b)) is a else b if hard_sigmoid_of.get(id(a)) is b else None
            if x is not None:
                source = inputs[0][0] if x is a else inputs[1][0]
                tensors[layer_name] = HardSwish(name=_unique(_scoped(source, "hard_swish"), taken))(x)
                continue
        layer_config = layer.get_config()
        layer_config["name"] = renamed.get(layer_name, layer_name)
        copy = layer.__class__.from_config(layer_config)
        if len(args) == 1:
            kwargs = {key: value for key, value in inputs[0][1].items() if key != "name"} if type(layer).__name__ == "TFOpLambda" else {}
            tensors[layer_name] = copy(args[0], **kwargs)
        else:
            tensors[layer_name] = copy(args)
        if layer.weights:
            copy.set_weights(layer.get_weights())
    if new_input is None:
        raise ConfigError(f"layer {drop_through!r} is not in {model.name}")
    outputs = [tensors[entry[0]] for entry in config["output_layers"]]
    return k.Model(new_input, outputs[0] if len(outputs) == 1 else outputs, name=name or model.name)


def to_edgetl_form(stock, *, name: str, hard_swish_layers: bool = False, fuse_hard_swish: bool = False):
    """Fold ``stock``'s input scaling into a contract and rebuild it. Returns ``(model, mean, std)``."""
    last, mean, std = fold_input_scaling(stock)
    model = rebuild(stock, drop_through=last, hard_swish_layers=hard_swish_layers, fuse_hard_swish=fuse_hard_swish, name=name)
    remaining = [layer.name for layer in model.layers if type(layer).__name__ == "TFOpLambda"]
    if remaining:
        log.warning("%s keeps TFOpLambda layers %s; QAT may refuse them", name, remaining[:5])
    return model, mean, std


def hard_swish_multiplies(model) -> list[str]:
    """Names of the ``Multiply`` layers that compute ``x * HardSigmoid(x)`` (split hard-swish)."""
    found = []
    for layer in model.layers:
        if type(layer).__name__ != "Multiply" or len(layer.input) != 2:
            continue
        a, b = layer.input
        for x, gate_out in ((a, b), (b, a)):
            gate = gate_out._keras_history.layer  # noqa: SLF001 - the producing layer of a functional tensor
            if type(gate).__name__ == "HardSigmoid" and gate.input is x:
                found.append(layer.name)
                break
    return found

