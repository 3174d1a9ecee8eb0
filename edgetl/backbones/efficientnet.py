"""EfficientNetB0 and EfficientNetV2B0 (keras.applications), in edgetl form."""

from __future__ import annotations

from typing import Any

from edgetl.backbones import BACKBONES, BackboneSpec, BuiltBackbone
from edgetl.contract import PreprocessContract


def _stock_b0(input_size: int, alpha: float | None, weights: str | None) -> Any:
    from edgetl._keras import keras

    return keras().applications.EfficientNetB0(input_shape=(input_size, input_size, 3), include_top=False, weights=weights)


def _stock_v2b0(input_size: int, alpha: float | None, weights: str | None) -> Any:
    from edgetl._keras import keras

    return keras().applications.EfficientNetV2B0(
        input_shape=(input_size, input_size, 3), include_top=False, weights=weights, include_preprocessing=True
    )


def _builder(stock_builder, name: str):
    def build(input_size: int, alpha: float | None, weights: str | None) -> BuiltBackbone:
        from edgetl.backbones.graph import to_edgetl_form

        stock = stock_builder(input_size, alpha, weights)
        # The stem's Rescaling + Normalization (+ the ImageNet 1/sqrt(std) fix) become the contract:
        # x/255 for random weights, ImageNet mean/std for ImageNet weights, whatever a weights file holds.
        model, mean, std = to_edgetl_form(stock, name=name)
        return BuiltBackbone(model, PreprocessContract(input_size, mean, std))  # type: ignore[arg-type]

    return build


_COMMON = dict(
    default_input_size=224,
    min_input_size=32,
    alphas=(),
    default_alpha=None,
    mean=(0.0, 0.0, 0.0),
    std=(255.0, 255.0, 255.0),
    block_pattern=r"^(block\d+[a-z])_",
    qat_recipe="efficientnet",
)

BACKBONES.register(
    "efficientnet_b0",
    BackboneSpec(
        name="efficientnet_b0",
        builder=_builder(_stock_b0, "efficientnet_b0"),
        stock_builder=_stock_b0,
        pretrained_sizes=(224,),
        # Stages 6 and 7 (blocks 6a-6d, 7a) and the top conv: 5 of 16 blocks.
        unfreeze_from="block6a_expand_conv",
        weights_file=lambda alpha, size: "efficientnetb0_notop.h5",
        description="EfficientNet-B0 (Tan & Le 2019): MBConv, swish, squeeze-excitation",
        **_COMMON,  # type: ignore[arg-type]
    ),
)

BACKBONES.register(
    "efficientnet_v2_b0",
    BackboneSpec(
        name="efficientnet_v2_b0",
        builder=_builder(_stock_v2b0, "efficientnet_v2_b0"),
        stock_builder=_stock_v2b0,
        pretrained_sizes=(224,),
        # The last stage (blocks 6a-6h) and the top conv.
        unfreeze_from="block6a_expand_conv",
        weights_file=lambda alpha, size: "efficientnetv2-b0_notop.h5",
        description="EfficientNetV2-B0 (Tan & Le 2021): fused-MBConv stem blocks, swish, squeeze-excitation",
        **_COMMON,  # type: ignore[arg-type]
    ),
)
