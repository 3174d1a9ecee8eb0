"""Backbone registry: each entry declares, as data, what edgetl needs to know before training.

An entry names its builder, the input sizes and width multipliers it accepts, the preprocessing
contract (pixel scaling lives outside the graph), where fine-tuning starts by default, the
ImageNet weights file Keras caches, the QAT recipe and the targets it supports. Importing this
module does not import TensorFlow; builders import it when called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.contract import PreprocessContract
from edgetl.errors import ConfigError
from edgetl.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import tf_keras

log = logging.getLogger(__name__)

#: Where tf_keras caches downloaded weights (it ignores KERAS_HOME for application weights).
KERAS_CACHE = Path("~/.keras/models")


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is and can do, checked before any training starts.

    Attributes:
        name: registry name (``mobilenet_v2``).
        builder: ``builder(input_size, alpha, weights) -> tf_keras.Model`` without top.
        default_input_size: size used when none is given.
        min_input_size: smallest size the architecture accepts.
        pretrained_sizes: sizes with ImageNet weights; others load the closest file Keras offers.
        alphas: accepted width multipliers (empty: the backbone has none).
        default_alpha: multiplier used when none is given.
        mean, std: preprocessing contract constants on 0..255 pixels.
        unfreeze_from: first layer of the default fine-tuning depth (a block boundary).
        weights_file: ``weights_file(alpha, input_size) -> file name`` in ``~/.keras/models``.
        qat_recipe: name of the QAT recipe (``qat.py``).
        targets: export targets known to work.
    """

    name: str
    builder: Callable[..., Any]
    default_input_size: int
    min_input_size: int
    pretrained_sizes: tuple[int, ...]
    alphas: tuple[float, ...]
    default_alpha: float | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    unfreeze_from: str
    weights_file: Callable[[float | None, int], str]
    qat_recipe: str = "default"
    targets: tuple[str, ...] = ("tflite-int8", "tflite-fp16", "tflite-fp32")
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def contract(self, input_size: int) -> PreprocessContract:
        return PreprocessContract(input_size=input_size, mean=self.mean, std=self.std)

    def check_input_size(self, input_size: int) -> None:
        if input_size < self.min_input_size:
            raise ConfigError(
                f"input size {input_size} is too small for {self.name}: it needs at least "
                f"{self.min_input_size} px (pretrained sizes: {', '.join(map(str, self.pretrained_sizes))})"
            )

    def check_alpha(self, alpha: float | None) -> None:
        if alpha is None:
            return
        if not self.alphas:
            raise ConfigError(f"{self.name} has no width multiplier; drop --alpha")
        if alpha not in self.alphas:
            allowed = ", ".join(str(a) for a in self.alphas)
            raise ConfigError(f"alpha {alpha} is not available for {self.name}; choose one of {allowed}")


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def resolve_weights(spec: BackboneSpec, weights: str, alpha: float | None, input_size: int) -> str | None:
    """Turn the user's ``--weights`` into what the Keras builder takes, checking files first.

    Returns:
        ``"imagenet"``, ``None`` (random init) or an existing file path.

    Raises:
        ConfigError: a path that does not exist, or ImageNet weights missing offline.
    """
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        cached = KERAS_CACHE.expanduser() / spec.weights_file(alpha, input_size)
        if not cached.is_file():
            log.info("ImageNet weights not cached at %s; Keras will try to download them", cached)
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights file {path} does not exist; pass --weights imagenet, --weights none or an existing .h5 path"
        )
    return str(path)


def build_backbone(spec: BackboneSpec, input_size: int, alpha: float | None, weights: str) -> tf_keras.Model:
    """Build the headless backbone, turning download and file failures into one-line errors."""
    spec.check_input_size(input_size)
    spec.check_alpha(alpha)
    resolved = resolve_weights(spec, weights, alpha, input_size)
    try:
        return spec.builder(input_size=input_size, alpha=alpha, weights=resolved)
    except Exception as exc:  # Keras raises bare Exception/OSError/ValueError on fetch or load
        if resolved == "imagenet":
            cached = KERAS_CACHE / spec.weights_file(alpha, input_size)
            raise ConfigError(
                f"cannot load ImageNet weights for {spec.name}: {cached} is missing and could not be "
                f"downloaded ({type(exc).__name__}); copy that file into ~/.keras/models, or pass "
                "--weights none or --weights PATH"
            ) from None
        if resolved is not None:
            raise ConfigError(f"cannot load weights from {resolved} into {spec.name}: {exc}") from None
        raise


def _mobilenet_v2(input_size: int, alpha: float | None, weights: str | None) -> Any:
    from edgetl._keras import keras

    return keras().applications.MobileNetV2(
        input_shape=(input_size, input_size, 3),
        alpha=1.0 if alpha is None else alpha,
        include_top=False,
        weights=weights,
    )


def _mobilenet_v2_weights_file(alpha: float | None, input_size: int) -> str:
    alpha = 1.0 if alpha is None else alpha
    size = input_size if input_size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5"


BACKBONES.register(
    "mobilenet_v2",
    BackboneSpec(
        name="mobilenet_v2",
        builder=_mobilenet_v2,
        default_input_size=224,
        min_input_size=32,
        pretrained_sizes=(96, 128, 160, 192, 224),
        alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
        default_alpha=1.0,
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        # Blocks 13-16 and the last 1x1 conv: the top quarter of the network, the Keras guide's depth.
        unfreeze_from="block_13_expand",
        weights_file=_mobilenet_v2_weights_file,
        qat_recipe="default",
        description="MobileNetV2 (Sandler et al. 2018), inverted residuals, ReLU6",
    ),
)


def build_classifier(
    spec: BackboneSpec,
    num_classes: int,
    input_size: int,
    alpha: float | None,
    weights: str,
    dropout: float = 0.2,
) -> tf_keras.Model:
    """Backbone plus a new head as ONE flat functional graph (tfmot cannot quantize nested models).

    The head is global average pooling, dropout and a dense softmax, named ``edgetl_pool``,
    ``edgetl_dropout`` and ``edgetl_logits`` so later stages can find it.
    """
    from edgetl._keras import keras

    k = keras()
    base = build_backbone(spec, input_size, alpha, weights)
    x = k.layers.GlobalAveragePooling2D(name="edgetl_pool")(base.output)
    x = k.layers.Dropout(dropout, name="edgetl_dropout")(x)
    outputs = k.layers.Dense(num_classes, activation="softmax", name="edgetl_logits")(x)
    return k.Model(base.input, outputs, name=f"edgetl_{spec.name}")


HEAD_LAYERS = ("edgetl_pool", "edgetl_dropout", "edgetl_logits")


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass at batch 1, from the layers' shapes.

    Counts convolutions (grouped and depthwise too) and dense layers, which hold nearly all of a
    MobileNet/EfficientNet's arithmetic; element-wise ops, pooling and BatchNorm are not counted.
    """
    from edgetl._keras import keras

    k = keras()
    total = 0
    for layer in model.layers:
        if isinstance(layer, k.layers.DepthwiseConv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c_out
        elif isinstance(layer, k.layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            c_in = layer.input_shape[-1]
            total += h * w * kh * kw * (c_in // layer.groups) * c_out
        elif isinstance(layer, k.layers.Dense):
            total += int(layer.input_shape[-1]) * layer.units
    return int(total)


def describe_backbone(spec: BackboneSpec, num_classes: int = 1000) -> dict[str, Any]:
    """Parameters and MACs of the backbone with a ``num_classes`` head, at its default size."""
    model = build_classifier(spec, num_classes, spec.default_input_size, spec.default_alpha, "none")
    return {
        "name": spec.name,
        "default_input_size": spec.default_input_size,
        "min_input_size": spec.min_input_size,
        "pretrained_sizes": list(spec.pretrained_sizes),
        "alphas": list(spec.alphas),
        "default_alpha": spec.default_alpha,
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "targets": list(spec.targets),
        "description": spec.description,
    }
