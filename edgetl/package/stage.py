"""``package``: a model as an app needs it, checked on the runtime the app will use.

``package(artifact, "c" | "android" | "ios" | "python", out)`` writes one folder:

* ``c``: the ``.tflite`` as a 16-byte aligned C array (``model_data.h``/``model_data.cc``),
  ``labels.h``, ``model_settings.h`` (tensor shapes, dtypes, quantization, the preprocessing
  contract, a pixel -> input lookup table, the tensor arena size) and ``model_ops.h`` (a
  ``tflite::MicroMutableOpResolver<N>`` that registers exactly the operators the model uses).
  The arena is not estimated: the model is loaded in TFLite Micro's own interpreter
  (:mod:`edgetl.runtime.tflm`) and the smallest arena that allocates is found by bisection;
  a stated margin is added. TFLite Micro's int8 outputs are compared with LiteRT's on the same
  inputs, and the result is recorded in ``package.json``.
* ``android`` / ``ios`` / ``python``: the model file, ``labels.txt``, ``edgetl.json`` and a
  README with loading code for LiteRT (Kotlin, Swift) or ai-edge-litert / ONNX Runtime (Python,
  plus a runnable ``predict.py``), every constant of the preprocessing contract filled in.

Everything is checked before anything is written (budgets, dtypes, operators), then written into
a temporary folder that replaces ``out`` only when complete.

This module is the stage (arguments, checks, ``package.json``, the atomic write, ``build``'s
packaging step); the C/TFLite Micro side is :mod:`edgetl.package.c`, the app bundles are
:mod:`edgetl.package.apps`, and the generated texts are templates under ``templates/``
(:mod:`edgetl.package.render`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core import fs as _fs
from edgetl.core.config import PackageConfig
from edgetl.core.errors import ArtifactError, BudgetError, ConfigError, OutputExistsError
from edgetl.core.metadata import (
    SCHEMA_VERSION,
    ModelInfo,
    checked_metadata,
    named_model_file,
    package_versions,
    read_model_info,
)
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import PackageFor
from edgetl.core.units import human_size, parse_margin, parse_size
from edgetl.package.apps import build_app_package
from edgetl.package.budget_advice import flash_advice
from edgetl.package.c import build_c_package, c_readme, sha256_hex
from edgetl.runtime.formats import model_info_for, runtime_format_for

log = logging.getLogger(__name__)

#: ``package.json`` marks a folder ``package`` wrote (and may replace).
REPORT_FILE = "package.json"
REPORT_KIND = "edgetl-package"


# ----------------------------------------------------------------------------------------------
# Sizes and budgets
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Inputs: the artifact, its metadata, the output folder
# ----------------------------------------------------------------------------------------------


@dataclass
class PackageResult:
    """What ``package`` wrote.

    Attributes:
        out_dir: the package folder.
        target: what it is for.
        files: file names in it.
        report: the content of ``package.json``.
    """
    out_dir: Path
    target: PackageFor
    files: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def resolve_artifact(path: Path) -> Path:
    """A model file for ``path``: the file itself, or the ``model_file`` an edgetl folder's ``edgetl.json`` names.

    Raises:
        ArtifactError: missing, or a folder without a model.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"artifact {path} does not exist; pass a .tflite/.onnx file or an edgetl build/export folder")
    if path.is_file():
        if runtime_format_for(path) is None:
            raise ArtifactError(f"cannot package {path}: expected a .tflite or .onnx file or an edgetl build/export folder")
        return path
    named = named_model_file(path)
    if named is not None and runtime_format_for(named) is not None:
        return named
    raise ArtifactError(f"{path} is not an edgetl build/export folder with a model (no {_fs.MARKER} naming a .tflite/.onnx model_file)")


def default_package_dir(artifact: Path, target: PackageFor | str) -> Path:
    """Where ``package`` writes when no ``out`` is given: outside every folder an edgetl command replaces.

    * a model in a build's folder ``<out>/<name>/<stage>/`` (``build`` replaces its stage folders):
      ``<out>/<name>-packages/<stage>-<for>/``, e.g. ``build/data-packages/tflite-int8-android/``;
    * a model in another edgetl output folder (an export, ``run-tflite-int8/``, which ``export --force``
      replaces): ``<folder>-<for>/`` beside it;
    * a model file in a folder of your own: ``<file stem>-<for>/`` beside the file.

    A model other than the one the folder's ``edgetl.json`` names (the ``model.onnx`` an int8 build
    writes beside ``model.tflite``) adds its format: ``tflite-int8-onnx-python``.

    Raises:
        ArtifactError: missing, or a folder without a model.
    """
    target = PackageFor(target)
    model = resolve_artifact(artifact)
    folder = model.parent
    try:
        meta = _fs.read_json(folder / _fs.MARKER) if (folder / _fs.MARKER).is_file() else None
    except (OSError, ValueError):
        meta = {}
    if meta is None:
        return folder / f"{model.stem}-{target.value}"
    meta = meta if isinstance(meta, dict) else {}
    stem = folder.name if meta.get("model_file") == model.name else f"{folder.name}-{model.suffix.lstrip('.').lower()}"
    build_root = folder.parent
    if meta.get("name") == build_root.name or (build_root / "float" / _fs.MARKER).is_file():
        return build_root.with_name(f"{build_root.name}-packages") / f"{stem}-{target.value}"
    return folder.with_name(f"{stem}-{target.value}")


def _model_info(model: Path, metadata: dict[str, Any] | None) -> tuple[ModelInfo, dict[str, Any] | None]:
    """Labels and contract, and the full metadata when there is some that describes this very file."""
    if metadata is not None:
        try:
            class_names, contract = checked_metadata(metadata["class_names"], metadata["preprocessing"], f"the metadata of {model}")
        except KeyError as exc:
            raise ArtifactError(f"the metadata of {model} has no {exc.args[0]!r}; it needs class_names and preprocessing") from None
        backbone = metadata.get("backbone")
        return ModelInfo(class_names, contract, backbone if isinstance(backbone, str) else None, metadata), metadata

    try:
        info = read_model_info(model)
        if info.extra.get("model_file") == model.name:
            return info, info.extra
    except ArtifactError:
        pass
    return model_info_for(model), None


def _check_out_dir(out: Path, force: bool) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; pass a folder for --out")
    if not out.is_dir() or force or not any(out.iterdir()):
        return
    report = out / REPORT_FILE
    try:
        ours = report.is_file() and _fs.read_json(report).get("kind") == REPORT_KIND
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise OutputExistsError(f"output folder {out} already holds files that are not an edgetl package; pass --force to replace it or choose another --out")


# ----------------------------------------------------------------------------------------------
# TFLite Micro checks and measurements
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# C / TFLite Micro files
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Android / iOS / Python
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def package(
    artifact: Path,
    target: PackageFor | str,
    out: Path,
    *,
    ram_budget: str | int | None = None,
    flash_budget: str | int | None = None,
    arena_margin: str | None = None,
    force: bool = False,
    metadata: dict[str, Any] | None = None,
    progress: Progress = log_progress,
) -> PackageResult:
    """Bundle ``artifact`` for ``target`` into ``out`` (see the module docstring).

    Args:
        artifact: a ``.tflite``/``.onnx`` file, or an edgetl build/export folder (its ``edgetl.json``
            ``model_file``).
        target: ``c``, ``android``, ``ios`` or ``python``.
        out: the package folder; replaced whole when complete. A folder holding other files is
            refused unless ``force``.
        ram_budget: ``c``: the most RAM the tensor arena may take (``"256KB"``, ``"1MB"``, bytes).
        flash_budget: the largest model file allowed.
        arena_margin: ``c``: added to the measured arena: bytes or ``"10%"``; None: 16 KiB or 10%,
            whichever is larger.
        metadata: the model's ``edgetl.json`` content when the caller has it (``build`` does, before
            writing it); otherwise read from beside the model or from the model itself.

    Returns:
        What was written.

    Raises:
        ConfigError: unknown target, malformed budget or margin, an option the target does not take.
        ArtifactError: missing or unusable model (float or unsupported operators for ``c``).
        BudgetError: the model does not fit ``ram_budget``/``flash_budget``.
        VerificationError: TFLite Micro computes something else than LiteRT.
        OutputExistsError: ``out`` holds files that are not an edgetl package.
    """
    try:
        target = PackageFor(target)
    except ValueError:
        raise ConfigError(f"Received --for {target!r}; pass one of {', '.join(t.value for t in PackageFor)}") from None
    ram = parse_size(ram_budget, "--ram-budget") if ram_budget is not None else None
    flash = parse_size(flash_budget, "--flash-budget") if flash_budget is not None else None
    margin = parse_margin(arena_margin)
    if target is not PackageFor.c and (ram is not None or arena_margin is not None):
        raise ConfigError(f"--ram-budget and --arena-margin size a TFLite Micro tensor arena: they go with --for c, not --for {target.value}")
    model = resolve_artifact(artifact)
    shown = _fs.final_path(model)  # build packages a model whose folder is still staged: name the one the user will find
    if target is PackageFor.c and model.suffix.lower() != ".tflite":
        raise ArtifactError(f"C packages are for TFLite Micro and need an int8 .tflite model; {shown} is {model.suffix}: build with `--target tflite-int8`")
    if target in (PackageFor.android, PackageFor.ios) and model.suffix.lower() != ".tflite":
        raise ArtifactError(
            f"{target.value} packages use LiteRT and need a .tflite model; {shown} is {model.suffix}: "
            "package the model.tflite an int8 build writes beside model.onnx, or use `--for python`"
        )
    out = Path(out)
    _check_out_dir(out, force)
    info, full_metadata = _model_info(model, metadata)
    data = model.read_bytes()
    if flash is not None and len(data) > flash:
        raise BudgetError(
            f"{shown} is {len(data)} bytes ({human_size(len(data))}), more than --flash-budget {flash} bytes ({human_size(flash)}); "
            + flash_advice(len(data), flash, metadata, model)
        )
    report: dict[str, Any] = {
        "kind": REPORT_KIND,
        "schema_version": SCHEMA_VERSION,
        "for": target.value,
        "model": {"file": model.name, "size_bytes": len(data), "sha256": sha256_hex(data)},
        "class_names": list(info.class_names),
        "preprocessing": info.contract.to_dict(),
        "budgets": {"ram_bytes": ram, "flash_bytes": flash},
        "versions": {**package_versions(), "edgetl": __version__},
    }
    if target is PackageFor.c:
        files, tflm = build_c_package(model, data, info, ram_budget=ram, margin=margin, progress=progress)
        report["tflm"] = tflm
        report["versions"]["tflite-micro"] = tflm["parity"]["tflite_micro"]
        files["README.md"] = c_readme(info, tflm, report)
    else:
        files, io = build_app_package(target, model, info, full_metadata)
        report.update(io)
    report["files"] = sorted([*files, REPORT_FILE])
    files[REPORT_FILE] = json.dumps(report, indent=2, default=str) + "\n"
    with _fs.atomic_dir(out) as staging:
        for name, content in files.items():
            path = staging / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    log.info("wrote the %s package of %s to %s (%d files)", target.value, shown, _fs.final_path(out), len(files))
    return PackageResult(out, target, report["files"], report)


def package_build(artifact: Path, folder: Path, config: PackageConfig, *, metadata: dict[str, Any], progress: Progress = log_progress) -> dict[str, Any]:
    """``build``'s packaging step: one ``<folder>/package-<for>/`` per configured target.

    Returns:
        For ``edgetl.json``: target -> the package folder name and its key figures.
    """
    results = {}
    for target in config.targets:
        name = f"package-{PackageFor(target).value}"
        progress("package", 0, 1, name)
        result = package(
            artifact, target, Path(folder) / name, ram_budget=config.ram_budget if target is PackageFor.c else None,
            flash_budget=config.flash_budget, arena_margin=config.arena_margin if target is PackageFor.c else None,
            force=True, metadata=metadata, progress=progress,
        )
        entry: dict[str, Any] = {"folder": name, "files": result.files}
        if "tflm" in result.report:
            entry["tensor_arena_bytes"] = result.report["tflm"]["arena"]["arena_bytes"]
            entry["tensor_arena_measured_bytes"] = result.report["tflm"]["arena"]["measured_bytes"]
            entry["tflm_matches_litert_reference"] = result.report["tflm"]["parity"]["against_litert_reference_kernels"]["exact"]
        results[PackageFor(target).value] = entry
        progress("package", 1, 1, name)
    return results


def check_build_packaging(packages: list[PackageFor | str], target_name: str, target_format: str) -> None:
    """``build``'s cheap checks for ``[package]``, before any training.

    Args:
        packages: the configured package targets (``[package] targets``).
        target_name: the build target (``tflite-int8``).
        target_format: its file format (``tflite``, ``onnx``).

    Raises:
        ConfigError: a package the target cannot make.
    """
    for wanted in packages:
        wanted = PackageFor(wanted)
        if wanted is PackageFor.c and target_name != "tflite-int8":
            raise ConfigError(f"--package c needs --target tflite-int8 (TFLite Micro runs full-integer int8 models); received --target {target_name}")
        if wanted in (PackageFor.android, PackageFor.ios) and target_format != "tflite":
            raise ConfigError(f"--package {wanted.value} needs a TFLite target (LiteRT); received --target {target_name}")
