"""``build``: train -> QAT -> export -> verify -> benchmark, into one output folder.

Layout of ``<out>/<name>/``::

    float/          the fine-tuned float model (a train run folder)
    qat/            the quantization-aware model (int8 targets, mode qat)
    <target>/       model.tflite, labels.txt, edgetl.json, report.md  <- what you ship

Each stage's folder records the fingerprint of the configuration (and image files) that made it,
so a second ``build`` that changes only later settings (target, QAT epochs, bench) reuses the
earlier stages instead of training again. ``--force`` starts over. A later stage's fingerprint
also covers the exact file of the model it was made from, so a stage left over from another run is
never reused. Every stage is written into a temporary sibling folder and the finished folders
replace the previous ones only when the whole build succeeds: an interrupted (or forced) build
leaves the previous complete build as it was. A lock on ``<out>/<name>`` refuses a second
concurrent build into the same folder.

A build deletes nothing it did not make: what a replaced stage folder holds that the build did
not write (a package made with ``edgetl package --out`` inside it, notes) is carried into the
new folder, with a warning (:func:`keep_foreign`). ``edgetl package`` writes outside these
folders by default (``<out>/<name>-packages/``).

For an int8 target built with QAT, the PTQ int8 model is made too, and the better of the two on
the validation split ships (QAT on a tie); ``accuracy.int8_choice`` in ``edgetl.json`` says which
and why (:func:`edgetl.pipeline.compare.choose_int8`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.harness import machine_info
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig, check_path_component
from edgetl.core.errors import BudgetError, ConfigError, OutputExistsError
from edgetl.core.fingerprint import after_parent, file_sha256, stage_fingerprints
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import QuantMode
from edgetl.data.split import IMBALANCE_SHOWN, balanced_accuracy, class_counts, imbalance, load_split
from edgetl.device.evaluate import compute_metrics
from edgetl.device.heldout import split_record
from edgetl.export.run import export_verified
from edgetl.export.targets import TARGETS, TargetSpec
from edgetl.ml import distribute
from edgetl.ml import qat as qat_stage  # the module: tests replace qat_stage.qat
from edgetl.ml._keras import keras
from edgetl.ml.backbones import resolve_weights
from edgetl.ml.checkpoints import RunCheckpoints
from edgetl.ml.model_io import MODEL_FILE, accuracy, load_keras_artifact, predict_pixels
from edgetl.ml.train import deterministic_ops, resolve_model_options, train
from edgetl.pipeline.cache import StageCache, link_or_copy, reusable
from edgetl.pipeline.compare import choose_int8, companion_artifact, compare_ptq, quick_latency, ship_instead
from edgetl.pipeline.extras import write_build_extras
from edgetl.pipeline.ladder import AUTO_TARGET, LADDER_JSON, RUNGS, check_ladder_config
from edgetl.pipeline.report import build_report

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    out_dir: Path
    artifact: Path
    target: str
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


#: ``--target auto``: the quantization ladder chooses the target (:mod:`edgetl.pipeline.ladder`); ships into ``<name>/auto/``.
AUTO_SPEC = TargetSpec(AUTO_TARGET, "auto", "auto", "auto", "", False, "the fastest variant of the quantization ladder that meets the budgets")


def build_name(config: BuildConfig) -> str:
    """The build's folder name under ``config.out``: ``config.name`` or the data folder's name.

    Raises:
        ConfigError: no name and no data folder, or a name that is not a single folder name.
    """
    if config.name:
        return check_path_component(config.name, "name")
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    return check_path_component(Path(config.data.path).resolve().name or "model", "build name (the data folder's name; pass --name to choose one)")


def check_build(config: BuildConfig, *, trust_model: bool = False) -> TargetSpec:
    """Every cheap check, before any training: target, backbone (or the user's model file), size, alpha, weights, data path."""
    check_ladder_config(config)  # [ladder] budgets only with --target auto, which needs --max-drop
    target = AUTO_SPEC if config.target == AUTO_TARGET else TARGETS.get(config.target)
    spec, input_size, alpha = resolve_model_options(config, trust_model=trust_model)
    if target is not AUTO_SPEC and target.name not in spec.targets:
        raise ConfigError(f"{spec.name} does not support target {target.name}; it supports {', '.join(spec.targets)}")
    resolve_weights(spec, config.model.weights, alpha, input_size)
    distribute.check_strategy(config)  # --strategy multiworker without a usable TF_CONFIG
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    from edgetl.package.stage import check_build_packaging  # [package]: a package the target cannot make fails here

    check_build_packaging(config.package.targets, target.name, target.format)
    return target


def build(
    config: BuildConfig, *, force: bool = False, progress: Progress = log_progress, trust_model: bool = False, no_cache: bool = False,
) -> BuildResult:
    """Run the whole pipeline for ``config.target`` and write ``<out>/<name>/<target>/``.

    The stages write temporary sibling folders; the previous build's folders are replaced only
    when every stage has succeeded, so an interrupted build (``--force`` too) leaves them intact.
    Each finished stage is also kept in the stage cache (``<out>/<name>/.edgetl-cache/``) and every
    training and QAT epoch is checkpointed there: the same command run again after an interruption
    reuses the finished stages and resumes the unfinished one from its last epoch. ``no_cache``
    (``--no-cache``): reuse nothing, resume nothing, decode the images again.

    Under ``--strategy multiworker`` only the chief writes; every other worker runs the same stages
    into a temporary folder it deletes (the stage cache and checkpoints are read from ``<out>``,
    which must then be on a filesystem every worker sees, or pass ``--no-cache``).

    Raises:
        ConfigError, DataError, OutputExistsError (also: another process is writing the same
        ``<out>/<name>``), ExportError, VerificationError.
    """
    target = check_build(config, trust_model=trust_model)
    if no_cache:
        config = config.model_copy(update={"data": config.data.model_copy(update={"decode_cache": False})})
    root = Path(config.out) / build_name(config)
    writer = distribute.is_writer(config)
    # trust_model: the Keras models of earlier builds reused from <out>/<name>, and a --model FILE, load without the code check
    with (
        _fs.output_lock(root) if writer else contextlib.nullcontext(),
        _fs.staged_dirs() if writer else _scratch_dirs() as stage,
        deterministic_ops(config.train.deterministic),
    ):
        staged: list[tuple[Path, Path]] = []

        def tracked(folder: Path) -> Path:
            tmp = stage(folder)
            staged.append((tmp, Path(folder)))
            return tmp

        cache = StageCache(root, writer=writer, enabled=not no_cache)
        result = _build_stages(config, target, root, tracked, cache, force=force, progress=progress, trust_model=trust_model)
        result.summary["written"] = writer  # False: a multi-worker task other than the chief, whose stages were scratch
        kept = keep_foreign(staged)  # before staged_dirs swaps the folders in, when this block ends
        if kept:
            result.summary["kept"] = [str(path) for path in kept]
    if result.summary.get("no_fit"):  # --target auto: the measured ladder is written; nothing ships
        raise BudgetError(result.summary["no_fit"])
    return result


#: Names a build (or an earlier edgetl version's build) writes in its stage folders: never carried over.
_BUILD_NAMES = frozenset({*_fs.OUR_OUTPUTS, _fs.MARKER, "labels.txt", "report.md", *(spec.filename for _, spec in TARGETS.items())})


def _made_by_build(folder: Path) -> set[str]:
    """The names in ``folder`` (a stage folder of a previous build) that a build made."""
    names = set(_BUILD_NAMES) | {LADDER_JSON, "bench.json", "report.html"} if folder.name in ("ladder", AUTO_TARGET) else set(_BUILD_NAMES)
    if folder.name == "ladder":
        names |= {rung.name for rung in RUNGS}
    try:
        meta = _fs.read_json(folder / _fs.MARKER)
    except (OSError, ValueError):
        return names
    if isinstance(meta, dict):
        names.add(str(meta.get("model_file", "")))
        companion = (meta.get("accuracy") or {}).get("companion") if isinstance(meta.get("accuracy"), dict) else None
        if isinstance(companion, dict) and isinstance(companion.get("file"), str):
            names.add(companion["file"])
        report_files = meta.get("report_files")  # MODEL_CARD.md, the plots and the gallery
        if isinstance(report_files, dict):
            names |= {name for name in report_files.values() if isinstance(name, str)}
        packages = meta.get("packages")
        if isinstance(packages, dict):
            names |= {entry["folder"] for entry in packages.values() if isinstance(entry, dict) and isinstance(entry.get("folder"), str)}
    return names


def keep_foreign(staged: list[tuple[Path, Path]]) -> list[Path]:
    """Carry what the previous stage folders hold that no build made into their replacements.

    For each ``(new, old)`` pair (the staged folder and the folder it will replace), every entry
    of ``old`` that the build did not make (not written by this build, not a build output name,
    not one of edgetl's temporary names) is linked or copied into ``new``, and a warning names it.
    ``old`` is untouched: if anything fails, the build stops and the previous folders stay as
    they were.

    Returns:
        The paths kept (their place after the swap is the same).

    Raises:
        OutputExistsError: something could not be carried over (nothing was replaced).
    """
    kept: list[Path] = []
    for new, old in staged:
        if not old.is_dir() or old.is_symlink():
            continue
        ours = _made_by_build(old) | {entry.name for entry in new.iterdir()}
        for entry in sorted(old.iterdir()):
            if entry.name in ours or (entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name)):
                continue
            target = new / entry.name
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, target, symlinks=True, copy_function=link_or_copy)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry), target)
                else:
                    link_or_copy(str(entry), str(target))
            except OSError as exc:
                raise OutputExistsError(
                    f"{entry} was not made by this build and could not be carried into the rebuilt {old} ({exc}); "
                    f"nothing was replaced: move it out of {old} and build again"
                ) from None
            log.warning(
                "kept %s which this build did not make: the rebuilt %s/ holds it as it was; keep your own files outside "
                "the build's stage folders (`edgetl package` writes to %s-packages/ by default)", entry, old, old.parent,
            )
            kept.append(entry)
    return kept


@contextlib.contextmanager
def _scratch_dirs():
    """``staged_dirs`` for a multi-worker task that is not the chief: each stage folder is a fresh
    folder in a temporary directory, deleted at the end (the chief writes the real ones)."""
    with tempfile.TemporaryDirectory(prefix="edgetl-worker-") as scratch:
        count = 0

        def stage(path: Path) -> Path:
            nonlocal count
            count += 1
            folder = Path(scratch) / f"{count}-{Path(path).name}"
            folder.mkdir()
            return folder

        yield stage


def _from_cache(entry: Path, staged: Path) -> None:
    """Fill the staged stage folder from a stage-cache entry (hard links)."""
    for item in entry.iterdir():
        if item.is_dir():
            shutil.copytree(item, staged / item.name, copy_function=link_or_copy)
        else:
            link_or_copy(str(item), str(staged / item.name))


def _build_stages(
    config: BuildConfig, target: TargetSpec, root: Path, stage: Callable[[Path], Path], cache: StageCache, *, force: bool,
    progress: Progress, trust_model: bool = False,
) -> BuildResult:
    """The body of :func:`build`; ``stage(folder)`` gives the temporary folder that replaces ``folder`` at the end."""
    fps = stage_fingerprints(config)
    # --target auto: the budgets are left out of auto/'s fingerprint on purpose. Trying other budgets on the same
    # model is how the ladder is used: auto/ is replaced without --force (so the float model is reused, not
    # retrained); ladder.json and auto/edgetl.json record the budgets that chose it.
    target_dir = root / target.name
    _fs.check_output_dir(target_dir, fps["export"], force=force, what="build")  # refuse before training
    timings: dict[str, float] = {}

    start = time.perf_counter()
    float_dir = root / "float"
    cached = None if force else cache.lookup("train", fps["train"], MODEL_FILE)
    if cache.enabled and not force and (reusable(float_dir, fps["train"], MODEL_FILE) or cached is not None):
        source_dir = float_dir if reusable(float_dir, fps["train"], MODEL_FILE) else cached
        log.info("reusing the trained float model from %s (same images and training settings; --force or --no-cache trains again)", source_dir)
        cache.note("train", fingerprint=fps["train"], reused=str(source_dir.relative_to(root)))
        float_model, info = load_keras_artifact(source_dir, trust_model=trust_model)
        class_names, contract = info.class_names, info.contract
        split = load_split(config.data, contract.hw, channels=contract.channels)
        if source_dir != float_dir:
            _from_cache(source_dir, stage(float_dir))
        float_file = source_dir / MODEL_FILE
    else:
        trained = train(
            config, stage(float_dir), force=True, progress=progress, run_fingerprint=fps["train"], trust_model=trust_model,
            checkpoint_dir=cache.checkpoint_dir("train", fps["train"]), resume=cache.enabled and not force, keep_checkpoints=True,
        )
        float_model, class_names, contract, split = trained.model, trained.class_names, trained.contract, trained.split
        float_file = Path(trained.out_dir) / MODEL_FILE
        cache.store("train", fps["train"], Path(trained.out_dir))
        cache.note("train", fingerprint=fps["train"], reused=None, resumed=trained.resumed)
    qat_fp = after_parent(fps["qat"], float_file)  # a QAT folder made from another float model is stale
    timings["train_s"] = time.perf_counter() - start
    if target is AUTO_SPEC:
        return _ladder_stages(
            config, root, stage, cache, float_model, float_file, class_names, contract, split, fps, qat_fp, timings,
            force=force, progress=progress, trust_model=trust_model,
        )

    quant_model, quant_acc, mode = None, None, None
    start = time.perf_counter()
    if target.needs_quantized_model:
        mode = QuantMode(config.qat.mode)
        qat_dir = root / "qat"
        cached = None if force or mode is not QuantMode.qat else cache.lookup("qat", qat_fp, qat_stage.QAT_MODEL_FILE)
        if mode is QuantMode.qat and cache.enabled and not force and (reusable(qat_dir, qat_fp, qat_stage.QAT_MODEL_FILE) or cached is not None):
            source_dir = qat_dir if reusable(qat_dir, qat_fp, qat_stage.QAT_MODEL_FILE) else cached
            log.info("reusing the QAT model from %s (made from this float model with the same QAT settings)", source_dir)
            cache.note("qat", fingerprint=qat_fp, reused=str(source_dir.relative_to(root)))
            quant_model, _ = load_keras_artifact(source_dir, trust_model=trust_model)
            quant_acc = accuracy(quant_model, split.val, contract)
            if source_dir != qat_dir:
                _from_cache(source_dir, stage(qat_dir))
        else:
            float_copy = _clone(float_model)
            checkpoints = RunCheckpoints(
                cache.checkpoint_dir("qat", qat_fp) if mode is QuantMode.qat else None, qat_fp,
                write_folder=None if cache.writer else Path(tempfile.mkdtemp(prefix="edgetl-worker-")),
                resume=cache.enabled and not force,
            )
            result = qat_stage.qat(
                config, float_copy, class_names=class_names, contract=contract, split=split,
                out_dir=stage(qat_dir) if mode is QuantMode.qat else None, force=True, progress=progress,
                run_fingerprint=qat_fp, checkpoints=checkpoints,
            )
            quant_model, quant_acc = result.model, result.val_accuracy
            if result.out_dir is not None:
                cache.store("qat", qat_fp, Path(result.out_dir))
                cache.note("qat", fingerprint=qat_fp, reused=None, resumed=list(checkpoints.resumed))
            if not cache.writer:
                checkpoints.clear()
    timings["qat_s"] = time.perf_counter() - start

    start = time.perf_counter()
    progress("export", 0, 1, target.name)
    source = quant_model if quant_model is not None else float_model
    representative = qat_stage.representative_images(split, config.export.representative_samples, config.data.seed)
    with contextlib.nullcontext(stage(target_dir)) as staging:  # replaces target_dir when build() completes
        exported = export_verified(
            source, target.name, staging, class_names=class_names, contract=contract,
            representative=representative, config=config, pixels=split.val.x, progress=progress,
        )
        timings["export_s"] = time.perf_counter() - start - exported.verify_s

        start = time.perf_counter() - exported.verify_s
        float_probs = predict_pixels(float_model, split.val.x, contract)
        float_metrics = compute_metrics(float_probs, split.val.y, class_names)
        progress("verify", 1, 1, "")
        timings["verify_s"] = time.perf_counter() - start

        source_name = "qat" if mode is QuantMode.qat else ("ptq-calibrated float" if mode is QuantMode.ptq else "float")
        source_top1 = quant_acc if quant_acc is not None else float_metrics.top1
        ptq, choice = None, None
        if mode is not None:
            images = int(len(split.val.y))
            first_top1 = compute_metrics(exported.probs, split.val.y, class_names).top1
            if mode is QuantMode.qat and config.export.compare_ptq:
                progress("PTQ comparison", 0, 1, "int8 from the float model, calibrated")
                ptq_dir = root / "ptq-int8"
                ptq, ptq_export = compare_ptq(float_model, target, ptq_dir, class_names, contract, representative, split, config, float_metrics, staging=stage(ptq_dir))
                progress("PTQ comparison", 1, 1, "")
                choice = choose_int8(first_top1, ptq["artifact_top1"], images)
                if choice["shipped"] == "ptq":
                    exported = ship_instead(ptq_export, staging)
                    source_name, source_top1 = "ptq-calibrated float", float_metrics.top1
            elif mode is QuantMode.qat:
                choice = choose_int8(first_top1, None, images)
            else:
                choice = choose_int8(None, first_top1, images, mode="ptq")
            log.info("%s", choice["reason"])
        artifact, meta, verification, artifact_probs = exported.artifact, exported.metadata, exported.verification, exported.probs
        artifact_metrics = compute_metrics(artifact_probs, split.val.y, class_names)

        start = time.perf_counter()
        progress("benchmark", 0, 1, "LiteRT")
        latency = quick_latency(artifact, config)
        progress("benchmark", 1, 1, "")
        timings["bench_s"] = time.perf_counter() - start

        companion = None
        if target.dtype == "int8" and config.export.companion:
            progress("companion", 0, 1, "the same int8 model in the other format")
            companion = companion_artifact(artifact, target, staging, class_names, contract, config, split.val.x, split.val.y, float_probs, artifact_probs)
            progress("companion", 1, 1, "")

        accuracy_block = {
            "split": "validation",
            "images": int(len(split.val.y)),
            "float_top1": float_metrics.top1,
            "float_top5": float_metrics.top5,
            "artifact_top1": artifact_metrics.top1,
            "artifact_top5": artifact_metrics.top5,
            # mean per-class recall: the figure to judge imbalanced classes by (equals top-1 for equal classes)
            "float_balanced_top1": balanced_accuracy(split.val.y, np.argmax(float_probs, 1)),
            "artifact_balanced_top1": balanced_accuracy(split.val.y, np.argmax(artifact_probs, 1)),
            "top1_drop": float_metrics.top1 - artifact_metrics.top1,
            "top1_agreement_with_source": verification["top1_agreement"],
            "top1_agreement_with_float": float(np.mean(np.argmax(float_probs, 1) == np.argmax(artifact_probs, 1))) if len(float_probs) else float("nan"),
            "source": source_name,
            "source_keras_top1": source_top1,
            "per_class": artifact_metrics.per_class,
            "confusion": artifact_metrics.confusion,
        }
        if choice is not None:
            accuracy_block["int8_choice"] = choice
        if ptq is not None:
            accuracy_block["ptq_comparison"] = ptq
        if companion is not None:
            accuracy_block["companion"] = companion
        shipped_mode = QuantMode(choice["shipped"]) if choice is not None else None
        meta.update(
            {
                "fingerprint": fps["export"],
                "data_split": split_record(config.data, split),  # `edgetl eval --split val` selects these images again
                "stage_fingerprints": {"train": fps["train"], "qat": qat_fp if mode is QuantMode.qat else None, "float_model_sha256": file_sha256(float_file)},
                # the stage cache: the key of this build (its export fingerprint) and what each stage reused or resumed
                "cache": {"key": fps["export"], "folder": str(cache.folder.relative_to(root)), "enabled": cache.enabled, "stages": cache.record},
                "training": training_record(float_file.parent),
                "name": root.name,
                "quantization_mode": shipped_mode.value if shipped_mode else None,
                "accuracy": accuracy_block,
                "verification": verification,
                "latency": latency,
                "machine": machine_info(),
                "timings_s": timings,
            }
        )
        # ---- packaging ([package] targets, `build --package c`): app bundles in <target>/package-<for>/ ----
        if config.package.targets:
            from edgetl.package.stage import package_build  # [package]: app bundles, only when a build packages

            meta["packages"] = package_build(artifact, staging, config.package, metadata=meta.to_json(), progress=progress)
        # ---- end of packaging ----
        write_build_extras(staging, meta, split, artifact_probs, float_dir=float_file.parent)  # curves, confusion matrix, gallery, model card
        _fs.write_text(staging / "report.md", build_report(meta.to_json()))
        exported.stamp()
    final = target_dir / target.filename
    summary = {
        "artifact": str(final),
        "float_top1": float_metrics.top1,
        "artifact_top1": artifact_metrics.top1,
        "float_balanced_top1": accuracy_block["float_balanced_top1"],
        "artifact_balanced_top1": accuracy_block["artifact_balanced_top1"],
        # largest/smallest training class when the classes are imbalanced enough to show balanced accuracy; None otherwise
        "class_imbalance": ratio if (ratio := imbalance(class_counts(split.train.y, len(class_names)))) > IMBALANCE_SHOWN else None,
        "size_bytes": meta["size_bytes"],
        "latency": latency,
        "target": target.name,
        "source_keras_top1": accuracy_block["source_keras_top1"],
        "source": accuracy_block["source"],
        "ptq_top1": ptq["artifact_top1"] if ptq else None,
        "int8_choice": choice,
        "runtime": target.runtime,
        "companion": companion,
        "packages": {name: str(target_dir / entry["folder"]) for name, entry in meta.get("packages", {}).items()},
    }
    return BuildResult(target_dir, final, target.name, summary, timings)


def _ladder_stages(
    config: BuildConfig, root: Path, stage: Callable[[Path], Path], cache: StageCache, float_model, float_file: Path,
    class_names: list[str], contract, split, fps: dict[str, str], qat_fp: str, timings: dict[str, float], *,
    force: bool, progress: Progress, trust_model: bool,
) -> BuildResult:
    """``--target auto``: the quantization ladder from the trained float model into ``ladder/``, the winner into ``auto/``.

    Nothing fitting is not an error here: ``summary["no_fit"]`` holds the one-line message, and
    :func:`build` raises it once the ladder's folder is in place.
    """
    # the ladder (and the runtimes it measures with): imported only for --target auto
    from edgetl.pipeline import ladder as ladder_stage

    start = time.perf_counter()
    representative = qat_stage.representative_images(split, config.export.representative_samples, config.data.seed)
    qat_config = config.model_copy(update={"qat": config.qat.model_copy(update={"mode": QuantMode.qat})})

    def make_qat():
        """The QAT model, as a tflite-int8 build makes it: reused from qat/ or the stage cache when its settings match."""
        qat_dir = root / "qat"
        cached = None if force else cache.lookup("qat", qat_fp, qat_stage.QAT_MODEL_FILE)
        if cache.enabled and not force and (reusable(qat_dir, qat_fp, qat_stage.QAT_MODEL_FILE) or cached is not None):
            source_dir = qat_dir if reusable(qat_dir, qat_fp, qat_stage.QAT_MODEL_FILE) else cached
            log.info("reusing the QAT model from %s (made from this float model with the same QAT settings)", source_dir)
            model, _ = load_keras_artifact(source_dir, trust_model=trust_model)
            if source_dir != qat_dir:
                _from_cache(source_dir, stage(qat_dir))
            return model
        result = qat_stage.qat(
            qat_config, _clone(float_model), class_names=class_names, contract=contract, split=split,
            out_dir=stage(qat_dir), force=True, progress=progress, run_fingerprint=qat_fp,
        )
        if result.out_dir is not None:
            cache.store("qat", qat_fp, Path(result.out_dir))
        return result.model

    spec, _, _ = resolve_model_options(config, trust_model=trust_model)
    extra = {
        "fingerprint": fps["export"],
        "name": root.name,
        "data_split": split_record(config.data, split),
        "stage_fingerprints": {"train": fps["train"], "qat": qat_fp, "float_model_sha256": file_sha256(float_file)},
        "training": training_record(float_file.parent),
        "machine": machine_info(),
    }
    outcome = ladder_stage.run_ladder(
        config, float_model=float_model, class_names=class_names, contract=contract, split=split, representative=representative,
        ladder_dir=stage(root / "ladder"), auto_dir=lambda: stage(root / AUTO_TARGET), make_qat=make_qat,
        supported_targets=list(spec.targets), progress=progress, extra_metadata=extra, float_file=float_file, trust_model=trust_model,
    )
    timings["ladder_s"] = time.perf_counter() - start
    ladder_json = root / "ladder" / LADDER_JSON
    summary: dict[str, Any] = {"ladder": outcome.doc, "ladder_json": str(ladder_json), "target": AUTO_TARGET}
    if outcome.artifact is None:
        summary["no_fit"] = ladder_stage.no_fit_message(outcome.choice, ladder_json)
        return BuildResult(root / "ladder", ladder_json, AUTO_TARGET, summary, timings)
    final = root / AUTO_TARGET / outcome.artifact.name
    summary.update(artifact=str(final), winner=outcome.doc["winner"])
    return BuildResult(root / AUTO_TARGET, final, AUTO_TARGET, summary, timings)


def training_record(float_dir: Path) -> dict[str, Any] | None:
    """The float stage's ``training`` record (strategy, replicas, batch and learning-rate scaling,
    mixed precision, XLA); None for a float model made before edgetl recorded it."""
    try:
        record = _fs.read_json(float_dir / _fs.MARKER).get("training")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _clone(model):
    """A copy with the same weights, so QAT never alters the float model still in use."""
    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


