"""Load Keras model files without running code they carry: the one way edgetl opens a Keras model.

A Keras model file is data from someone else, but its JSON config can name Python: a ``Lambda``
layer stores marshalled bytecode (HDF5) or a ``__lambda__`` object (``.keras``), and a new-style
config's ``module`` key makes tf_keras import a module and build any class in it. tf_keras applies
``safe_mode`` only to zip ``.keras`` files, so an HDF5 file (``.h5``, or HDF5 bytes named
``model.keras``) ran a Lambda's code on load. Here the config is read and checked *before*
tf_keras deserialises anything, in both formats:

- ``Lambda`` layers, serialised functions (``__lambda__``, bytecode lists, ``function_type``) are
  refused: they are code.
- Every ``class_name`` must be a tf_keras layer, initializer, regularizer or constraint, a tfmot
  quantization wrapper, quantizer or config, or one of edgetl's own layers. ``TFOpLambda`` (how
  tf_keras saves ``x + 3`` on a tensor) passes when its ``function`` is a dotted TensorFlow symbol
  name, which tf_keras looks up in TensorFlow's API table, never as code.
- ``module`` keys may name only Keras, tfmot or edgetl modules.

Then the model loads with ``safe_mode`` on (and tf_keras' safe-mode scope around the HDF5 path as
well, as a second guard). ``trust=True`` (the CLI's ``--trust-model``) skips all of it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgetl.core.errors import ArtifactError, EdgetlError
from edgetl.ml._keras import keras, tfmot
from edgetl.ml.quantize import custom_objects
from edgetl.ml.quantize import custom_objects as edgetl_objects

log = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TRUST_HINT = "edgetl does not run code from model files. If you trust this file, pass --trust-model"
#: A .keras archive's config.json larger than this is not a model config edgetl wrote.
MAX_CONFIG_BYTES = 64 * 1024 * 1024

_SAFE_MODULE_ROOTS = ("keras", "tf_keras", "tensorflow_model_optimization", "edgetl")
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
_SYMBOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: tf_keras' serialisation markers for values that are plain data.
_DATA_MARKERS = ("__tensor__", "__numpy__", "__bytes__", "__typespec__", "__tuple__", "__ellipsis__", "__slice__")


def model_file_format(path: Path) -> str:
    """``"keras-zip"`` or ``"hdf5"``, decided exactly as tf_keras' ``load_model`` decides it.

    Raises:
        ArtifactError: neither (an HDF5 file that is not Keras is caught later, by its config).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
        if str(path).endswith(".keras") and zipfile.is_zipfile(path):
            return "keras-zip"
        import h5py

        if head == HDF5_SIGNATURE or h5py.is_hdf5(str(path)):
            return "hdf5"
    except OSError as exc:
        raise ArtifactError(f"cannot read Keras model {path}: {exc.strerror or exc}") from None
    raise ArtifactError(
        f"{path} is not a Keras model: expected HDF5 (.h5) or a .keras zip archive; pass a model saved by `edgetl train` or `edgetl qat`"
    )


def read_model_config(path: Path, fmt: str) -> Any:
    """The model's architecture JSON, read without tf_keras.

    Raises:
        ArtifactError: no config (an HDF5 weights-only file), or one that is not JSON.
    """
    path = Path(path)
    try:
        if fmt == "keras-zip":
            with zipfile.ZipFile(path) as archive:
                try:
                    info = archive.getinfo("config.json")
                except KeyError:
                    raise ArtifactError(f"{path} is a zip archive without config.json; it is not a .keras model") from None
                if info.file_size > MAX_CONFIG_BYTES:
                    raise ArtifactError(f"{path}: config.json is {info.file_size} bytes, more than any model config; refusing it")
                raw: Any = archive.read(info)
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
            if raw is None:
                raise ArtifactError(
                    f"{path} is an HDF5 file with no model_config (a weights-only file?); pass a whole model saved by "
                    "`edgetl train`/`edgetl qat` (weights files go to --weights)"
                )
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        config = json.loads(raw)
        if fmt == "keras-zip" and isinstance(config, dict):
            # The optimizer and loss: tf_keras drops them unread when loading with compile=False,
            # as edgetl always does (an HDF5 file keeps them in a training_config never read here).
            config.pop("compile_config", None)
        return config
    except EdgetlError:
        raise
    except (OSError, ValueError, TypeError, RecursionError, zipfile.BadZipFile, KeyError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ArtifactError(f"cannot read the model config of {path}: {first}") from None


@functools.lru_cache(maxsize=1)
def _builtin_classes() -> frozenset[str]:
    """Class names tf_keras, tfmot and edgetl define for model configs (Lambda excluded)."""
    k = keras()
    names: set[str] = {"Functional", "Sequential", "Model", "Policy", "function", *_OP_LAYERS, *_DATA_MARKERS}
    for module in (k.layers, k.initializers, k.regularizers, k.constraints):
        names.update(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n, None), type))
    for objects in tfmot().quantization.keras.quantize_scope().custom_objects:
        names.update(objects)
    names.update(custom_objects())
    names.discard("Lambda")
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def _builtin_function_names() -> frozenset[str]:
    """Function names a config may hold as ``{"class_name": "function", "config": NAME}``: Keras'
    activations, losses and metrics (tf_keras finds such a name in the module the entry names)."""
    k = keras()
    names: set[str] = set()
    for module in (k.activations, k.losses, k.metrics):
        names.update(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None)))
    return frozenset(names)


def _safe_module(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in _SAFE_MODULE_ROOTS)


def _layer_name(node: Mapping[str, Any], fallback: str) -> str:
    config = node.get("config")
    name = config.get("name") if isinstance(config, Mapping) else None
    name = name if isinstance(name, str) else node.get("name")
    return name if isinstance(name, str) else fallback


def find_code(config: Any, allowed: frozenset[str] | set[str] = frozenset()) -> str | None:
    """Walk a model config (any nesting: models in models, wrappers' inner layers) for anything
    that is or loads code.

    Args:
        config: the parsed model config JSON.
        allowed: extra class names to accept (a caller's own custom objects).

    Returns:
        What was found, as a phrase for an error message ("a Lambda layer 'x' (Python code)"), or None.
    """
    classes = _builtin_classes() | set(allowed)
    stack: list[tuple[Any, str]] = [(config, "?")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((item, where) for item in node)
            continue
        if not isinstance(node, Mapping):
            continue
        class_name = node.get("class_name")
        if class_name is not None:
            if not isinstance(class_name, str):
                return f"a layer {where!r} whose class_name is not a name ({type(class_name).__name__})"
            name = _layer_name(node, where)
            if class_name == "Lambda":
                return f"a Lambda layer {name!r} (Python code)"
            if class_name == "__lambda__":
                return f"a serialised Python function (lambda) in layer {where!r} (Python code)"
            if class_name in _OP_LAYERS:
                function = node.get("config", {}).get("function") if isinstance(node.get("config"), Mapping) else None
                if not isinstance(function, str) or not _SYMBOL_NAME.match(function):
                    return f"a {class_name} layer {name!r} whose function is not a TensorFlow symbol name (Python code)"
            elif class_name == "function":  # tf_keras looks the name up in `module`: Python's builtins, for one
                if node.get("config") not in _builtin_function_names():
                    return f"a reference to the function {str(node.get('config'))[:60]!r} in layer {where!r} (Python code)"
            elif class_name not in classes:
                return (
                    f"an object of unknown class {class_name[:80]!r} ({name!r}); edgetl loads only tf_keras, "
                    "tensorflow-model-optimization and edgetl classes"
                )
            if class_name not in _DATA_MARKERS and class_name != "function":
                where = name
        module = node.get("module")
        if module is not None and (not isinstance(module, str) or not _safe_module(module)):
            return f"a reference to the Python module {str(module)[:80]!r} in layer {where!r} (importing it runs code)"
        if "function_type" in node or node.get("output_shape_type") == "lambda":
            return f"a serialised Python function in layer {where!r} (Python code)"
        function = node.get("function")
        if isinstance(function, list | Mapping) and class_name not in _OP_LAYERS:
            return f"serialised Python bytecode in layer {where!r} (Python code)"
        stack.extend((value, where) for value in node.values())
    return None


def check_model_config(path: Path, fmt: str, allowed: frozenset[str] | set[str] = frozenset()) -> None:
    """Raises: ArtifactError: the file's config holds code or an unknown class (see :func:`find_code`)."""
    found = find_code(read_model_config(path, fmt), allowed)
    if found is not None:
        raise ArtifactError(f"{path} contains {found}; {TRUST_HINT}")


def load_keras_model(path: Path, custom_objects: Mapping[str, Any] | None = None, *, trust: bool = False):
    """Load a Keras model file (HDF5 or ``.keras``) with no code from it run, unless ``trust``.

    Loads inside tfmot's ``quantize_scope`` with edgetl's custom objects, so float and QAT models
    both load; never compiles (a file's training config is not read).

    Args:
        path: the model file.
        custom_objects: extra ``{name: class}`` the model needs (accepted by the check too);
            default: edgetl's layers and QAT configs.
        trust: skip the checks and let tf_keras deserialise everything (Lambda code included).

    Returns:
        The Keras model.

    Raises:
        ArtifactError: code or an unknown class in the file, no model config, or a file tf_keras rejects.
    """
    path = Path(path)
    fmt = model_file_format(path)
    objects = dict(edgetl_objects())
    objects.update(custom_objects or {})
    if trust:
        log.warning("loading %s with --trust-model: code it carries (Lambda layers, custom modules) may run", path)
    else:
        check_model_config(path, fmt, set(objects))
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - a tf_keras without it: the config check above still holds
        import contextlib

        SafeModeScope = lambda safe_mode: contextlib.nullcontext()  # noqa: E731, N806
    try:
        with tfmot().quantization.keras.quantize_scope(objects), SafeModeScope(not trust):
            if fmt == "keras-zip":
                return keras().models.load_model(path, compile=False, safe_mode=not trust)
            return keras().models.load_model(path, compile=False)
    except EdgetlError:
        raise
    except Exception as exc:  # tf_keras raises ValueError, TypeError, KeyError, OSError... on a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ArtifactError(f"cannot load Keras model {path}: {first}") from None
