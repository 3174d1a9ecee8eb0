"""The one registry of artifact formats: for each, its suffixes, how to open it, its runtime, its metadata.

Every "which runtime runs this file?" question in edgetl is answered here, by the file's suffix:
``evaluate``/``predict``/``package`` open a model with :func:`open_model`, read its labels and
preprocessing with :func:`model_info_for`, ``bench`` takes the runtime name and version,
``inspect`` finds its inspector. A new format is one :class:`ArtifactFormat` entry (and the
runtime module it names).

Entries refer to code in higher layers (the inspector in :mod:`edgetl.device`, the Keras predictor
in :mod:`edgetl.ml`) by module path, ``"package.module:function"``, imported with :mod:`importlib`
only when a file of that format is inspected or evaluated: the TensorFlow-free side never imports
TensorFlow, and a device install without it still evaluates ``.tflite`` and ``.onnx`` files.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.core.install import TRAIN_INSTALL, missing_modules
from edgetl.core.metadata import (
    EMBEDDED_METADATA_NAME,
    ModelInfo,
    checked_metadata,
    metadata_path_for,
    model_info_from_embedded,
    read_model_info,
)
from edgetl.core.registry import Registry
from edgetl.runtime.litert import LiteRTModel, _litert_version
from edgetl.runtime.model import LoadedModel
from edgetl.runtime.onnxruntime import ORTModel, ort_version
from edgetl.runtime.tflite_file import tflite_metadata


@dataclass(frozen=True)
class ArtifactFormat:
    """One artifact format: capabilities as data, behaviour as functions or module paths.

    Attributes:
        name: registry name, also the ``kind`` evaluation reports (``"tflite"``, ``"onnx"``, ``"keras"``).
        suffixes: file suffixes (lower case) of this format.
        runtime: the TensorFlow-free runtime that runs it (``"litert"``, ``"onnxruntime"``); None: none does.
        runtime_label: how reports name that runtime.
        runtime_package: the pip distribution of that runtime (what a packaged app installs).
        open: ``open(path, num_threads=...)`` -> a :class:`~edgetl.runtime.model.LoadedModel`; None: not openable here.
        version: imports the runtime's package (so a later timing excludes the import) and returns its version.
        embedded_info: reads the labels and preprocessing the file carries itself (no ``edgetl.json``).
        inspector: ``"module:function"`` that ``edgetl inspect`` calls with the path; None: not inspectable.
        predictor: ``"module:function"`` making a pixels -> probabilities function for formats without
            a TensorFlow-free runtime: ``predictor(path, contract, trust_model=...)``.
        requires: modules that must be importable to evaluate it (checked before ``predictor`` is imported).
        install: the command that installs what ``requires`` names.
    """

    name: str
    suffixes: tuple[str, ...]
    runtime: str | None = None
    runtime_label: str = ""
    runtime_package: str = ""
    open: Callable[..., LoadedModel] | None = None
    version: Callable[[], str] | None = None
    embedded_info: Callable[[Path], ModelInfo] | None = None
    inspector: str | None = None
    predictor: str | None = None
    requires: tuple[str, ...] = ()
    install: str = ""


def _litert_package_version() -> str:
    import ai_edge_litert.interpreter  # noqa: F401 - imported here, as ort_version() imports onnxruntime

    return _litert_version()


def _tflite_embedded_info(artifact: Path) -> ModelInfo:
    entries = tflite_metadata(artifact)
    if EMBEDDED_METADATA_NAME not in entries:
        raise ArtifactError(
            f"{artifact} has no edgetl.json beside it and no embedded {EMBEDDED_METADATA_NAME!r} metadata (labels, preprocessing); "
            "evaluate a .tflite exported by edgetl, or put its edgetl.json beside it"
        )
    return model_info_from_embedded(entries[EMBEDDED_METADATA_NAME], artifact)


def _onnx_embedded_info(artifact: Path) -> ModelInfo:
    props = ORTModel(artifact).metadata
    try:
        labels, preprocessing = json.loads(props["labels"]), json.loads(props["preprocessing"])
    except (KeyError, ValueError, TypeError, RecursionError):
        raise ArtifactError(
            f"{artifact} has no edgetl.json beside it and no `labels`/`preprocessing` in its metadata_props; "
            "evaluate an ONNX model exported by edgetl, or put its edgetl.json beside it"
        ) from None
    class_names, contract = checked_metadata(labels, preprocessing, f"{artifact} (metadata_props)")
    return ModelInfo(class_names=class_names, contract=contract, extra={"kind": "onnx", "metadata_props": props})


FORMATS: Registry[ArtifactFormat] = Registry("artifact format")
FORMATS.register("tflite", ArtifactFormat(
    "tflite", (".tflite",), runtime="litert", runtime_label="LiteRT", runtime_package="ai-edge-litert",
    open=LiteRTModel, version=_litert_package_version,
    embedded_info=_tflite_embedded_info, inspector="edgetl.device.inspect_tflite:inspect_tflite",
))
FORMATS.register("onnx", ArtifactFormat(
    "onnx", (".onnx",), runtime="onnxruntime", runtime_label="ONNX Runtime", runtime_package="onnxruntime",
    open=ORTModel, version=ort_version,
    embedded_info=_onnx_embedded_info, inspector="edgetl.device.inspect_onnx:inspect_onnx",
))
FORMATS.register("keras", ArtifactFormat(
    "keras", (".keras", ".h5"), predictor="edgetl.ml.predictor:keras_predictor",
    requires=("tensorflow", "tf_keras"), install=TRAIN_INSTALL,
))


def find_format(path: str | os.PathLike[str]) -> ArtifactFormat | None:
    """The format a file's suffix names, or None when no registered format has that suffix."""
    suffix = Path(path).suffix.lower()
    return next((fmt for _, fmt in FORMATS.items() if suffix in fmt.suffixes), None)


def runtime_format_for(path: str | os.PathLike[str]) -> ArtifactFormat | None:
    """The format of a file that a TensorFlow-free runtime opens (``.tflite``, ``.onnx``), else None."""
    fmt = find_format(path)
    return fmt if fmt is not None and fmt.open is not None else None


def known_suffixes(has: Callable[[ArtifactFormat], object] = lambda fmt: True) -> list[str]:
    """Suffixes of the registered formats for which ``has(format)`` is true, sorted."""
    return sorted(s for _, fmt in FORMATS.items() if has(fmt) for s in fmt.suffixes)


def artifact_kind(path: Path) -> str:
    """The format name of an artifact: by suffix, and ``"keras"`` for an edgetl run folder.

    Raises:
        ArtifactError: no registered format has this suffix.
    """
    path = Path(path)
    if path.is_dir():
        return "keras"
    fmt = find_format(path)
    if fmt is None:
        raise ArtifactError(f"cannot evaluate {path}: expected a .tflite, .onnx, .keras or .h5 file or an edgetl run folder")
    return fmt.name


def open_model(artifact: Path, *, num_threads: int | None = None) -> LoadedModel:
    """A runtime model (``LiteRTModel`` or ``ORTModel``) for a ``.tflite`` or ``.onnx`` file."""
    fmt = FORMATS.get(artifact_kind(Path(artifact)))
    if fmt.open is None:
        raise ArtifactError(f"{artifact} is not a .tflite or .onnx file")
    return fmt.open(artifact, num_threads=num_threads)


def model_info_for(artifact: Path) -> ModelInfo:
    """Labels and contract: ``edgetl.json`` beside the model, else what the file carries itself
    (a ``.tflite``'s embedded ``edgetl`` metadata entry, an ``.onnx`` file's ``metadata_props``)."""
    artifact = Path(artifact)
    try:
        return read_model_info(artifact)
    except ArtifactError:
        fmt = FORMATS.get(artifact_kind(artifact))
        # a broken edgetl.json beside a .tflite is reported as such, not papered over
        if fmt.embedded_info is None or (fmt.name == "tflite" and metadata_path_for(artifact).is_file()):
            raise
    return fmt.embedded_info(artifact)


def check_requirements(fmt: ArtifactFormat, artifact: Path, action: str = "evaluating") -> None:
    """Refuse early, in one line, when what ``fmt`` needs is not installed.

    Raises:
        ConfigError: a module of ``fmt.requires`` is missing; the message names ``fmt.install``.
    """
    missing = missing_modules(fmt.requires)
    if missing:
        raise ConfigError(
            f"{action} {artifact} (a {fmt.name} model) needs {', '.join(missing)}, not installed here: {fmt.install}"
        )


def resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (the module is imported now)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
