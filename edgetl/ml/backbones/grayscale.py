"""Grayscale (1-channel) backbones made from RGB ones, keeping pretrained weights.

Keras' applications load ImageNet weights only into 3-channel inputs. A 1-channel backbone is the
RGB backbone in edgetl form cloned onto a ``(height, width, 1)`` input, every weight copied, and the
first convolution's kernel folded over its three input channels. With the RGB contract
``x_c = (p_c - m_c) / s_c`` and the gray contract ``x = (g - m) / s`` (``m``, ``s`` the channel
averages), feeding the gray image replicated to RGB gives, at every output of the first convolution,

    sum_c W_c (g - m_c) / s_c = [s * sum_c W_c / s_c] (g - m) / s + sum_c W_c (m - m_c) / s_c,

so the folded kernel is ``s * sum_c W_c / s_c`` and the constant second term goes into the
convolution's bias, or into the next BatchNormalization's moving mean when the convolution has
no bias. When every channel has the same mean and std (MobileNetV2/V3, EfficientNetV2-B0,
EfficientNet-Lite0, random-weight EfficientNet-B0) the kernel is simply summed, the constant is 0
and the 1-channel model equals the RGB model on the replicated image exactly, borders included.
When they differ (EfficientNet-B0 with ImageNet weights) it is exact except at the image border,
where the convolution's zero padding stands for pixel ``m`` instead of ``m_c``: a small
difference on the outermost ring of the first feature map, which fine-tuning absorbs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.ml.backbones.spec import BuiltBackbone

log = logging.getLogger(__name__)


def gray_contract(contract: PreprocessContract) -> PreprocessContract:
    """The 1-channel contract of an RGB ``contract``: the averages of its channel means and stds."""
    mean = float(np.mean(np.asarray(contract.mean, dtype=np.float64)))
    std = float(np.mean(np.asarray(contract.std, dtype=np.float64)))
    return PreprocessContract.sized(contract.hw, (mean,), (std,), channel_order="L", resize=contract.resize)


def to_grayscale(built: BuiltBackbone, *, keep_weights: bool) -> BuiltBackbone:
    """``built`` (RGB, edgetl form) on a 1-channel input.

    Args:
        built: the RGB backbone and its contract.
        keep_weights: copy the (pretrained) weights, folding the first convolution; False: the new
            model keeps its own random initialisation (training from scratch).

    Raises:
        ConfigError: the input does not feed a convolution whose weights can be folded.
    """
    # TensorFlow loads here, when a model is built
    from edgetl.ml._keras import keras

    k = keras()
    rgb, contract = built
    if contract.channels != 3:
        raise ConfigError(f"{rgb.name}: expected an RGB backbone to make a grayscale one, got {contract.channels} channel(s)")
    gray_of = gray_contract(contract)
    inputs = k.Input(shape=(*contract.hw, 1), name=rgb.layers[0].name)
    gray = k.models.clone_model(rgb, input_tensors=inputs)
    if not keep_weights:
        return BuiltBackbone(gray, gray_of)
    folded: tuple[Any, np.ndarray] | None = None
    by_name = {layer.name: layer for layer in gray.layers}
    for source in rgb.layers:
        weights = source.get_weights()
        if not weights:
            continue
        target = by_name[source.name]
        shapes = [tuple(w.shape) for w in target.get_weights()]
        if shapes == [w.shape for w in weights]:
            target.set_weights(weights)
            continue
        if folded or not isinstance(source, k.layers.Conv2D) or weights[0].shape[2] != 3 or shapes[0][2] != 1:
            raise ConfigError(f"{rgb.name}: cannot make a grayscale model: layer {source.name!r} changes shape beyond the first convolution")
        kernel, offset = fold_kernel(weights[0], contract, gray_of)
        target.set_weights([kernel, *weights[1:]])
        folded = (target, offset)
        log.debug("grayscale: folded %s's kernel over its 3 input channels", source.name)
    if not folded:
        raise ConfigError(f"{rgb.name}: cannot make a grayscale model: no first convolution on the input to fold")
    conv, offset = folded
    if np.any(offset):  # after every copy: the BatchNorm it may change is copied after the convolution
        _absorb_offset(conv, offset, k)
    return BuiltBackbone(gray, gray_of)


def fold_kernel(kernel: np.ndarray, rgb: PreprocessContract, gray: PreprocessContract) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel (kh, kw, 1, out), per-output offset)`` equivalent to ``kernel`` (kh, kw, 3, out) on a replicated gray image."""
    k64 = kernel.astype(np.float64)
    mean_c = np.asarray(rgb.mean, dtype=np.float64)
    std_c = np.asarray(rgb.std, dtype=np.float64)
    mean, std = gray.mean[0], gray.std[0]
    if np.all(mean_c == mean_c[0]) and np.all(std_c == std_c[0]):
        # equal statistics: the plain sum, exactly (no rounding through std / std_c)
        return k64.sum(axis=2, keepdims=True).astype(kernel.dtype), np.zeros(kernel.shape[-1])
    folded = std * (k64 / std_c[None, None, :, None]).sum(axis=2, keepdims=True)
    offset = (k64 * ((mean - mean_c) / std_c)[None, None, :, None]).sum(axis=(0, 1, 2))
    return folded.astype(kernel.dtype), offset


def _absorb_offset(conv: Any, offset: np.ndarray, k: Any) -> None:
    """Add the constant ``offset`` to ``conv``'s output: its bias, else the next BatchNorm's moving mean."""
    if conv.use_bias:
        kernel, bias = conv.get_weights()
        conv.set_weights([kernel, bias + offset.astype(bias.dtype)])
        return
    consumers = [node.outbound_layer for node in conv._outbound_nodes]  # noqa: SLF001 - the layers a functional layer feeds
    if len(consumers) == 1 and isinstance(consumers[0], k.layers.BatchNormalization):
        bn = consumers[0]
        names = [w.name.split("/")[-1].split(":")[0] for w in bn.weights]
        values = bn.get_weights()
        index = names.index("moving_mean")
        values[index] = values[index] - offset.astype(values[index].dtype)
        bn.set_weights(values)
        return
    log.warning("grayscale: %s has no bias and no BatchNorm after it; its constant input offset is dropped (approximate)", conv.name)
