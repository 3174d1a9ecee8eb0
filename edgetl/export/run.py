"""The one export -> verify -> stamp step every export goes through (``edgetl export``, ``build``
and its PTQ comparison): convert with the target's registered exporter, write labels and the
typed ``edgetl.json`` (:class:`~edgetl.core.metadata.ArtifactMetadata`), check the artifact
against the Keras model, and stamp what the caller measured into the metadata."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.contract import PreprocessContract
from edgetl.core.metadata import ArtifactMetadata, package_versions, write_labels
from edgetl.core.progress import Progress
from edgetl.export.targets import TARGETS
from edgetl.export.verify import verify_artifact
from edgetl.ml.quantize import graph_ptq_model, is_quantized

log = logging.getLogger(__name__)


def export_artifact(
    model,
    target_name: str,
    out_dir: Path,
    *,
    class_names: list[str],
    contract: PreprocessContract,
    representative: np.ndarray | None,
    config: BuildConfig,
    extra_metadata: dict[str, Any] | None = None,
    write_marker: bool = True,
) -> tuple[Path, ArtifactMetadata]:
    """Convert ``model`` for ``target_name`` into ``out_dir`` with labels and metadata.

    Returns:
        The artifact path and the metadata (written to ``edgetl.json`` when ``write_marker``).
    """
    target = TARGETS.get(target_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quantization = None
    if target.dtype == "int8" and representative is not None:
        if is_quantized(model):
            quantization = "learned in quantization-aware training"
        else:
            graph_ptq = graph_ptq_model(model, representative, contract)
            quantization = (
                f"TFLite converter calibration on {len(representative)} training images" if graph_ptq is None
                else f"calibrated on {len(representative)} training images through the QAT graph (hard-swish kept as int8 ADD/MUL, which XNNPACK runs)"
            )
            model = graph_ptq if graph_ptq is not None else model
    artifact, io = target.export_function()(
        model, target, out_dir, class_names=class_names, contract=contract, representative=representative,
        io_dtype=config.export.io_dtype, opset=config.export.opset,
    )
    write_labels(out_dir / "labels.txt", class_names)
    meta = ArtifactMetadata.create(
        kind=target.format,
        target=target.name,
        model_file=target.filename,
        dtype=target.dtype,
        runtime=target.runtime,
        backbone=config.model.name,
        class_names=class_names,
        preprocessing=contract.to_dict(),
        **io,
        size_bytes=artifact.stat().st_size,
        **({"int8_ranges": quantization} if quantization else {}),
        note=target.note,
        versions=package_versions(),
        config=config.to_toml_dict(),
        **(extra_metadata or {}),
    )
    if target.dtype == "int8" and not meta["graph"]["full_integer"]:
        names = sorted({op["op"] for op in meta["graph"]["float_ops"]})
        meta["graph"]["float_ops_reason"] = "the converter found no int8 kernel for these ops and kept them in float"
        log.warning(
            "%s is not full-integer: operators %s run in float, so an int8-only accelerator or TFLite Micro cannot run it; "
            "use a backbone that quantizes fully (`edgetl backbones` lists them; mobilenet_v2 does) or ship a float target",
            _fs.final_path(artifact), ", ".join(names),
        )
    if write_marker:
        meta.write(out_dir)
    return artifact, meta


@dataclass
class VerifiedExport:
    """An exported, verified artifact whose ``edgetl.json`` is written by :meth:`stamp`.

    Attributes:
        verification: images, top-1 agreement and max |diff| against the Keras model.
        probs: the artifact's outputs on the verification images (for its accuracy).
        verify_s: seconds the verification took.
    """

    artifact: Path
    folder: Path
    metadata: ArtifactMetadata
    verification: dict[str, Any]
    probs: np.ndarray
    verify_s: float = 0.0

    def stamp(self, fields: dict[str, Any] | None = None) -> ArtifactMetadata:
        """Add ``fields`` (in order) to the metadata and write ``edgetl.json``: the folder is complete."""
        self.metadata.update(fields or {})
        self.metadata.write(self.folder)
        return self.metadata


def export_verified(
    model,
    target_name: str,
    folder: Path,
    *,
    class_names: list[str],
    contract: PreprocessContract,
    representative: np.ndarray | None,
    config: BuildConfig,
    pixels: np.ndarray,
    progress: Progress | None = None,
) -> VerifiedExport:
    """Export ``model`` for ``target_name`` into ``folder`` and verify it against ``model`` on
    ``pixels`` (the validation images). ``edgetl.json`` is not written yet: the caller adds what it
    measured and calls :meth:`VerifiedExport.stamp`. ``progress`` gets the end of the export and
    the start of the verification.

    Raises:
        ConfigError, ExportError, VerificationError, MissingDependencyError.
    """
    target = TARGETS.get(target_name)
    artifact, meta = export_artifact(
        model, target.name, folder, class_names=class_names, contract=contract,
        representative=representative, config=config, write_marker=False,
    )
    if progress is not None:
        progress("export", 1, 1, target.name)
        progress("verify", 0, 1, "")
    start = time.perf_counter()
    verification, probs = verify_artifact(artifact, target, model, pixels, contract)
    return VerifiedExport(artifact, Path(folder), meta, verification, probs, time.perf_counter() - start)
