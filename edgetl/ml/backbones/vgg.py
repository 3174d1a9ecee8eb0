"""VGG16 (keras.applications), in edgetl form: the backbone of the transfer-learning tutorial edgetl grew from.

VGG16 is large and slow next to the mobile backbones (about 15 GMACs and 14.7 M backbone
parameters at 224 px; see ``benchmarks/bench_vgg16.py``); it is here because it is the classic
transfer-learning recipe (``models/seed_vgg16.toml``), and as a reference point.

Its ImageNet preprocessing is caffe-style (``vgg16.preprocess_input``): RGB -> BGR, subtract the
BGR means (103.939, 116.779, 123.68), no scaling. edgetl's contract is RGB ``(x - mean) / std``
outside the graph. The mean becomes the contract, reordered to RGB, with std 1. The channel swap
cannot be a per-channel affine map, so it is folded into ``block1_conv1``: its kernel's
input-channel axis is reversed, and the convolution then reads RGB exactly as the stock one reads
BGR. Every layer keeps its stock name and shape, and the graph is the stock one (Conv2D,
MaxPooling2D), which tfmot's default 8-bit registry quantizes as it is.

A ``--weights PATH`` file is read as Keras' own VGG16 no-top file is (the layout of
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, BGR first kernel), like the other Keras
applications, whose files load into the stock model before it is put in edgetl form.
"""

from __future__ import annotations

from typing import Any

from edgetl.core.contract import PreprocessContract, as_hw
from edgetl.ml.backbones.spec import BACKBONES, BackboneSpec, BuiltBackbone

#: ``vgg16.preprocess_input``'s means, in its own BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: The same means in RGB order: edgetl's contract.
VGG16_MEAN_RGB = CAFFE_MEAN_BGR[::-1]
VGG16_STD = (1.0, 1.0, 1.0)
#: The first convolution, whose kernel takes the RGB -> BGR swap.
FIRST_CONV = "block1_conv1"
WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def stock_vgg16(input_size: int | tuple[int, int], alpha: float | None = None, weights: str | None = None) -> Any:
    """The unmodified Keras VGG16 without top: its input is ``vgg16.preprocess_input(pixels)`` (BGR)."""
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    return keras().applications.VGG16(input_shape=(*as_hw(input_size), 3), include_top=False, weights=weights)


def to_rgb_form(stock: Any) -> Any:
    """A copy of a stock VGG16 that reads RGB: same layers and weights, ``block1_conv1``'s input channels reversed.

    ``conv(bgr, W) == conv(rgb, W[:, :, ::-1, :])``: the swap costs nothing at inference time and
    the model stays one plain graph.
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    model = keras().models.clone_model(stock)
    model.set_weights(stock.get_weights())
    kernel, bias = stock.get_layer(FIRST_CONV).get_weights()
    model.get_layer(FIRST_CONV).set_weights([kernel[:, :, ::-1, :].copy(), bias])
    return model


def _vgg16(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> BuiltBackbone:
    model = to_rgb_form(stock_vgg16(input_size, alpha, weights))
    return BuiltBackbone(model, PreprocessContract.sized(input_size, VGG16_MEAN_RGB, VGG16_STD))


BACKBONES.register(
    "vgg16",
    BackboneSpec(
        name="vgg16",
        builder=_vgg16,
        # The preprocessing is outside the stock graph (as for MobileNetV2): there is no in-graph
        # scaling to fold. stock_vgg16 and to_rgb_form above give the stock model and the equivalence.
        stock_builder=None,
        default_input_size=224,
        min_input_size=32,
        pretrained_sizes=(224,),  # the no-top file fits any size >= 32; ImageNet training was at 224
        alphas=(),
        default_alpha=None,
        mean=VGG16_MEAN_RGB,
        std=VGG16_STD,
        # The top block (block5: three 3x3 convs and the last pool): near the output, task-specific.
        unfreeze_from="block5_conv1",
        block_pattern=r"^(block\d)_",
        weights_file=lambda alpha, size: WEIGHTS_FILE,
        qat_recipe="plain",
        description="VGG16 (Simonyan & Zisserman 2014): 13 3x3 convs, ReLU, max pooling; large and slow, the classic transfer-learning backbone",
    ),
)
