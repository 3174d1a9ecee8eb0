"""The user's own Keras model as a backbone: ``--model path/to/model.keras``.

A ``.keras`` (or full-model ``.h5``) file is hostile input like any other model file: it is opened
with :func:`edgetl.ml.keras_safety.load_keras_model`, which refuses Lambda layers, serialised
functions and classes outside Keras/tfmot/edgetl before anything is deserialised (``--trust-model``
lifts that for a file you made yourself).

What the file may hold:

- **a classifier** (``backbone -> pooling/flatten -> [dropout] -> dense [-> softmax]``): its head
  is found by walking back from the output through head-type layers to the last 4-D feature map,
  cut off, and replaced by edgetl's head for the user's classes;
- **a backbone** (output a 4-D feature map, or pooled features): edgetl's head is added.

Nested models (``Sequential([MobileNetV2(include_top=False), GlobalAveragePooling2D(), Dense(5)])``,
the usual way a Keras classifier is written) are inlined into one flat graph, which is what tfmot
needs. Input scaling at the start of the graph (``Rescaling``, ``Normalization``) is folded into the
preprocessing contract as for the registered backbones; with none, the model is assumed to take
``[-1, 1]`` inputs and a warning says so. The file's weights are the pretrained weights: fine-tuning
then runs freeze-then-unfreeze exactly as for a registered backbone, unfreezing the top quarter of
the layers by default (``--unfreeze``/``--unfreeze-from`` choose otherwise). QAT uses the first
edgetl recipe that covers every layer; when none does, QAT refuses with the layer named (PTQ int8,
``--mode ptq``, needs no recipe).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ConfigError, EdgetlError, ExportError
from edgetl.core.fingerprint import file_sha256
from edgetl.ml.backbones.graph import _inbound, rebuild, to_edgetl_form
from edgetl.ml.backbones.spec import BACKBONES, BackboneSpec, BuiltBackbone
from edgetl.ml.quantize import QAT_RECIPES, plan_quantization

log = logging.getLogger(__name__)

#: File name endings read as a model file rather than a registered backbone name.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: Layers a classifier head is made of (walked back from the output until a 4-D feature map).
HEAD_TYPES = frozenset({
    "Dense", "Dropout", "Activation", "Softmax", "Flatten", "Reshape",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization", "LayerNormalization",
})
#: Share of the backbone's layers (from the top) that fine-tuning trains by default.
DEFAULT_UNFREEZE_SHARE = 0.25
#: Contract for a model with no input scaling in its graph: pixels to [-1, 1].
ASSUMED_MEAN = (127.5, 127.5, 127.5)
ASSUMED_STD = (127.5, 127.5, 127.5)


def is_model_path(name: str) -> bool:
    """Whether ``--model`` names a file (a path ending in .keras/.h5) rather than a registered backbone."""
    return str(name).lower().endswith(MODEL_SUFFIXES) or ("/" in str(name) and str(name) not in BACKBONES)


def get_backbone(name: str, *, input_size: int | None = None, trust_model: bool = False) -> BackboneSpec:
    """The registered backbone ``name``, or a spec made from the user's model file at ``name``.

    Raises:
        ConfigError: an unknown name (listing the registered ones), a missing file, or a model edgetl cannot use.
        ArtifactError: a model file that carries code (without ``trust_model``) or that tf_keras rejects.
    """
    if not is_model_path(name):
        return BACKBONES.get(name)
    path = check_model_file(name)
    return _user_spec(str(path.resolve()), file_sha256(path), input_size, trust_model)


def check_model_file(name: str) -> Path:
    """The model file ``--model`` names, which must exist; a SavedModel folder is refused with the way out.

    Raises:
        ConfigError: no such file, or a SavedModel folder (its graph functions are TensorFlow
            programs that run when called: edgetl cannot vet them the way it vets a .keras config).
    """
    path = Path(name).expanduser()
    if path.is_dir() and (path / "saved_model.pb").is_file():
        raise ConfigError(
            f"--model {path} is a SavedModel folder, which edgetl does not open: its functions are TensorFlow "
            "programs that would run unchecked; if you trust it, load it yourself and save it with "
            "model.save('model.keras'), then pass that file"
        )
    if not path.is_file():
        raise ConfigError(
            f"model file {path} does not exist; pass --model with a registered backbone "
            f"({', '.join(BACKBONES.names())}) or an existing .keras/.h5 model file"
        )
    return path


def model_file_digest(name: str) -> str | None:
    """SHA-256 of the model file ``--model`` names (for stage fingerprints), None for a registered backbone."""
    if not is_model_path(name):
        return None
    path = Path(name).expanduser()
    return file_sha256(path) if path.is_file() else None


@functools.lru_cache(maxsize=4)
def _user_spec(path: str, digest: str, input_size: int | None, trust_model: bool) -> BackboneSpec:
    """Read the file once per (path, content, size): shape, head, contract, unfreeze point, QAT recipe."""
    flat, size, removed = load_user_backbone(Path(path), input_size, trust_model=trust_model)
    model, mean, std = _edgetl_form(flat, Path(path))
    names = [layer.name for layer in model.layers[1:]]
    with_weights = [layer.name for layer in model.layers[1:] if layer.weights]
    start = with_weights[int(len(with_weights) * (1 - DEFAULT_UNFREEZE_SHARE))] if with_weights else names[-1]
    recipe = _covering_recipe(model)
    stem = Path(path).name
    log.info(
        "%s: %d layers, %d px input, head %s; fine-tuning from %s by default; QAT recipe %s",
        stem, len(model.layers), size, ("removed: " + ", ".join(removed)) if removed else "none found (added)", start,
        recipe or "none covers it (use --mode ptq)",
    )
    built = BuiltBackbone(model, PreprocessContract(input_size=size, mean=mean, std=std))

    def builder(input_size: int, alpha: float | None, weights: str | None) -> BuiltBackbone:
        # The file is read once; every build gets a fresh copy with the file's weights.
        copy, _, _ = _edgetl_form(load_user_backbone(Path(path), size, trust_model=trust_model)[0], Path(path))
        return BuiltBackbone(copy, built.contract)

    return BackboneSpec(
        name=path,
        builder=builder,
        default_input_size=size,
        min_input_size=size,
        pretrained_sizes=(size,),
        alphas=(),
        default_alpha=None,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        unfreeze_from=start,
        block_pattern=r"^(block_?\d+[a-z]?|stage_?\d+|expanded_conv_\d+|conv\d+_block\d+)",
        weights_file=None,
        qat_recipe=recipe or "plain",
        targets=("tflite-int8", "tflite-int16x8", "tflite-dynamic", "tflite-fp16", "tflite-fp32", "onnx-int8", "onnx-fp32"),
        description=f"your model {stem} (sha256 {digest[:12]})",
        extra={"user_file": path, "sha256": digest, "head_removed": removed, "qat_covered": recipe is not None},
    )


def load_user_backbone(path: Path, input_size: int | None, *, trust_model: bool = False) -> tuple[Any, int, list[str]]:
    """The file's model, inlined flat, cut below its head.

    Returns:
        ``(backbone model, square input size, names of the head layers removed)``.
    """
    # TensorFlow loads here, when a user's model is opened, not when the config is checked
    from edgetl.ml._keras import keras
    from edgetl.ml.keras_safety import load_keras_model  # imports tf_keras

    k = keras()
    model = load_keras_model(path, trust=trust_model)
    if not isinstance(model, k.Model):
        raise ConfigError(f"{path} holds no Keras model; save a model with model.save('model.keras')")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; edgetl needs an image classifier with one of each")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3:
        raise ConfigError(f"{path} takes input of shape {shape}; edgetl needs images (height, width, 3)")
    height, width, channels = shape
    if channels != 3:
        raise ConfigError(f"{path} takes {channels}-channel images; edgetl's --model file needs RGB (3 channels)")
    if height is not None and width is not None and height != width:
        raise ConfigError(f"{path} takes {height}x{width} images; edgetl's --model file needs a square input")
    fixed = height if height is not None else width
    if fixed is not None and input_size is not None and input_size != fixed:
        raise ConfigError(f"{path} was built for {fixed} px input; drop --input-size or pass --input-size {fixed}")
    size = int(fixed or input_size or 224)
    start = k.Input(shape=(size, size, 3), name="image")
    try:
        (out,) = _inline(k, model, [start])
        flat = k.Model(start, out, name="user_backbone")
    except EdgetlError:
        raise
    except Exception as exc:  # Keras: duplicate layer names after inlining, shapes that do not fit
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot turn {path} into one flat graph: {first}") from None
    cut, removed = _find_head(flat)
    if cut is not flat.output:
        flat = k.Model(flat.input, cut, name="user_backbone")
    if len(flat.output.shape) != 4:
        raise ConfigError(
            f"{path}: no 4-D feature map under the head (output shape {tuple(flat.output.shape)}); "
            "pass a classifier whose head sits on a convolutional backbone, or the backbone itself"
        )
    # Fresh copies of the layers (weights copied): the file's layers now have two call sites,
    # and Keras reads a shared layer's .output from its first one, the file's own graph.
    return rebuild(flat, hard_swish_layers=False, name="user_backbone"), size, removed


def _inline(k, model, inputs: list[Any]) -> list[Any]:
    """Call ``model``'s layers on ``inputs`` one by one, nested models included, giving flat tensors."""
    if isinstance(model, k.Sequential):
        (x,) = inputs
        for layer in model.layers:
            x = _inline(k, layer, [x])[0] if isinstance(layer, k.Model) else _call(k, layer, [x], {})
        return [x]
    config = model.get_config()
    tensors = {entry[0]: tensor for entry, tensor in zip(config["input_layers"], inputs, strict=True)}
    for layer_config in config["layers"]:
        layer = model.get_layer(layer_config["name"])
        if isinstance(layer, k.layers.InputLayer):
            continue
        sources = _inbound(layer_config)
        args = [tensors[source] for source, _ in sources]
        if isinstance(layer, k.Model):
            outs = _inline(k, layer, args)
            if len(outs) != 1:
                raise ConfigError(f"nested model {layer.name!r} has {len(outs)} outputs; edgetl inlines single-output models only")
            tensors[layer.name] = outs[0]
        else:
            kwargs = {key: value for key, value in sources[0][1].items() if key != "name"} if sources and type(layer).__name__ == "TFOpLambda" else {}
            tensors[layer.name] = _call(k, layer, args, kwargs)
    return [tensors[entry[0]] for entry in config["output_layers"]]


def _call(k, layer, args: list[Any], kwargs: dict[str, Any]):
    if len(getattr(layer, "_inbound_nodes", [])) > 1 and not isinstance(layer, k.layers.InputLayer):
        log.debug("layer %s is shared; calling it again", layer.name)
    return layer(args[0] if len(args) == 1 else args, **kwargs)


def _find_head(model) -> tuple[Any, list[str]]:
    """The last 4-D tensor under the classifier head, and the head layers above it (output first)."""
    removed: list[str] = []
    tensor = model.output
    while len(tensor.shape) != 4:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            break
        layer = history.layer
        if type(layer).__name__ not in HEAD_TYPES:
            raise ConfigError(
                f"cannot find the head of the model: layer {layer.name!r} ({type(layer).__name__}) sits between "
                "the output and the last feature map; save the backbone alone (a 4-D output) and let edgetl add the head"
            )
        inbound = layer._inbound_nodes[history.node_index].keras_inputs
        if len(inbound) != 1:
            raise ConfigError(f"head layer {layer.name!r} has {len(inbound)} inputs; save the backbone alone and let edgetl add the head")
        removed.append(layer.name)
        tensor = inbound[0]
    return tensor, removed


def _edgetl_form(flat, path: Path) -> tuple[Any, tuple[float, ...], tuple[float, ...]]:
    """Input scaling folded into the contract; the model rebuilt with real layers, weights copied."""
    model, mean, std = to_edgetl_form(flat, name="edgetl_user")
    if mean == (0.0, 0.0, 0.0) and std == (1.0, 1.0, 1.0):
        log.warning(
            "%s has no input scaling layer (Rescaling/Normalization) at its input: assuming it takes pixels "
            "scaled to [-1, 1]; if it was trained on other inputs, put that scaling in the model and save it again",
            path.name,
        )
        return model, ASSUMED_MEAN, ASSUMED_STD
    return model, mean, std


def _covering_recipe(model) -> str | None:
    """The first QAT recipe (plain first) under which tfmot can annotate every layer, or None."""
    names = ["plain", *(name for name in QAT_RECIPES.names() if name != "plain")]
    for name in names:
        try:
            plan_quantization(model, name)
        except ExportError:
            continue
        return name
    return None
