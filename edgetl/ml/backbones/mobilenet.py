"""MobileNetV2 and MobileNetV3 Small/Large (keras.applications), in edgetl form."""

from __future__ import annotations

from typing import Any

from edgetl.core.contract import PreprocessContract, as_hw
from edgetl.ml.backbones.spec import BACKBONES, BackboneSpec, BuiltBackbone

_PRETRAINED_V2 = (96, 128, 160, 192, 224)


def _mobilenet_v2(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> BuiltBackbone:
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    model = keras().applications.MobileNetV2(
        input_shape=(*as_hw(input_size), 3), alpha=1.0 if alpha is None else alpha, include_top=False, weights=weights
    )
    # Keras' MobileNetV2 has no scaling layers: its contract is mobilenet_v2.preprocess_input, x/127.5 - 1.
    return BuiltBackbone(model, PreprocessContract.sized(input_size, (127.5,) * 3, (127.5,) * 3))


def _mobilenet_v2_weights_file(alpha: float | None, input_size: int | tuple[int, int]) -> str:
    alpha = 1.0 if alpha is None else alpha
    size = input_size if input_size in _PRETRAINED_V2 else 224  # Keras loads the 224 file for a non-square input
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5"


BACKBONES.register(
    "mobilenet_v2",
    BackboneSpec(
        name="mobilenet_v2",
        builder=_mobilenet_v2,
        stock_builder=None,  # the stock graph already is edgetl form
        default_input_size=224,
        min_input_size=32,
        pretrained_sizes=_PRETRAINED_V2,
        alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
        default_alpha=1.0,
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        # Blocks 13-16 and the last 1x1 conv: the top quarter of the network, the Keras guide's depth.
        unfreeze_from="block_13_expand",
        block_pattern=r"^(block_\d+|expanded_conv)_",
        weights_file=_mobilenet_v2_weights_file,
        qat_recipe="plain",
        description="MobileNetV2 (Sandler et al. 2018): inverted residuals, ReLU6",
    ),
)


def _stock_v3(variant: str):
    def stock(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> Any:
        # TensorFlow loads here, when a model is built, not when backbones are listed
        from edgetl.ml._keras import keras

        cls = getattr(keras().applications, f"MobileNetV3{variant}")
        return cls(
            input_shape=(*as_hw(input_size), 3), alpha=1.0 if alpha is None else alpha, include_top=False,
            weights=weights, include_preprocessing=True,
        )

    return stock


def _v3_builder(variant: str):
    stock_builder = _stock_v3(variant)

    def build(input_size: int | tuple[int, int], alpha: float | None, weights: str | None) -> BuiltBackbone:
        # imports TensorFlow when it runs
        from edgetl.ml.backbones.graph import to_edgetl_form

        stock = stock_builder(input_size, alpha, weights)
        model, mean, std = to_edgetl_form(stock, name=f"mobilenet_v3_{variant.lower()}", hard_swish_layers=True)
        return BuiltBackbone(model, PreprocessContract.sized(input_size, mean, std))  # type: ignore[arg-type]

    return build


def _v3_weights_file(variant: str):
    def weights_file(alpha: float | None, input_size: int | tuple[int, int]) -> str:
        alpha = 1.0 if alpha is None else alpha
        return f"weights_mobilenet_v3_{variant}_224_{alpha}_float_no_top_v2.h5"

    return weights_file


for _variant, _unfreeze, _desc in (
    ("Small", "expanded_conv_8/expand", "MobileNetV3-Small (Howard et al. 2019): hard-swish, squeeze-excitation"),
    ("Large", "expanded_conv_12/expand", "MobileNetV3-Large (Howard et al. 2019): hard-swish, squeeze-excitation"),
):
    _name = f"mobilenet_v3_{_variant.lower()}"
    BACKBONES.register(
        _name,
        BackboneSpec(
            name=_name,
            builder=_v3_builder(_variant),
            stock_builder=_stock_v3(_variant),
            default_input_size=224,
            min_input_size=32,
            pretrained_sizes=(224,),
            alphas=(0.75, 1.0),
            default_alpha=1.0,
            mean=(127.5, 127.5, 127.5),
            std=(127.5, 127.5, 127.5),
            # The last three (Small) / four (Large) inverted-residual blocks and the final 1x1 conv.
            unfreeze_from=_unfreeze,
            block_pattern=r"^(expanded_conv(?:_\d+)?)/",
            weights_file=_v3_weights_file(_variant.lower()),
            qat_recipe="mobilenet_v3",
            description=_desc,
        ),
    )
