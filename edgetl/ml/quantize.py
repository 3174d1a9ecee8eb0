"""QAT recipes: which layer gets which tfmot ``QuantizeConfig``, declared as data per backbone.

tfmot's default 8-bit registry knows convolutions, dense layers, ReLU/ReLU6, Add, pooling and
reshapes (weights per channel, activations per tensor, Conv+BatchNorm folded). The layers
MobileNetV3 and EfficientNet add on top of that, and that tfmot refuses, are all element-wise
activations or gates whose *output* is a new tensor with its own range; a recipe names them,
and edgetl gives each a config that fake-quantizes the output alone (8-bit, asymmetric, per
tensor, moving-average ranges), which is what TFLite's int8 kernels for LOGISTIC, MUL,
HARD_SWISH and friends expect.

The annotation is done by cloning the float model with ``quantize_annotate_layer`` on each
layer, then ``quantize_apply`` inside ``quantize_scope``. Every layer is classified before tfmot
runs: a layer no recipe covers is refused with its name and type, never a tfmot traceback.

The recipe table is plain data and imports nothing heavy; tfmot is imported when a model is
quantized.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgetl.core.errors import ExportError
from edgetl.core.registry import Registry
from edgetl.ml._keras import keras, tfmot
from edgetl.ml.backbones.graph import hard_swish_multiplies

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QATRecipe:
    """Layers beyond tfmot's default registry that a backbone needs, and how they are quantized.

    Attributes:
        name: registry name.
        output_quantized: layer classes (by name) whose output alone gets an 8-bit quantizer.
        output_quantized_activations: ``Activation`` layers, by function name, treated likewise.
        description: one line for ``edgetl backbones`` and reports.
    """

    name: str
    output_quantized: tuple[str, ...] = ()
    output_quantized_activations: tuple[str, ...] = ()
    description: str = ""


QAT_RECIPES: Registry[QATRecipe] = Registry("QAT recipe")
QAT_RECIPES.register(
    "plain",
    QATRecipe("plain", description="tfmot's default 8-bit registry: conv/dense weights per channel, activations per tensor, BN folded"),
)
QAT_RECIPES.register(
    "mobilenet_v3",
    QATRecipe(
        "mobilenet_v3",
        output_quantized=("HardSwish", "HardSigmoid", "Multiply"),
        description="plain + output quantizers on hard-swish, the hard-sigmoid gate and the squeeze-excitation Multiply",
    ),
)
QAT_RECIPES.register(
    "efficientnet",
    QATRecipe(
        "efficientnet",
        output_quantized=("Multiply",),
        output_quantized_activations=("swish", "silu", "sigmoid", "hard_sigmoid"),
        description="plain + output quantizers on swish activations and the squeeze-excitation Multiply",
    ),
)


def is_quantized(model) -> bool:
    """Whether ``model`` is a tfmot quantization-aware model (its ranges are already set)."""
    return any(type(layer).__name__.startswith(("QuantizeWrapper", "QuantizeLayer")) for layer in model.layers)


def graph_ptq_model(model, pixels, contract, batch_size: int = 32):
    """Post-training int8 through the QAT graph, where the converter's own PTQ would be slow.

    The TFLite converter fuses MobileNetV3's ``x * hard_sigmoid(x)`` into one int8 ``HARD_SWISH``
    before quantizing, and XNNPACK does not run int8 ``HARD_SWISH``: each one splits the graph into
    another delegate partition and the int8 model runs 2-5x slower than fp32. Wrapped with the
    ``mobilenet_v3`` recipe instead, the gate and the multiply get their own quantizers and stay
    int8 ``ADD``/``MUL`` ops that XNNPACK takes, as in a QAT model. No training: the ranges are
    calibrated on ``pixels`` (:func:`calibrate_ranges`), weights stay the float model's.

    Args:
        model: a float edgetl Keras model (not modified).
        pixels: uint8 representative training images.
        contract: their preprocessing.

    Returns:
        The calibrated QAT-form model, or None when ``model`` has no split hard-swish, is already
        quantized, or the recipe does not cover it (then the converter's PTQ is the right path).
    """
    if is_quantized(model) or not hard_swish_multiplies(model):
        return None
    k = keras()
    copy = k.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:  # inference-mode BatchNorm while calibrating (it runs in training mode)
        layer.trainable = not isinstance(layer, k.layers.BatchNormalization)
    try:
        q_model = quantize_model(copy, "mobilenet_v3")
    except ExportError as exc:
        log.info("PTQ through the converter: %s", exc)
        return None
    calibrate_ranges(q_model, [contract.normalize(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])
    log.info("PTQ int8 through the calibrated QAT graph: hard-swish stays int8 ADD/MUL, which XNNPACK runs")
    return q_model


@dataclass(frozen=True)
class LayerPlan:
    """How one layer will be quantized: ``registry``, ``output``, ``user``, ``batchnorm`` or ``input``."""

    name: str
    layer_type: str
    how: str


@functools.cache
def _config_classes() -> dict[str, type]:
    """edgetl's QuantizeConfig classes (defined on first use: they subclass a tfmot class).

    Names must not collide with tfmot's own inside ``quantize_scope`` (its ``OutputOnlyConfig``
    is already taken there, and a clash silently deserializes ours as theirs).
    """
    qk = tfmot().quantization.keras

    class EdgetlOutputQuantizeConfig(qk.QuantizeConfig):
        """No weight or activation quantizers; one 8-bit moving-average quantizer on the output."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return {"EdgetlOutputQuantizeConfig": EdgetlOutputQuantizeConfig}


def custom_objects(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a saved edgetl QAT model needs to load: configs and edgetl layers."""
    # defines Keras layers: imports TensorFlow
    from edgetl.ml.backbones.layers import custom_objects as layer_objects

    objects = dict(layer_objects())
    objects.update(_config_classes())
    if extra:
        objects.update({type(cfg).__name__: type(cfg) for cfg in extra.values()})
    return objects


def _describe_type(layer) -> str:
    kind = type(layer).__name__
    if kind == "TFOpLambda":
        return f"TFOpLambda tf.{layer.get_config().get('function')}"
    activation = getattr(layer, "activation", None)
    if kind == "Activation" and activation is not None:
        return f"Activation {getattr(activation, '__name__', activation)}"
    return kind


def plan_quantization(model, recipe: str | QATRecipe = "plain", quantize_configs: Mapping[str, Any] | None = None) -> list[LayerPlan]:
    """Decide, for every layer, how QAT treats it; refuse before tfmot runs if one is not covered.

    Args:
        model: flat functional float Keras model.
        recipe: recipe name or object.
        quantize_configs: the Python API hook: ``{layer name or class name: QuantizeConfig}``,
            consulted before the recipe.

    Raises:
        ExportError: a layer no recipe covers (named, with its type and what to do), or a nested model.
    """
    k = keras()
    tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
        Default8BitQuantizeRegistry,
    )

    recipe = QAT_RECIPES.get(recipe) if isinstance(recipe, str) else recipe
    registry = Default8BitQuantizeRegistry()
    hooks = dict(quantize_configs or {})
    nested = [layer.name for layer in model.layers if isinstance(layer, k.Model)]
    if nested:
        raise ExportError(
            f"QAT needs a flat model, but layer(s) {', '.join(nested)} are nested models; rebuild it as one functional graph or use --mode ptq"
        )
    plans, uncovered = [], []
    for layer in model.layers:
        kind = type(layer).__name__
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if isinstance(layer, k.layers.InputLayer):
            how = "input"
        elif layer.name in hooks or kind in hooks:
            how = "user"
        elif kind in recipe.output_quantized or (kind == "Activation" and activation in recipe.output_quantized_activations):
            how = "output"
        elif kind != "Activation" and registry.supports(layer):
            how = "registry"
        elif kind == "Activation" and activation in ("relu", "relu6", "linear", "softmax") and registry.supports(layer):
            how = "registry"
        elif isinstance(layer, k.layers.BatchNormalization):
            how = "batchnorm"  # folded into the convolution before it by tfmot's layout transforms
        else:
            uncovered.append(layer)
            continue
        plans.append(LayerPlan(layer.name, kind, how))
    if uncovered:
        first = uncovered[0]
        more = f" (and {len(uncovered) - 1} more: {', '.join(repr(layer.name) for layer in uncovered[1:4])})" if len(uncovered) > 1 else ""
        raise ExportError(
            f"QAT cannot quantize layer {first.name!r} ({_describe_type(first)}): the {recipe.name!r} recipe has no "
            f"QuantizeConfig for it{more}; use --mode ptq (post-training int8 needs no recipe), or in the Python API pass "
            f"quantize_configs={{{first.name!r}: <tfmot QuantizeConfig>}} to edgetl.ml.quantize.quantize_model"
        )
    return plans


def calibrate_ranges(q_model, batches) -> None:
    """Start every activation quantizer's range at the average observed min/max, not at [-6, 6].

    tfmot's moving-average quantizers start at [-6, 6] and move with a decay of 0.999, so a few
    epochs of QAT end with ranges still mostly the initial guess: too wide for a [0, 0.5] gate,
    clipping a logit that reaches 20. The int8 model then keeps those ranges and loses to plain
    post-training calibration. This runs the batches through the QAT model in training mode (the
    only mode in which quantizers update; weights are not touched, no gradient is taken) with the
    decay set so the ranges become the running average of the batches' min/max.

    Args:
        q_model: the model :func:`quantize_model` returned.
        batches: normalized float input batches (training images).
    """
    tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize
    decay = {"value": 0.0}

    def with_decay(*args, **kwargs):
        kwargs["ema_decay"] = decay["value"]
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = with_decay
    try:
        for index, batch in enumerate(batches):
            decay["value"] = index / (index + 1)
            q_model(batch, training=True)
    finally:
        quant_ops.MovingAvgQuantize = original
    log.info("calibrated QAT activation ranges on %d batches", len(batches))


def quantize_model(model, recipe: str | QATRecipe = "plain", quantize_configs: Mapping[str, Any] | None = None):
    """Wrap a flat float Keras model for QAT with a recipe (and optional per-layer configs).

    Returns:
        The tfmot quantization-aware model (untrained quantizer ranges).

    Raises:
        ExportError: a layer no recipe covers, or tfmot refusing the graph (message in one line).
    """
    k, qk = keras(), tfmot().quantization.keras
    plans = {plan.name: plan for plan in plan_quantization(model, recipe, quantize_configs)}
    hooks = dict(quantize_configs or {})
    output_config = _config_classes()["EdgetlOutputQuantizeConfig"]

    def annotate(layer):
        copy = layer.__class__.from_config(layer.get_config())
        how = plans[layer.name].how
        if how == "user":
            return qk.quantize_annotate_layer(copy, quantize_config=hooks.get(layer.name, hooks.get(type(layer).__name__)))
        if how == "output":
            return qk.quantize_annotate_layer(copy, quantize_config=output_config())
        if how in ("registry", "batchnorm"):
            return qk.quantize_annotate_layer(copy)
        return copy

    counts: dict[str, int] = {}
    for plan in plans.values():
        counts[plan.how] = counts.get(plan.how, 0) + 1
    log.info("QAT plan: %s", ", ".join(f"{n} {how}" for how, n in sorted(counts.items())))
    try:
        with qk.quantize_scope(custom_objects(hooks)):
            annotated = k.models.clone_model(model, clone_function=annotate)
            annotated.set_weights(model.get_weights())
            return qk.quantize_apply(annotated)
    except (RuntimeError, ValueError, TypeError, AttributeError, KeyError) as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ExportError(
            f"tfmot cannot quantize this model: {message}; use --mode ptq, or give the layer it names a QuantizeConfig in the Python API"
        ) from None
