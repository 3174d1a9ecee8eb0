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

from edgetl import __version__
from edgetl.core.contract import PreprocessContract, check_class_names
from edgetl.core.errors import ArtifactError
from edgetl.core.fs import MARKER, read_json, write_json, write_text
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


def named_model_file(folder: Path) -> Path | None:
    """The model file an edgetl folder's ``edgetl.json`` names (``model_file``), if it is a plain
    file name of a file inside ``folder``; None otherwise (no or unreadable ``edgetl.json``, no name,
    a name that leads out of the folder, no such file)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    try:
        data = read_json(marker)
    except (OSError, ValueError):
        return None
    named = data.get("model_file") if isinstance(data, dict) else None
    # model_file is one file name inside the folder: never a path that leads out of it
    if is_plain_file_name(named) and (Path(folder) / named).is_file():
        return Path(folder) / named
    return None


#: Fields every ``edgetl.json`` has (typed attributes of :class:`ArtifactMetadata`); the rest are a stage's extras.
COMMON_FIELDS = ("schema_version", "kind", "model_file", "backbone", "class_names", "preprocessing", "versions")


@dataclass
class ArtifactMetadata:
    """``edgetl.json``: the typed model every writer (train, qat, export, build) and reader uses.

    The common fields are attributes; what one stage adds (``fingerprint``, ``accuracy``,
    ``graph``, ...) is in ``extra``. Keys are written in the order they were given
    (``order``), so a writer decides its file's layout once, where it creates the metadata.
    It reads like a dict too (``meta["size_bytes"]``, ``meta.get("kind")``, ``meta.update({...})``).
    """

    kind: str
    model_file: str
    class_names: list[str]
    preprocessing: dict[str, Any]
    backbone: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    _contract: PreprocessContract | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, **fields: Any) -> ArtifactMetadata:
        """Metadata with ``fields`` in the order given (``schema_version`` first unless given).

        ``kind``, ``model_file``, ``class_names`` and ``preprocessing`` are required.
        """
        order = list(fields) if "schema_version" in fields else ["schema_version", *fields]
        common = {k: fields[k] for k in COMMON_FIELDS if k in fields}
        return cls(**common, extra={k: v for k, v in fields.items() if k not in COMMON_FIELDS}, order=order)

    # ---- dict-like access, in the written layout ----
    def __getitem__(self, key: str) -> Any:
        if key not in self.order:
            raise KeyError(key)
        return getattr(self, key) if key in COMMON_FIELDS else self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in COMMON_FIELDS:
            setattr(self, key, value)
        else:
            self.extra[key] = value
        if key not in self.order:
            self.order.append(key)

    def __contains__(self, key: object) -> bool:
        return key in self.order

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.order else default

    def update(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            self[key] = value

    @property
    def contract(self) -> PreprocessContract:
        if self._contract is None:
            self._contract = PreprocessContract.from_dict(self.preprocessing, source=MARKER)
        return self._contract

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in ``order``."""
        return {key: self[key] for key in self.order}

    def write(self, folder: Path) -> Path:
        """Write ``<folder>/edgetl.json`` (atomically); it marks the folder complete, so it goes last."""
        path = Path(folder) / MARKER
        write_json(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, data: Any, source: object) -> ArtifactMetadata:
        """Validate a parsed ``edgetl.json`` (class names, contract, ``model_file``) and type it.

        Raises:
            ArtifactError, TypeError, KeyError, ValueError: what :meth:`read` turns into one line.
        """
        if not isinstance(data, dict):
            raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
        class_names, contract = checked_metadata(data["class_names"], data["preprocessing"], source)
        model_file = data.get("model_file")
        if model_file is not None and not is_plain_file_name(model_file):
            raise ArtifactError(
                f"{source}: model_file {str(model_file)[:80]!r} is not a file name inside its folder; "
                "edgetl reads a model only from the folder its edgetl.json is in"
            )
        meta = cls(
            kind=data.get("kind"), model_file=model_file, class_names=class_names, preprocessing=data["preprocessing"],
            extra={k: v for k, v in data.items() if k not in COMMON_FIELDS}, order=list(data), _contract=contract,
        )
        for key in ("schema_version", "backbone", "versions"):
            if key in data:
                setattr(meta, key, data[key])
        return meta

    @classmethod
    def read(cls, path: Path) -> ArtifactMetadata:
        """The metadata of ``path``: a model file, an edgetl folder, or the ``edgetl.json`` itself.

        Raises:
            ArtifactError: no ``edgetl.json`` there, or one without valid labels/contract.
        """
        json_path = metadata_path_for(path)
        if not json_path.is_file():
            inside = _artifact_folders_in(Path(path))
            if inside:  # a build folder (build/<name>/) holds one artifact folder per target and stage
                shown_names = ", ".join(str(folder) for folder in inside[:4]) + (" ..." if len(inside) > 4 else "")
                raise ArtifactError(
                    f"no {MARKER} in {path}: it is a folder of edgetl artifacts; pass one of them: {shown_names}"
                )
            raise ArtifactError(
                f"no {MARKER} beside {path}: edgetl needs it for the labels and preprocessing; "
                "use a model written by edgetl (train/qat/export/build output folders)"
            )
        try:
            return cls.from_json(read_json(json_path), json_path)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ArtifactError(f"{json_path} is not valid edgetl metadata ({type(exc).__name__}: {shown(str(exc))})") from None


def _artifact_folders_in(folder: Path) -> list[Path]:
    """Subfolders of ``folder`` that hold an ``edgetl.json`` (the targets first: what a user evaluates)."""
    if not folder.is_dir():
        return []
    found = sorted(sub for sub in folder.iterdir() if sub.is_dir() and not sub.name.startswith(".") and (sub / MARKER).is_file())
    return sorted(found, key=lambda sub: (sub.name in ("float", "qat"), sub.name))


def read_model_info(artifact: Path) -> ModelInfo:
    """Read class names and contract for ``artifact`` (a model file or an edgetl folder).

    Raises:
        ArtifactError: no ``edgetl.json`` beside the model, or one without labels/contract.
    """
    meta = ArtifactMetadata.read(artifact)
    return ModelInfo(
        class_names=meta.class_names,
        contract=meta.contract,
        backbone=meta.backbone if isinstance(meta.backbone, str) else None,
        extra=meta.to_json(),
    )


#: Name of the ``Model.metadata`` entry inside a ``.tflite`` that holds edgetl's metadata (JSON).
EMBEDDED_METADATA_NAME = "edgetl"
EMBEDDED_FORMAT = "edgetl-embedded-metadata"


def embedded_metadata(class_names: list[str], contract: PreprocessContract, *, target: str | None = None) -> bytes:
    """What a model file carries inside itself so it needs no ``edgetl.json``: labels and contract.

    Deterministic (no time stamps, sorted keys), so exporting the same model twice gives the same bytes.
    """
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
    return write_text(path, labels_text(class_names))
