"""Keras layers edgetl puts where stock graphs use ``TFOpLambda`` arithmetic (imports TensorFlow).

They compute exactly what ``keras.applications.mobilenet_v3`` computes, in the same op order,
so weights and outputs carry over; as real layers they can carry a QuantizeConfig. MobileNetV3
backbones use :class:`HardSigmoid` and keep hard-swish as ``Multiply(x, HardSigmoid(x))`` (int8
``ADD``/``MUL`` that XNNPACK runs); :class:`HardSwish`, which the converter turns into one
``HARD_SWISH`` kernel, is there for ``rebuild(fuse_hard_swish=True)`` and models saved before.
"""

from __future__ import annotations

from edgetl.ml._keras import keras, tf

_tf = tf()
_keras = keras()


@_keras.utils.register_keras_serializable(package="edgetl")
class HardSigmoid(_keras.layers.Layer):
    """``relu6(x + 3) * (1/6)``: MobileNetV3's gate."""

    def call(self, inputs):
        return _tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape


@_keras.utils.register_keras_serializable(package="edgetl")
class HardSwish(_keras.layers.Layer):
    """``x * relu6(x + 3) * (1/6)``: MobileNetV3's activation."""

    def call(self, inputs):
        return inputs * (_tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0))

    def compute_output_shape(self, input_shape):
        return input_shape


def custom_objects() -> dict[str, type]:
    """Names a saved edgetl model may use, for ``load_model(custom_objects=...)``."""
    return {"HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "edgetl>HardSigmoid": HardSigmoid, "edgetl>HardSwish": HardSwish}
