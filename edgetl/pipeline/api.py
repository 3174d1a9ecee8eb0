"""The public Python API: one function per stage, each what the matching ``edgetl`` command calls.

=================  ==========================  ==================================================
function           command                     does
=================  ==========================  ==================================================
:func:`train`      ``edgetl train``            fine-tune a backbone on an image folder
:func:`qat`        ``edgetl qat``              quantization-aware fine-tuning of a trained run
:func:`export`     ``edgetl export``           a run folder -> a verified .tflite/.onnx folder
:func:`build`      ``edgetl build``            train -> QAT -> export -> verify -> benchmark
:func:`evaluate`   ``edgetl eval``             accuracy of a model file on a labelled folder
:func:`bench`      ``edgetl bench``            latency of model files, here or on a board
:func:`package`    ``edgetl package``          bundle a model for TFLite Micro or an app
:func:`select`     ``edgetl select``           rank backbone x alpha x size candidates on the target
=================  ==========================  ==================================================

Reach them as ``edgetl.api.<name>`` (``import edgetl``, then ``edgetl.api.build(config)``) or
``from edgetl.pipeline.api import build``. They are not attributes of ``edgetl`` itself because
``edgetl.export``, ``edgetl.bench`` and ``edgetl.package`` are subpackages: once one of those is
imported, Python binds the attribute to the module, so a function of that name could not stay there.

Importing this module does not import TensorFlow: ``train``, ``qat``, ``export`` and ``build``
import the training stack when they run, so ``evaluate``, ``bench`` and ``package`` work on a device
install (``pip install edgetl``) for ``.tflite`` and ``.onnx`` files.

Each function that writes an output folder holds its lock (:func:`edgetl.core.fs.output_lock`)
while it writes, so two processes never write the same folder.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetl.bench.harness import check_output_dir, run_bench, write_bench
from edgetl.bench.options import BenchOptions
from edgetl.bench.plan import plan_bench
from edgetl.bench.remote import SSHTarget, run_remote_bench
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.errors import ConfigError
from edgetl.core.fingerprint import fingerprint
from edgetl.core.metadata import read_model_info
from edgetl.core.progress import Progress, log_progress
from edgetl.core.types import IODType, PackageFor, QuantMode
from edgetl.data.split import load_split
from edgetl.device.evaluate import compute_metrics
from edgetl.device.evaluate import evaluate as run_evaluate
from edgetl.device.heldout import split_record
from edgetl.export.targets import TARGETS
from edgetl.package.stage import default_package_dir
from edgetl.package.stage import package as run_package

log = logging.getLogger(__name__)


def default_export_dir(model: Path, target: str) -> Path:
    """Where an export goes when no ``out`` is given: ``<model>-<target>`` beside the run folder."""
    return model.with_name(f"{model.name}-{target}")


def export_model(
    model: Path,
    target: str,
    *,
    data: Path | None = None,
    out: Path | None = None,
    io_dtype: IODType = IODType.int8,
    samples: int = 200,
    force: bool = False,
    opset: int = 17,
    trust_model: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export a float or QAT run folder to ``target``, verified on the run's validation split.

    A float model exported to ``tflite-int8`` is post-training quantized with ``samples``
    training images; a QAT model keeps the ranges it learned.

    Args:
        model: an ``edgetl train`` or ``edgetl qat`` output folder.
        target: ``tflite-int8``, ``tflite-int16x8``, ``tflite-dynamic``, ``tflite-fp16``, ``tflite-fp32``,
            ``onnx-int8`` or ``onnx-fp32``.
        opset: ONNX opset for ``onnx-*`` targets.
        trust_model: load the Keras model even if it carries code (Lambda layers); see
            :mod:`edgetl.ml.keras_safety`.
        data: the training images (default: the folder recorded in the run).
        out: output folder (default: ``<model>-<target>`` beside the run).

    Returns:
        The artifact path and its metadata.

    Raises:
        ConfigError, ArtifactError, DataError, ExportError, OutputExistsError.
    """
    # TensorFlow (Keras loading, conversion) and the exporters: imported when an export runs, so that
    # evaluate, bench and package work on a device install
    from edgetl.export.run import export_verified
    from edgetl.ml.model_io import load_keras_artifact
    from edgetl.ml.qat import representative_images

    spec = TARGETS.get(target)
    if spec.format == "onnx":
        from edgetl.export.onnx import check_opset  # the ONNX exporter: only for onnx-* targets

        check_opset(opset)
    model = Path(model)
    info = read_model_info(model)
    kind = info.extra.get("kind")
    if kind not in ("keras-float", "keras-qat"):
        raise ConfigError(f"{model} is a {kind!r} artifact; export takes a `edgetl train` or `edgetl qat` run folder")
    if kind == "keras-qat" and spec.dtype != "int8":
        raise ConfigError(f"{model} is a QAT model, which exports to int8 targets only (tflite-int8, onnx-int8); export the float run for {target}")
    run_config = dict(info.extra.get("config", {}))
    if data is not None:
        run_config.setdefault("data", {})["path"] = str(data)
    run_config.setdefault("export", {})
    run_config["export"].update({"io_dtype": IODType(io_dtype).value, "representative_samples": samples, "opset": opset})
    run_config["target"] = target
    config = BuildConfig.model_validate(run_config)
    if config.data.path is None:
        raise ConfigError("export needs the training images (calibration and verification): pass data=DIR")
    split = load_split(config.data, info.contract.hw, channels=info.contract.channels)
    if split.class_names != info.class_names:
        raise ConfigError(f"--data has classes {split.class_names}, the model {info.class_names}; pass the folder it was trained on")

    out = Path(out) if out is not None else default_export_dir(model, target)
    export_fp = fingerprint({"stage": "export", "source": info.extra.get("fingerprint"), "target": target, "export": config.export.model_dump(mode="json")})
    keras_model, _ = load_keras_artifact(model, trust_model=trust_model)  # refused before any output folder exists
    _fs.check_output_dir(out, export_fp, force=force, what="export")  # a forced export replaces `out` only when complete (atomic_dir)
    mode = None
    if spec.dtype == "int8":
        mode = QuantMode.qat if kind == "keras-qat" else QuantMode.ptq
    with _fs.atomic_dir(out) as staging:
        exported = export_verified(
            keras_model, target, staging, class_names=info.class_names, contract=info.contract,
            representative=representative_images(split, samples, config.data.seed), config=config, pixels=split.val.x,
        )
        verification, artifact_probs = exported.verification, exported.probs
        metrics = compute_metrics(artifact_probs, split.val.y, info.class_names)
        meta = exported.stamp(
            {
                "fingerprint": export_fp,
                "quantization_mode": mode.value if mode else None,
                "source_model": str(model),
                "accuracy": {"split": "validation", "images": int(len(split.val.y)), "artifact_top1": metrics.top1, "source_keras_top1": info.extra.get("val_accuracy")},
                "data_split": split_record(config.data, split),  # `edgetl eval --split val` selects these images again
                "verification": verification,
            }
        )
    return out / spec.filename, meta.to_json()


def train(
    config: BuildConfig, out: Path, *, force: bool = False, progress: Progress = log_progress, trust_model: bool = False, no_cache: bool = False,
):
    """Fine-tune ``config.model`` on ``config.data`` into run folder ``out`` (see :func:`edgetl.ml.train.train`).

    Returns:
        The :class:`~edgetl.ml.train.TrainResult` (``out_dir``, ``val_accuracy``, ...).

    Raises:
        ConfigError, DataError, OutputExistsError.
    """
    from edgetl.ml.distribute import is_writer  # TensorFlow: imported when training runs
    from edgetl.ml.train import train as run_train

    if no_cache:  # start over: no epoch checkpoint resumed, images decoded again
        config = config.model_copy(update={"data": config.data.model_copy(update={"decode_cache": False})})
    if not is_writer(config):
        # a multi-worker task other than the chief: it writes what the chief writes (saving a model reads mirrored
        # BatchNorm statistics, a collective) into a temporary folder, deleted when training ends; no lock on `out`
        with tempfile.TemporaryDirectory(prefix="edgetl-worker-") as scratch:
            checkpoints = Path(out).parent / f".{Path(out).name}.resume"  # the chief's: every worker resumes from them
            return run_train(
                config, Path(scratch) / "run", force=force, progress=progress, trust_model=trust_model, resume=not no_cache,
                checkpoint_dir=checkpoints,
            )
    with _fs.output_lock(out):
        return run_train(config, out, force=force, progress=progress, trust_model=trust_model, resume=not no_cache)


def qat(
    model: Path,
    config: BuildConfig,
    *,
    out: Path | None = None,
    force: bool = False,
    progress: Progress = log_progress,
    trust_model: bool = False,
):
    """Quantization-aware fine-tuning of the float run folder ``model`` (see :func:`edgetl.ml.qat.qat`).

    Args:
        model: an ``edgetl train`` output folder.
        config: resolved configuration; its ``qat`` and ``data`` sections are used.
        out: output folder (default: ``<model>-qat`` beside the run).
        trust_model: load the Keras model even if it carries code (Lambda layers).

    Returns:
        The :class:`~edgetl.ml.qat.QATResult`; the QAT model is written to ``out``.

    Raises:
        ArtifactError, ConfigError, DataError, OutputExistsError.
    """
    from edgetl.ml.model_io import load_keras_artifact  # TensorFlow: imported when QAT runs
    from edgetl.ml.qat import qat as run_qat  # TensorFlow (tfmot)

    model = Path(model)
    float_model, info = load_keras_artifact(model, trust_model=trust_model)  # refused before the output is locked
    target = Path(out) if out is not None else model.with_name(model.name + "-qat")
    with _fs.output_lock(target):
        return run_qat(config, float_model, class_names=info.class_names, contract=info.contract, out_dir=target, force=force, progress=progress)


def export(
    model: Path,
    target: str,
    *,
    data: Path | None = None,
    out: Path | None = None,
    io_dtype: IODType = IODType.int8,
    samples: int = 200,
    force: bool = False,
    opset: int = 17,
    trust_model: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """:func:`export_model` while holding the lock on its output folder (arguments and result the same)."""
    TARGETS.get(target)  # an unknown target: the one-line error before any lock is taken
    folder = Path(out) if out is not None else default_export_dir(Path(model), target)
    with _fs.output_lock(folder):
        return export_model(model, target, data=data, out=out, io_dtype=io_dtype, samples=samples, force=force, opset=opset, trust_model=trust_model)


def build(config: BuildConfig, *, force: bool = False, progress: Progress = log_progress, trust_model: bool = False, no_cache: bool = False):
    """The whole pipeline into ``<config.out>/<name>/<target>/`` (see :func:`edgetl.pipeline.build.build`).

    Returns:
        The :class:`~edgetl.pipeline.build.BuildResult` (``out_dir``, ``target``, ``summary``).
    """
    from edgetl.pipeline.build import build as run_build  # TensorFlow: imported when a build runs

    return run_build(config, force=force, progress=progress, trust_model=trust_model, no_cache=no_cache)


def evaluate(artifact: Path, data: Path, *, against: Path | None = None, strict: bool = False, trust_model: bool = False, split: str = "all",
             board: Any | None = None):
    """Accuracy of ``artifact`` on the labelled folder ``data`` (see :func:`edgetl.device.evaluate.evaluate`).

    ``.tflite`` and ``.onnx`` files need no TensorFlow; ``.keras``/``.h5`` files and run folders do.
    ``split="val"`` (or ``"train"``) keeps only the images of that part of the split recorded in the
    artifact's ``edgetl.json``: ``val`` reproduces the build's validation figures.
    ``board`` (an :func:`edgetl.bench.boards.parse_boards` spec: ``ssh://...``, ``arm64-emulated``)
    computes the figures from outputs the model made on that board (``edgetl eval --remote``).

    Returns:
        The :class:`~edgetl.device.evaluate.EvalReport`.
    """
    if board is None:
        return run_evaluate(artifact, data, against=against, strict=strict, trust_model=trust_model, split=split)
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench.boards import open_board

    with open_board(board) as where:
        return run_evaluate(artifact, data, against=against, strict=strict, trust_model=trust_model, split=split, board=where)


def bench(
    artifacts: Sequence[Path],
    options: BenchOptions,
    out: Path,
    *,
    remote: SSHTarget | None = None,
    progress: Progress = log_progress,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Time ``artifacts`` (``.tflite``/``.onnx``) here, or on a board over SSH, and write the reports to ``out``.

    Every file and shape is checked before the first measurement.

    Args:
        options: thread counts, runs and shapes (:class:`~edgetl.bench.options.BenchOptions`).
        out: folder for ``bench.json``, ``report.md`` and ``report.html``.
        remote: a board (:func:`edgetl.bench.remote.make_target`); None measures on this machine.

    Returns:
        The ``bench.json`` document and the paths written (``json``, ``markdown``, ``html``).

    Raises:
        ConfigError, ArtifactError, DataError, OutputExistsError, RemoteError.
    """
    check_output_dir(out)
    plans = plan_bench(artifacts, options)
    if remote is not None:
        doc = run_remote_bench(plans, options, remote, progress=progress)
    else:
        doc = run_bench(plans, options, progress=progress)
    return doc, write_bench(doc, out)


def package(
    artifact: Path,
    for_: PackageFor | str,
    out: Path | None = None,
    *,
    ram_budget: str | int | None = None,
    flash_budget: str | int | None = None,
    arena_margin: str | None = None,
    force: bool = False,
):
    """Bundle ``artifact`` for TFLite Micro (``c``), ``android``, ``ios`` or ``python`` (see :func:`edgetl.package.stage.package`).

    Args:
        artifact: a ``.tflite``/``.onnx`` file or an edgetl build/export folder.
        out: package folder (default: outside the folders edgetl replaces, see
            :func:`~edgetl.package.stage.default_package_dir`: ``build/data-packages/tflite-int8-<for>/``
            for ``build/data/tflite-int8``, ``<folder>-<for>/`` beside an export, ``<stem>-<for>/`` beside a file).

    Returns:
        The :class:`~edgetl.package.stage.PackageResult`.
    """
    for_ = PackageFor(for_)
    target = Path(out) if out is not None else default_package_dir(artifact, for_)
    with _fs.output_lock(target):
        return run_package(artifact, for_, target, ram_budget=ram_budget, flash_budget=flash_budget, arena_margin=arena_margin, force=force)


def select(
    config: BuildConfig,
    out: Path,
    *,
    candidates: Sequence[Any] | str | None = None,
    budgets: Any = None,
    boards: Any = None,
    bench: BenchOptions | None = None,
    engine: Any = None,
    weights: str = "auto",
    force: bool = False,
    progress: Progress = log_progress,
):
    """Rank backbone x alpha x input-size candidates on ``config.data`` by linear-probe top-1 and int8
    latency on the boards, within budgets (see :func:`edgetl.pipeline.select.select`).

    Args:
        candidates: :class:`~edgetl.pipeline.select.Candidate` objects, or a ``--candidates`` text
            (``"mobilenet_v2:0.35@96,128"``); None: the default grid.
        budgets: :class:`~edgetl.pipeline.select.Budgets`; boards: :class:`~edgetl.pipeline.select.BoardOptions`;
            engine: :class:`~edgetl.core.jobs.Engine` (where the candidate jobs run).

    Returns:
        The :class:`~edgetl.pipeline.select.SelectResult` (``recommendation``, ``command``, ``out_dir``).

    Raises:
        BudgetError: no candidate fits (``select.json`` is written first); ConfigError, DataError, OutputExistsError.
    """
    # select and its report (matplotlib): imported only when select runs
    from edgetl.pipeline.select import parse_candidates
    from edgetl.pipeline.select import select as run_select

    if candidates is None or isinstance(candidates, str):
        candidates = parse_candidates(candidates)
    return run_select(
        config, Path(out), candidates=list(candidates), budgets=budgets, boards=boards, bench=bench, engine=engine,
        weights=weights, force=force, progress=progress,
    )
