"""The metadata that travels with every model: labels, preprocessing contract, provenance.

A model file ``X`` has its metadata in ``edgetl.json`` in the same folder (and, for run
folders, the folder itself). Every ``.tflite`` edgetl writes also carries its labels and
preprocessing contract inside itself (a ``Model.metadata`` entry named ``edgetl``, see
:func:`embedded_metadata`), as every ``.onnx`` does in its ``metadata_props``. Readers here need
no TensorFlow.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from edgetl.core.contract import PreprocessContract, check_class_names
from edgetl.core.errors import ArtifactError
from edgetl.core.fs import MARKER, read_json
from edgetl.core.text import shown

SCHEMA_VERSION = 1

_VERSIONED = ("edgetl", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "onnx", "onnxruntime", "tf2onnx", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class ModelInfo:
    """What any consumer of a model needs: class names and the preprocessing contract."""

    class_names: list[str]
    contract: PreprocessContract
    backbone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def checked_metadata(class_names: Any, preprocessing: Any, source: object) -> tuple[list[str], PreprocessContract]:
    """Class names and contract from metadata, validated strictly: the one check every reader uses
    (``edgetl.json``, a ``.tflite``'s embedded entry, an ``.onnx`` file's ``metadata_props``) and every
    writer repeats, so edgetl never writes what it would refuse.

    Raises:
        ArtifactError: one line naming ``source``, the field, the value and what is allowed.
    """
    names = check_class_names(class_names, source=source)
    return names, PreprocessContract.from_dict(preprocessing, source=source)


def is_plain_file_name(name: object) -> bool:
    """Whether ``name`` (a ``model_file`` from metadata) names a file directly inside its folder, not a path out of it."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def metadata_path_for(artifact: Path) -> Path:
    artifact = Path(artifact)
    return artifact / MARKER if artifact.is_dir() else artifact.parent / MARKER


def read_model_info(artifact: Path) -> ModelInfo:
    """Read class names and contract for ``artifact`` (a model file or an edgetl folder).

    Raises:
        ArtifactError: no ``edgetl.json`` beside the model, or one without labels/contract.
    """
    path = metadata_path_for(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"no {MARKER} beside {artifact}: edgetl needs it for the labels and preprocessing; "
            "use a model written by edgetl (train/qat/export/build output folders)"
        )
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
        class_names, contract = checked_metadata(data["class_names"], data["preprocessing"], path)
        model_file = data.get("model_file")
        if model_file is not None and not is_plain_file_name(model_file):
            raise ArtifactError(
                f"{path}: model_file {str(model_file)[:80]!r} is not a file name inside its folder; "
                "edgetl reads a model only from the folder its edgetl.json is in"
            )
        backbone = data.get("backbone")
        return ModelInfo(
            class_names=class_names,
            contract=contract,
            backbone=backbone if isinstance(backbone, str) else None,
            extra=data,
        )
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ArtifactError(f"{path} is not valid edgetl metadata ({type(exc).__name__}: {shown(str(exc))})") from None


#: Name of the ``Model.metadata`` entry inside a ``.tflite`` that holds edgetl's metadata (JSON).
EMBEDDED_METADATA_NAME = "edgetl"
EMBEDDED_FORMAT = "edgetl-embedded-metadata"


def embedded_metadata(class_names: list[str], contract: PreprocessContract, *, target: str | None = None) -> bytes:
    """What a model file carries inside itself so it needs no ``edgetl.json``: labels and contract.

    Deterministic (no time stamps, sorted keys), so exporting the same model twice gives the same bytes.
    """
    from edgetl import __version__

    class_names = check_class_names(class_names, source="the class names being embedded")
    data = {
        "format": EMBEDDED_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "edgetl_version": __version__,
        "target": target,
        "class_names": class_names,
        "preprocessing": contract.to_dict(),
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def model_info_from_embedded(payload: bytes, source: Path | str) -> ModelInfo:
    """Read back what :func:`embedded_metadata` wrote.

    Raises:
        ArtifactError: the payload is not edgetl metadata.
    """
    try:
        data = json.loads(bytes(payload).decode("utf-8"))
        if data.get("format") != EMBEDDED_FORMAT:
            raise ValueError(f"format is {shown(data.get('format'))}")
        class_names, contract = checked_metadata(data["class_names"], data["preprocessing"], f"{source} (embedded {EMBEDDED_METADATA_NAME!r} metadata)")
        target = data.get("target")
        return ModelInfo(
            class_names=class_names,
            contract=contract,
            extra={"kind": "tflite", "embedded_metadata": data, "target": target if isinstance(target, str) else None},
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ArtifactError(f"{source} carries an {EMBEDDED_METADATA_NAME!r} metadata entry that is not edgetl metadata ({shown(str(exc))})") from None


def labels_text(class_names: list[str]) -> str:
    """``labels.txt``: one class name per line, in output order; exactly one line per class.

    Raises:
        ArtifactError: a name that would not be one line (see :func:`edgetl.core.contract.check_class_names`).
    """
    names = check_class_names(class_names, source="the labels being written")
    text = "\n".join(names) + "\n"
    if text.splitlines() != names:  # check_class_names refuses every line break; this keeps it so
        raise ArtifactError(f"labels.txt would not hold one line per class for {shown(names)}")
    return text


def write_labels(path: Path, class_names: list[str]) -> Path:
    from edgetl.core.fs import write_text

    return write_text(path, labels_text(class_names))
