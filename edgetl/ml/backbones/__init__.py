"""Backbone registry: each entry declares, as data, what edgetl needs to know before training.

An entry names its builder, the input sizes and width multipliers it accepts, the preprocessing
contract (pixel scaling lives outside the graph), where fine-tuning starts by default (a block
boundary), how its blocks are named, the ImageNet weights file Keras caches, the QAT recipe and
the targets it supports. Importing this package does not import TensorFlow; builders import it
when called.

Every builder returns the backbone in *edgetl form*: one flat functional graph of real Keras
layers, with the input scaling the stock Keras application keeps inside the graph (``Rescaling``,
``Normalization``) folded into the :class:`PreprocessContract` instead, and MobileNetV3's
hard-swish written as layers rather than ``TFOpLambda`` arithmetic. That is the form tfmot can
quantize and TFLite can turn into full-integer kernels.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgetl.core.contract import as_hw
from edgetl.core.errors import ConfigError
from edgetl.ml.backbones.spec import KERAS_CACHE, BackboneSpec, BuiltBackbone, hidden_layer_name

log = logging.getLogger(__name__)


def resolve_weights(spec: BackboneSpec, weights: str, alpha: float | None, input_size: int | tuple[int, int]) -> str | None:
    """Turn the user's ``--weights`` into what the builder takes, checking files first.

    A file goes to tf_keras' ``load_weights``, which reads weight arrays only (HDF5 groups, or the
    ``model.weights.h5`` inside a ``.keras`` zip), never a model config, so a hostile file cannot
    run code here (``tests/unit/ml/test_security_keras.py`` checks it with a Lambda model).

    Returns:
        ``"imagenet"``, ``None`` (random init) or an existing file path.

    Raises:
        ConfigError: a path that does not exist, or ImageNet weights the backbone does not have.
    """
    if spec.extra.get("user_file"):  # --model FILE: the file's own weights are the pretrained ones
        if weights.lower() in ("imagenet", "file"):
            return None  # the user-model builder loads the file; it takes no weights argument
        raise ConfigError(
            f"--weights {weights} does not apply to --model {spec.extra['user_file']}: its own weights are used; drop --weights"
        )
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        if spec.weights_file is None and spec.imagenet_weights is not None:
            spec.imagenet_weights()  # checks now that the file is installed (ConfigError says how), before any build
            return "imagenet"
        if spec.weights_file is None:
            raise ConfigError(
                f"{spec.name} has no ImageNet weights in keras.applications; pass --weights none "
                "(train from scratch) or --weights PATH (an .h5 file saved from an edgetl model of this backbone)"
            )
        cached = KERAS_CACHE.expanduser() / spec.weights_file(alpha, _keras_size(input_size))
        if not cached.is_file():
            log.info("ImageNet weights not cached at %s; Keras will try to download them", cached)
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights file {path} does not exist; pass --weights imagenet, --weights none or an existing .h5 path"
        )
    return str(path)


def _keras_size(input_size: int | tuple[int, int]) -> int | tuple[int, int]:
    """A square ``(s, s)`` as ``s`` (what the weights-file names use); a non-square pair as it is."""
    height, width = as_hw(input_size)
    return height if height == width else (height, width)


def build_backbone(
    spec: BackboneSpec, input_size: int | tuple[int, int], alpha: float | None, weights: str, channels: int = 3
) -> BuiltBackbone:
    """Build the headless backbone in edgetl form, turning download and file failures into one-line errors.

    ``input_size`` is a side or ``(height, width)``; ``channels`` 1 builds the RGB backbone and folds
    it into a grayscale one (:func:`edgetl.ml.backbones.grayscale.to_grayscale`), keeping pretrained weights.
    """
    input_size = _keras_size(input_size)
    spec.check_input_size(input_size)
    spec.check_alpha(alpha)
    if channels not in (1, 3):
        raise ConfigError(f"--channels {channels} is not supported; use 1 (grayscale) or 3 (RGB)")
    resolved = resolve_weights(spec, weights, alpha, input_size)
    if channels == 1:
        # imports TensorFlow when it runs
        from edgetl.ml.backbones.grayscale import to_grayscale

        if resolved not in (None, "imagenet"):  # a weights file: saved from a grayscale model, or from an RGB one
            try:
                gray, contract = to_grayscale(_build(spec, input_size, alpha, None), keep_weights=False)
                gray.load_weights(resolved)
                return BuiltBackbone(gray, contract)
            except Exception:  # not a grayscale file: fold it from RGB below
                log.debug("%s is not a grayscale weights file; folding it from RGB", resolved)
        pretrained = resolved is not None or bool(spec.extra.get("user_file"))
        return to_grayscale(_build(spec, input_size, alpha, resolved), keep_weights=pretrained)
    return _build(spec, input_size, alpha, resolved)


def _build(spec: BackboneSpec, input_size: int | tuple[int, int], alpha: float | None, resolved: str | None) -> BuiltBackbone:
    try:
        return spec.builder(input_size=input_size, alpha=alpha, weights=resolved)
    except ConfigError:
        raise
    except Exception as exc:  # Keras raises bare Exception/OSError/ValueError on fetch or load
        if resolved == "imagenet" and spec.weights_file is None:  # weights edgetl reads itself (imagenet_weights)
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot load ImageNet weights into {spec.name}: {first}") from None
        if resolved == "imagenet":
            cached = KERAS_CACHE / spec.weights_file(alpha, input_size)  # type: ignore[misc,arg-type]
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__  # Keras raises a bare Exception: its text says why
            raise ConfigError(
                f"cannot load ImageNet weights for {spec.name}: {cached} is missing and the download failed "
                f"({reason}); copy that file into ~/.keras/models (from a machine that is online), or pass "
                "--weights none or --weights PATH"
            ) from None
        if resolved is not None:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot load weights from {resolved} into {spec.name}: {first}") from None
        raise


def build_classifier(
    spec: BackboneSpec,
    num_classes: int,
    input_size: int | tuple[int, int],
    alpha: float | None,
    weights: str,
    dropout: float = 0.2,
    channels: int = 3,
    head_units: tuple[int, ...] | list[int] = (),
) -> BuiltBackbone:
    """Backbone plus a new head as ONE flat functional graph (tfmot cannot quantize nested models).

    The head is global average pooling, dropout and a dense softmax, named ``edgetl_pool``,
    ``edgetl_dropout`` and ``edgetl_logits`` so later stages can find it. ``head_units`` puts
    hidden Dense+ReLU layers of those widths between the pooling and the dropout (the
    transfer-learning tutorial's ``Dense(1024, relu)``), named ``edgetl_hidden_1``, ... so that
    :func:`edgetl.ml.backbones.spec.is_head_layer` counts them as head; empty: the graph is
    exactly the plain head's.
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

    k = keras()
    base, contract = build_backbone(spec, input_size, alpha, weights, channels)
    x = k.layers.GlobalAveragePooling2D(name="edgetl_pool")(base.output)
    for index, units in enumerate(head_units, start=1):
        x = k.layers.Dense(int(units), activation="relu", name=hidden_layer_name(index))(x)
    x = k.layers.Dropout(dropout, name="edgetl_dropout")(x)
    # float32 even under a mixed_float16 policy (train.mixed_precision): a float16 softmax loses small probabilities
    outputs = k.layers.Dense(num_classes, activation="softmax", name="edgetl_logits", dtype="float32")(x)
    return BuiltBackbone(k.Model(base.input, outputs, name=f"edgetl_{spec.name}"), contract)


def block_starts(spec: BackboneSpec, layer_names: list[str]) -> list[tuple[str, str]]:
    """``(block, first layer)`` for every block of the backbone, in graph order."""
    starts: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in layer_names:
        block = spec.block_of(name)
        if block is not None and block not in seen:
            seen.add(block)
            starts.append((block, name))
    return starts


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass at batch 1, from the layers' shapes.

    Counts convolutions (grouped and depthwise too) and dense layers, which hold nearly all of a
    MobileNet/EfficientNet's arithmetic; element-wise ops, pooling and BatchNorm are not counted.
    """
    # TensorFlow loads here, when a model is built, not when backbones are listed
    from edgetl.ml._keras import keras

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


# Registration happens on import of the family modules (they import TensorFlow only when building).
from edgetl.ml.backbones import efficientnet, efficientnet_lite, mobilenet, vgg  # noqa: E402,F401
