"""EfficientNetB0 and EfficientNetV2B0 (keras.applications), in edgetl form."""

from __future__ import annotations

from typing import Any

from edgetl.core.contract import PreprocessContract, as_hw
from edgetl.ml.backbones.spec import BACKBONES, BackboneSpec, BuiltBackbone


def _stock_b0(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> Any:
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    return keras().applications.EfficientNetB0(input_shape=(*as_hw(input_size), 3), include_top=False, weights=weights)


def _stock_v2b0(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> Any:
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    return keras().applications.EfficientNetV2B0(
        input_shape=(*as_hw(input_size), 3), include_top=False, weights=weights, include_preprocessing=True
    )


def _builder(stock_builder, name: str):
    def build(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> BuiltBackbone:
        # imports TensorFlow when it runs
        from edgetl.ml.backbones.graph import to_edgetl_form

        stock = stock_builder(input_size, alpha, weights)
        # The stem's Rescaling + Normalization (+ the ImageNet 1/sqrt(std) fix) become the contract:
        # x/255 for random weights, ImageNet mean/std for ImageNet weights, whatever a weights file holds.
        model, mean, std = to_edgetl_form(stock, name=name)
        return BuiltBackbone(model, PreprocessContract.sized(input_size, mean, std))  # type: ignore[arg-type]

    return build


for _name, _stock, _weights, _desc in (
    ("efficientnet_b0", _stock_b0, "efficientnetb0_notop.h5", "EfficientNet-B0 (Tan & Le 2019): MBConv, swish, squeeze-excitation"),
    ("efficientnet_v2_b0", _stock_v2b0, "efficientnetv2-b0_notop.h5",
     "EfficientNetV2-B0 (Tan & Le 2021): fused-MBConv stem blocks, swish, squeeze-excitation"),
):
    BACKBONES.register(
        _name,
        BackboneSpec(
            name=_name,
            builder=_builder(_stock, _name),
            stock_builder=_stock,
            default_input_size=224,
            min_input_size=32,
            pretrained_sizes=(224,),
            alphas=(),
            default_alpha=None,
            # Random weights: the stock Normalization is un-adapted, so the folded contract is x/255.
            mean=(0.0, 0.0, 0.0),
            std=(255.0, 255.0, 255.0),
            # The last stage (B0: blocks 6a-6d, then 7a; V2-B0: 6a-6h) and the top conv.
            unfreeze_from="block6a_expand_conv",
            block_pattern=r"^(block\d+[a-z])_",
            weights_file=lambda alpha, size, _file=_weights: _file,
            qat_recipe="efficientnet",
            description=_desc,
        ),
    )
