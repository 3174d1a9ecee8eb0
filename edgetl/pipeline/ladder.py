"""``build --target auto``: the quantization ladder.

From the trained float model, the ladder makes one variant per rung (dynamic-range, fp16, fp32,
int8 PTQ, int16x8, ONNX fp32 and int8, int8 QAT, selective int8), cheapest to make first; it
measures each ON the board (held-out top-1, its drop against the float model in points, the exact
McNemar test on the paired predictions) and times it with the ``edgetl bench`` harness at the
thread counts that make sense there; then it keeps the fastest variant that meets every budget
(``--max-drop``, ``--budget-ms``, ``--ram-budget``, ``--flash-budget``).

Three parts, kept apart so each can be tested alone:

- :data:`RUNGS`: the rungs as data (what each is made from and how dear it is to make).
- :func:`choose` (pure): given the figures and the budgets, the winner and a reason for every other
  variant; :func:`skip_reason` (pure): whether a rung can be skipped, before it is made, because
  what is already measured proves it cannot win.
- :func:`run_ladder`: makes, measures and writes the variants (``<name>/ladder/<variant>/``) and the
  winner (``<name>/auto/``), with ``ladder.json`` and a report.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import fs as _fs
from edgetl.core.config import LadderConfig
from edgetl.core.errors import ConfigError, EdgetlError
from edgetl.core.progress import Progress, log_progress
from edgetl.core.units import human_size, parse_size

log = logging.getLogger(__name__)

AUTO_TARGET = "auto"
LADDER_JSON = "ladder.json"
LADDER_SCHEMA = 1
#: Two p50s within this fraction of each other are a tie (timing noise): accuracy, then size decides.
LATENCY_TIE = 0.02


# ----------------------------------------------------------------------------- the rungs
@dataclass(frozen=True)
class Rung:
    """One variant the ladder can make.

    Attributes:
        name: folder name under ``ladder/`` (``int8-ptq``).
        label: how messages name it (``int8 PTQ``).
        target: the export target that writes it.
        source: the model it is exported from: ``float`` (the float model as it is), ``ptq`` (the float
            model calibrated on training images), ``qat`` (the QAT model: QAT training first) or
            ``selective`` (int8 with ``keep_float`` layers kept in float).
        cost: relative cost to make (1: a conversion; QAT: a training run).
        keep_float: selective int8: layers kept in float.
    """

    name: str
    label: str
    target: str
    source: str
    cost: int
    keep_float: int = 0

    @property
    def full_int8(self) -> bool:
        return self.source in ("ptq", "qat") and self.target in ("tflite-int8", "onnx-int8")


#: Cheapest to make first. Selective int8 comes last: it is tried only when no full-int8 variant meets --max-drop.
RUNGS: tuple[Rung, ...] = (
    Rung("dynamic-range", "dynamic-range", "tflite-dynamic", "float", 1),
    Rung("fp16", "fp16", "tflite-fp16", "float", 1),
    Rung("fp32", "fp32", "tflite-fp32", "float", 1),
    Rung("int8-ptq", "int8 PTQ", "tflite-int8", "ptq", 2),
    Rung("int16x8", "int16x8", "tflite-int16x8", "ptq", 2),
    Rung("onnx-fp32", "ONNX fp32", "onnx-fp32", "float", 2),
    Rung("onnx-int8", "ONNX int8", "onnx-int8", "ptq", 3),
    Rung("int8-qat", "int8 QAT", "tflite-int8", "qat", 20),
    Rung("selective-int8-1", "selective int8 (1 float layer)", "tflite-int8", "selective", 8, keep_float=1),
    Rung("selective-int8-2", "selective int8 (2 float layers)", "tflite-int8", "selective", 8, keep_float=2),
    Rung("selective-int8-4", "selective int8 (4 float layers)", "tflite-int8", "selective", 8, keep_float=4),
)
RUNG_BY_NAME = {rung.name: rung for rung in RUNGS}


# ----------------------------------------------------------------------------- figures and budgets
@dataclass(frozen=True)
class Figures:
    """One variant at one thread count, as measured.

    Attributes:
        variant: the rung's name; label: how messages name it.
        threads: threads it was timed with; p50_ms: its median latency (None: not timed).
        top1: held-out top-1 (0..1) on the board; drop_pts: float top-1 minus this, in points.
        p_value: exact McNemar p-value against the float model's predictions (None: not computed).
        size_bytes: the model file; flash_bytes: what it takes in flash (None: the file size).
        arena_bytes: the TFLite Micro tensor arena (None: not measured).
    """

    variant: str
    label: str
    threads: int
    p50_ms: float | None
    top1: float
    drop_pts: float
    p_value: float | None
    size_bytes: int
    arena_bytes: int | None = None
    flash_bytes: int | None = None

    @property
    def flash(self) -> int:
        return self.size_bytes if self.flash_bytes is None else self.flash_bytes


@dataclass(frozen=True)
class Budgets:
    """What the shipped variant must meet; None: no such budget.

    Attributes:
        max_drop: points of held-out top-1 it may lose against the float model.
        budget_ms: its p50 latency on the board, in milliseconds.
        ram_bytes: its TFLite Micro tensor arena; flash_bytes: its size in flash (the model file).
    """

    max_drop: float | None = None
    budget_ms: float | None = None
    ram_bytes: int | None = None
    flash_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Miss:
    """A budget a variant misses: the flag, what was measured against it, and by how much (a fraction of the budget)."""

    flag: str
    text: str
    excess: float


def _fmt_ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def misses(fig: Figures, budgets: Budgets) -> list[Miss]:
    """Every budget ``fig`` misses (empty: it meets them all). A budget that was not measured is missed too."""
    out: list[Miss] = []
    if budgets.max_drop is not None and fig.drop_pts > budgets.max_drop + 1e-9:
        excess = (fig.drop_pts - budgets.max_drop) / max(budgets.max_drop, 1.0)
        out.append(Miss("--max-drop", f"drop {fig.drop_pts:.1f} pts > {budgets.max_drop:g}", excess))
    if budgets.budget_ms is not None:
        if fig.p50_ms is None:
            out.append(Miss("--budget-ms", "p50 not measured", math.inf))
        elif fig.p50_ms > budgets.budget_ms:
            out.append(Miss("--budget-ms", f"p50 {_fmt_ms(fig.p50_ms)} ms > {budgets.budget_ms:g} ms", fig.p50_ms / budgets.budget_ms - 1))
    if budgets.ram_bytes is not None:
        if fig.arena_bytes is None:
            out.append(Miss("--ram-budget", "tensor arena not measured (TFLite Micro cannot run it)", math.inf))
        elif fig.arena_bytes > budgets.ram_bytes:
            text = f"arena {human_size(fig.arena_bytes)} > {human_size(budgets.ram_bytes)}"
            out.append(Miss("--ram-budget", text, fig.arena_bytes / budgets.ram_bytes - 1))
    if budgets.flash_bytes is not None and fig.flash > budgets.flash_bytes:
        out.append(Miss("--flash-budget", f"size {human_size(fig.flash)} > {human_size(budgets.flash_bytes)}", fig.flash / budgets.flash_bytes - 1))
    return out


def _row_label(fig: Figures, multi_thread: bool) -> str:
    return f"{fig.label} @{fig.threads} thread{'s' if fig.threads != 1 else ''}" if multi_thread else fig.label


@dataclass
class Choice:
    """What :func:`choose` decided.

    Attributes:
        winner: the figures of the variant (and thread count) to ship; None: nothing fits.
        rows: one per figures given, in the order given: its fields plus ``name`` (label with the thread
            count where a variant was timed at several), ``status`` (``chosen``/``rejected``) and ``reason``.
        closest: with no winner, the variant nearest to fitting; ``closest_misses`` the budgets it misses.
    """

    winner: Figures | None
    rows: list[dict[str, Any]]
    closest: Figures | None = None
    closest_misses: list[Miss] = field(default_factory=list)


def _speed(fig: Figures) -> float:
    return math.inf if fig.p50_ms is None else fig.p50_ms


def choose(figures: list[Figures], budgets: Budgets, *, tie: float = LATENCY_TIE) -> Choice:
    """The fastest variant that meets every budget; ties (p50s within ``tie`` of the fastest) go to
    the higher top-1, then the smaller file, then the lower p50.

    Pure: it decides from the figures alone. Every variant not chosen gets a reason: the budgets it
    misses ("int8 PTQ: drop 2.3 pts > 1.0", "fp32: p50 7.4 ms > 5 ms"), or, when it meets them all,
    why the winner beat it. With no winner, ``closest`` is the variant that misses the fewest budgets,
    by the least (the sum of how far over each it is, as a fraction of the budget).
    """
    counts: dict[str, set[int]] = {}
    for fig in figures:
        counts.setdefault(fig.variant, set()).add(fig.threads)
    names = [_row_label(fig, len(counts[fig.variant]) > 1) for fig in figures]
    found = [misses(fig, budgets) for fig in figures]
    passing = [i for i, miss in enumerate(found) if not miss]
    winner_index = None
    if passing:
        fastest = min(_speed(figures[i]) for i in passing)
        tied = [i for i in passing if _speed(figures[i]) <= fastest * (1 + tie)]
        winner_index = min(tied, key=lambda i: (-figures[i].top1, figures[i].size_bytes, _speed(figures[i]), i))
    rows = []
    for i, fig in enumerate(figures):
        row = {"name": names[i], **asdict(fig)}
        if i == winner_index:
            row.update(status="chosen", reason=f"{names[i]}: the fastest variant that meets every budget")
        elif found[i]:
            row.update(status="rejected", reason=f"{names[i]}: " + "; ".join(m.text for m in found[i]))
        else:
            win = figures[winner_index]
            if _speed(fig) > _speed(win) * (1 + tie):
                why = f"p50 {_fmt_ms(_speed(fig))} ms, slower than {names[winner_index]}'s {_fmt_ms(_speed(win))} ms"
            elif fig.top1 < win.top1:
                why = f"as fast as {names[winner_index]} but top-1 {100 * fig.top1:.1f}% < {100 * win.top1:.1f}%"
            elif fig.size_bytes > win.size_bytes:
                why = f"as fast and as accurate as {names[winner_index]} but larger ({human_size(fig.size_bytes)} > {human_size(win.size_bytes)})"
            else:
                why = f"ties with {names[winner_index]}, which came first"
            row.update(status="rejected", reason=f"{names[i]}: meets every budget, but {why}")
        rows.append(row)
    if winner_index is not None:
        return Choice(figures[winner_index], rows)
    if not figures:
        return Choice(None, rows)
    closest = min(range(len(figures)), key=lambda i: (len(found[i]), sum(m.excess for m in found[i]), _speed(figures[i]), i))
    return Choice(None, rows, figures[closest], found[closest])


def no_fit_message(choice: Choice, ladder_json: Path | str | None = None) -> str:
    """The one-line error when nothing fits: the closest variant and which budget(s) it misses."""
    where = f"; every variant's figures are in {ladder_json}" if ladder_json else ""
    if choice.closest is None:
        return f"no variant of the ladder could be made or measured{where}"
    fig, missed = choice.closest, choice.closest_misses
    flags = " and ".join(dict.fromkeys(m.flag for m in missed))
    label = _row_label(fig, sum(row["variant"] == fig.variant for row in choice.rows) > 1)
    return (
        f"no variant meets the budgets: the closest, {label}, misses {flags} ({'; '.join(m.text for m in missed)}){where}; "
        f"relax {flags} or train a smaller or more accurate model"
    )


# ----------------------------------------------------------------------------- early stopping
def skip_reason(rung: Rung, figures: list[Figures], budgets: Budgets, made: set[str]) -> str | None:
    """Why ``rung`` need not be made, given what is measured so far (``made``: rungs already made); None: make it.

    Only what is provable from the figures: QAT int8 has the same graph, kernels, size and arena as PTQ
    int8 (only the ranges differ), so it cannot be faster or smaller; a selective int8 variant keeps
    layers of the int8 graph in float, so it is no faster than full int8 and is needed only for accuracy.
    """
    by_variant: dict[str, list[Figures]] = {}
    for fig in figures:
        by_variant.setdefault(fig.variant, []).append(fig)

    def passes(name: str) -> bool:
        return any(not misses(fig, budgets) for fig in by_variant.get(name, []))

    def fastest(name: str) -> Figures | None:
        rows = [fig for fig in by_variant.get(name, []) if fig.p50_ms is not None]
        return min(rows, key=lambda fig: fig.p50_ms) if rows else None

    ptq = fastest("int8-ptq")
    if rung.source == "qat":
        if passes("int8-ptq"):
            return "int8 PTQ already meets every budget; int8 QAT has the same graph and latency, so it cannot be faster"
        if ptq is not None and budgets.budget_ms is not None and ptq.p50_ms > budgets.budget_ms:
            return f"int8 PTQ's best p50 {_fmt_ms(ptq.p50_ms)} ms > {budgets.budget_ms:g} ms; int8 QAT has the same graph, so it cannot meet --budget-ms"
        if ptq is not None and budgets.flash_bytes is not None and ptq.flash > budgets.flash_bytes:
            return f"int8 PTQ's size {human_size(ptq.flash)} > {human_size(budgets.flash_bytes)}; int8 QAT is the same size"
        if ptq is not None and budgets.ram_bytes is not None and ptq.arena_bytes is not None and ptq.arena_bytes > budgets.ram_bytes:
            return f"int8 PTQ's arena {human_size(ptq.arena_bytes)} > {human_size(budgets.ram_bytes)}; int8 QAT needs the same arena"
    if rung.source == "selective":
        full = [name for name, r in RUNG_BY_NAME.items() if r.full_int8]
        winner = next((name for name in full if passes(name)), None)
        if winner is not None:
            return f"{RUNG_BY_NAME[winner].label} already meets every budget; selective int8 is only for when no full-int8 variant meets --max-drop"
        if budgets.max_drop is None:
            return "no --max-drop: selective int8 trades speed for accuracy, and no accuracy budget asks for it"
        if ptq is not None and budgets.budget_ms is not None and ptq.p50_ms > budgets.budget_ms:
            return f"int8 PTQ's best p50 {_fmt_ms(ptq.p50_ms)} ms > {budgets.budget_ms:g} ms; selective int8 is no faster"
        smaller = [r for r in RUNGS if r.source == "selective" and r.keep_float < rung.keep_float and r.name in made]
        done = next((r for r in smaller if passes(r.name)), None)
        if done is not None:
            return f"{done.label} already meets every budget; more float layers cannot be faster"
    return None


# ----------------------------------------------------------------------------- boards
def ladder_board_specs(settings) -> list:
    """The ``--on`` board as :class:`edgetl.bench.boards.BoardSpec` (checked, not contacted), with the SSH settings."""
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench import boards

    return boards.parse_boards(
        [settings.on] if settings.on else [], identity=settings.identity, known_hosts=settings.known_hosts,
        python=settings.remote_python or "python3",
    )


@contextlib.contextmanager
def open_ladder_board(settings) -> Iterator[Any]:
    """The board the ladder measures on: ``local`` (default), ``ssh://user@host[:port]`` or ``arm64-emulated``
    (:mod:`edgetl.bench.boards`; one board: the ladder chooses for one device)."""
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench import boards

    on = settings.on
    specs = ladder_board_specs(settings)
    if len(specs) != 1:
        raise ConfigError(f"Received --on {on!r}; the ladder chooses for one board: pass one of local, ssh://user@host[:port], arm64-emulated")
    with boards.open_board(specs[0]) as board:
        yield board


def board_threads(board: Any, requested: list[int] | None) -> list[int]:
    """``requested``, else 1 and the board's cores (1 alone on a one-core board)."""
    if requested:
        return list(dict.fromkeys(int(t) for t in requested))
    try:
        cores = int((board.machine() or {}).get("cores") or 1)
    except (EdgetlError, OSError, TypeError, ValueError):
        cores = os.cpu_count() or 1
    return [1] if cores <= 1 else [1, cores]


# ----------------------------------------------------------------------------- making variants as jobs
def ladder_engine(settings):
    """Where the conversion variants are made (``--workers`` / ``--cluster``): :class:`edgetl.core.jobs.Engine`."""
    # dask.distributed: imported only when jobs run
    from edgetl.core.jobs import Engine

    return Engine(workers=settings.workers, address=settings.cluster)


def make_variant_job(job: dict[str, Any]) -> dict[str, Any]:
    """One conversion rung made on a worker (:func:`edgetl.core.jobs.run_jobs`): the float model comes as the
    bytes of its file and the made folder goes back as bytes, so the worker may be another machine.

    Args:
        job: ``rung`` (name), ``model_bytes`` and ``model_suffix`` (the float model file), ``trust_model``,
            ``config``, ``class_names``, ``contract`` (dict), ``representative`` and ``pixels`` (uint8 arrays).

    Returns:
        ``files`` ({name: bytes}), ``metadata``, ``verification``, ``probs``, ``make_s``; or ``error`` (one
        line) when the variant cannot be made, as the ladder made here records it.
    """
    import tempfile

    # TensorFlow loads with these, in the worker process that makes the variant
    from edgetl.core.contract import PreprocessContract
    from edgetl.export.run import export_verified
    from edgetl.ml.keras_safety import load_keras_model

    rung = RUNG_BY_NAME[job["rung"]]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgetl-variant-") as tmp:
        model_file = Path(tmp) / f"float{job['model_suffix']}"
        model_file.write_bytes(job["model_bytes"])
        try:
            model = load_keras_model(model_file, trust=job["trust_model"])
            folder = Path(tmp) / rung.name
            exported = export_verified(
                model, rung.target, folder, class_names=job["class_names"], contract=PreprocessContract.from_dict(job["contract"]),
                representative=job["representative"] if rung.source != "float" else None, config=job["config"], pixels=job["pixels"],
            )
        except ImportError as exc:
            return {"error": f"cannot be made here ({exc})", "skipped": True}
        except EdgetlError as exc:
            return {"error": f"could not be made ({exc})"}
        files = {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}
        return {
            "files": files, "artifact": exported.artifact.name, "metadata": exported.metadata, "verification": exported.verification,
            "probs": exported.probs, "verify_s": exported.verify_s, "make_s": time.perf_counter() - start,
        }


def _premade(rungs: list[Rung], engine, *, float_file: Path, trust_model: bool, config, class_names, contract, representative, pixels, progress) -> dict[str, dict]:
    """The conversion rungs made in parallel on ``engine``'s workers, by rung name."""
    # dask.distributed: imported only when jobs run
    from edgetl.core.jobs import run_jobs

    model_bytes = Path(float_file).read_bytes()
    common = {
        "model_bytes": model_bytes, "model_suffix": Path(float_file).suffix, "trust_model": trust_model, "config": config,
        "class_names": list(class_names), "contract": contract.to_dict(), "representative": representative, "pixels": pixels,
    }
    log.info("ladder: making %d variants on %s", len(rungs), engine.describe())
    results = run_jobs(
        make_variant_job, [{**common, "rung": rung.name} for rung in rungs], engine, progress=progress, task="ladder variants",
        labels=[rung.label for rung in rungs],
    )
    return {rung.name: result for rung, result in zip(rungs, results, strict=True)}


def _unpack(result: dict[str, Any], folder: Path):
    """A job's folder written here: the :class:`~edgetl.export.run.VerifiedExport` the ladder measures."""
    # TensorFlow loads with these: imported only when a model is converted
    from edgetl.export.run import VerifiedExport

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in result["files"].items():
        _fs.write_bytes(folder / name, data)
    return VerifiedExport(folder / result["artifact"], folder, result["metadata"], result["verification"], result["probs"], result["verify_s"])


# ----------------------------------------------------------------------------- the run
@dataclass
class LadderResult:
    """What :func:`run_ladder` made: the ``ladder.json`` document, the choice, and the shipped folder (None: nothing fits)."""

    doc: dict[str, Any]
    choice: Choice
    shipped: Path | None
    artifact: Path | None


def budgets_from(config) -> Budgets:
    """:class:`Budgets` from the ``[ladder]`` section."""
    ladder = ladder_settings(config)
    return Budgets(
        max_drop=ladder.max_drop,
        budget_ms=ladder.budget_ms,
        ram_bytes=parse_size(ladder.ram_budget, "--ram-budget") if ladder.ram_budget else None,
        flash_bytes=parse_size(ladder.flash_budget, "--flash-budget") if ladder.flash_budget else None,
    )


def _export_selective(float_model, rung: Rung, folder: Path, *, class_names, contract, representative, config, ranking: dict[str, Any]):
    """Selective int8 (:mod:`edgetl.export.selective`): int8 except the ``rung.keep_float`` ops int8 hurts most,
    with labels and metadata as every variant folder has; the sensitivity ranking is made once and kept in ``ranking``."""
    # TensorFlow loads with these: imported only when a model is converted
    from edgetl.core.metadata import ArtifactMetadata, package_versions, write_labels
    from edgetl.export import selective
    from edgetl.export.run import VerifiedExport

    artifact, facts = selective.export_selective(
        float_model, folder, keep_float=rung.keep_float, representative=representative, contract=contract,
        class_names=class_names, sensitivity=ranking.get("sensitivity"),
    )
    ranking["sensitivity"] = facts.get("sensitivity")
    write_labels(Path(folder) / "labels.txt", class_names)
    kept = {k: v for k, v in facts.items() if k != "sensitivity"}
    kept["most_sensitive"] = [
        {k: e.get(k) for k in ("rank", "tensor", "op", "layer", "score")} for e in (facts.get("sensitivity") or [])[: max(rung.keep_float, 8)]
    ]
    meta = ArtifactMetadata.create(
        kind="tflite", target=selective.SELECTIVE_TARGET, model_file=artifact.name, dtype="int8-selective", runtime="litert",
        backbone=config.model.name, class_names=class_names, preprocessing=contract.to_dict(), size_bytes=artifact.stat().st_size,
        selective=kept, versions=package_versions(), config=config.to_toml_dict(),
    )
    return VerifiedExport(artifact, Path(folder), meta, {}, np.zeros((0, len(class_names)), np.float32))


def _arena(artifact: Path) -> tuple[int | None, str | None]:
    """The TFLite Micro arena of a .tflite model (None and why where it cannot run there)."""
    if artifact.suffix.lower() != ".tflite":
        return None, "TFLite Micro runs .tflite models only"
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.runtime.tflm import measure_arena

    try:
        return measure_arena(artifact.read_bytes()).min_bytes, None
    except EdgetlError as exc:
        return None, str(exc)


def run_ladder(
    config,
    *,
    float_model,
    class_names: list[str],
    contract,
    split,
    representative: np.ndarray,
    ladder_dir: Path,
    auto_dir: Callable[[], Path],
    make_qat: Callable[[], Any],
    supported_targets: list[str] | None = None,
    progress: Progress = log_progress,
    extra_metadata: dict[str, Any] | None = None,
    float_file: Path | None = None,
    trust_model: bool = False,
) -> LadderResult:
    """Make, measure and choose: every rung into ``ladder_dir/<variant>/``, the winner copied into ``auto_dir()``.

    Args:
        config: the build configuration; ``[ladder]`` holds the budgets, the board and the threads,
            ``[bench]`` the warm-up and runs of the timing.
        float_model, class_names, contract, split: the trained float model and the split it was trained on
            (accuracy is measured on ``split.val``).
        representative: calibration images for the int8 variants.
        ladder_dir: the (staged) ``<name>/ladder/`` folder; ``ladder.json`` and ``report.md`` are written there.
        auto_dir: called once, only when a variant fits: the (staged) ``<name>/auto/`` folder.
        make_qat: called at most once, when the QAT rung is made: the QAT Keras model.
        float_file, trust_model: the float model's file (how ``--workers`` / ``--cluster`` jobs get it) and whether
            it loads without the code check there. With several workers, the conversion rungs (every rung but
            QAT and selective, which depend on what is measured first) are made in parallel; timing and
            accuracy are then measured here, one variant after another.
        supported_targets: the backbone's targets; rungs for other targets are skipped.
        extra_metadata: stamped into the shipped folder's ``edgetl.json``.

    Returns:
        The ladder document, the choice, and the shipped folder and artifact (None when nothing fits:
        the caller raises :class:`BudgetError` with :func:`no_fit_message` after the ladder is written).
    """
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench.boards import bench_on
    from edgetl.bench.options import BenchOptions
    from edgetl.device.evaluate import compute_metrics
    from edgetl.device.paired import mcnemar_exact
    from edgetl.export.run import export_verified
    from edgetl.export.targets import TARGETS
    from edgetl.ml.model_io import predict_pixels

    budgets = budgets_from(config)
    wanted = set(ladder_settings(config).variants) if ladder_settings(config).variants else None
    ladder_dir = Path(ladder_dir)
    labels = np.asarray(split.val.y)
    pixels = split.val.x
    float_probs = predict_pixels(float_model, pixels, contract)
    float_top1 = compute_metrics(float_probs, labels, class_names).top1
    float_correct = np.argmax(float_probs, 1) == labels
    figures: list[Figures] = []
    variants: list[dict[str, Any]] = []
    made: set[str] = set()
    folders: dict[str, Path] = {}
    qat_model = None
    ranking: dict[str, Any] = {}  # selective int8: the per-layer sensitivity, measured once for every rung
    start_all = time.perf_counter()
    with open_ladder_board(ladder_settings(config)) as board:
        threads = board_threads(board, ladder_settings(config).threads)
        options = BenchOptions(threads=tuple(threads), warmup=config.bench.warmup, runs=config.bench.runs, profile_runs=0)
        engine = ladder_engine(ladder_settings(config))
        premade: dict[str, dict] = {}
        parallel = [
            rung for rung in RUNGS if rung.source in ("float", "ptq") and (wanted is None or rung.name in wanted)
            and rung.target in TARGETS and (supported_targets is None or rung.target in supported_targets)
        ]
        if engine.distributed and float_file is not None and len(parallel) > 1:
            premade = _premade(
                parallel, engine, float_file=float_file, trust_model=trust_model, config=config, class_names=class_names,
                contract=contract, representative=representative, pixels=pixels, progress=progress,
            )
        for index, rung in enumerate(RUNGS):
            progress("ladder", index, len(RUNGS), rung.label)
            entry: dict[str, Any] = {"variant": rung.name, "label": rung.label, "target": rung.target, "source": rung.source, "cost": rung.cost}
            reason = None
            if wanted is not None and rung.name not in wanted:
                reason = "not among the variants asked for (--variants)"
            elif rung.target not in TARGETS:
                reason = f"target {rung.target} is not available in this edgetl"
            elif supported_targets is not None and rung.target not in supported_targets:
                reason = f"{config.model.name} does not support target {rung.target}"
            else:
                reason = skip_reason(rung, figures, budgets, made)
            if reason is not None:
                log.info("ladder: skip %s: %s", rung.label, reason)
                status = "not requested" if wanted is not None and rung.name not in wanted else "skipped"
                variants.append({**entry, "status": status, "reason": f"{rung.label}: {reason}"})
                continue
            start = time.perf_counter()
            folder = ladder_dir / rung.name
            job = premade.get(rung.name)
            if job is not None and "error" in job:
                log.warning("ladder: %s %s", rung.label, job["error"])
                variants.append({**entry, "status": "skipped" if job.get("skipped") else "failed", "reason": f"{rung.label}: {job['error']}"})
                continue
            try:
                if job is not None:
                    exported = _unpack(job, folder)
                elif rung.source == "selective":
                    exported = _export_selective(
                        float_model, rung, folder, class_names=class_names, contract=contract, representative=representative,
                        config=config, ranking=ranking,
                    )
                else:
                    if rung.source == "qat":
                        qat_model = qat_model if qat_model is not None else make_qat()
                    exported = export_verified(
                        qat_model if rung.source == "qat" else float_model, rung.target, folder, class_names=class_names,
                        contract=contract, representative=representative if rung.source != "float" else None, config=config, pixels=pixels,
                    )
            except ImportError as exc:
                variants.append({**entry, "status": "skipped", "reason": f"{rung.label}: cannot be made here ({exc})"})
                continue
            except EdgetlError as exc:
                log.warning("ladder: %s could not be made: %s", rung.label, exc)
                variants.append({**entry, "status": "failed", "reason": f"{rung.label}: could not be made ({exc})"})
                continue
            make_s = job["make_s"] if job is not None else time.perf_counter() - start
            exported.stamp({"ladder": {"variant": rung.name, "source": rung.source}})  # the board reads the contract from it
            try:
                probs = board.predict_artifact(exported.artifact, pixels)
                bench = bench_on(board, [exported.artifact], options)
            except EdgetlError as exc:
                log.warning("ladder: %s could not be measured on %s: %s", rung.label, board.label, exc)
                variants.append({**entry, "status": "failed", "reason": f"{rung.label}: could not be measured on {board.label} ({exc})"})
                continue
            made.add(rung.name)
            folders[rung.name] = folder
            top1 = compute_metrics(probs, labels, class_names).top1
            paired = mcnemar_exact(np.argmax(probs, 1) == labels, float_correct)
            arena, arena_note = _arena(exported.artifact) if budgets.ram_bytes is not None else (None, None)
            size = int(exported.artifact.stat().st_size)
            results = bench["artifacts"][0]["results"]
            for result in results:
                figures.append(Figures(
                    rung.name, rung.label, int(result["threads"]), float(result["stats"]["p50_ms"]), float(top1),
                    100.0 * (float_top1 - top1), paired["p_value"], size, arena,
                ))
            accuracy = {
                "split": "validation", "images": int(len(labels)), "top1": top1, "float_top1": float_top1,
                "drop_pts": 100.0 * (float_top1 - top1), "mcnemar_vs_float": paired, "measured_on": board.label,
            }
            latency = [{"threads": r["threads"], "p50_ms": r["stats"]["p50_ms"], "p90_ms": r["stats"]["p90_ms"], "p99_ms": r["stats"]["p99_ms"]} for r in results]
            variants.append({
                **entry, "status": "measured", "folder": f"{rung.name}/", "file": exported.artifact.name, "size_bytes": size,
                "arena_bytes": arena, **({"arena_note": arena_note} if arena_note else {}),
                "accuracy": accuracy, "latency": latency, "make_s": round(make_s, 2),
                **({"selective": _selective_cost(exported.metadata.get("selective") or {}, latency, variants)} if rung.source == "selective" else {}),
            })
            exported.stamp({"ladder": {"variant": rung.name, "source": rung.source, "accuracy": accuracy, "latency": latency, "board": board.label}})
            _fs.write_json(folder / "bench.json", bench)  # the harness document, as `edgetl bench` writes it
        progress("ladder", len(RUNGS), len(RUNGS), "")
        board_record = {"label": board.label, "emulated": bool(getattr(board, "emulated", False)), "machine": board.machine()}

    choice = choose(figures, budgets)
    reasons = {row["variant"]: [] for row in choice.rows}
    for row in choice.rows:
        reasons[row["variant"]].append(row)
    for entry in variants:
        if entry["status"] == "measured":
            rows = reasons.get(entry["variant"], [])
            entry["rows"] = [{k: row[k] for k in ("threads", "p50_ms", "status", "reason")} for row in rows]
            chosen = any(row["status"] == "chosen" for row in rows)
            entry["status"] = "chosen" if chosen else "rejected"
            entry["reason"] = next((row["reason"] for row in rows if row["status"] == "chosen"), None) or _best_reason(rows)
    doc: dict[str, Any] = {
        "schema_version": LADDER_SCHEMA,
        "kind": "edgetl-ladder",
        "budgets": budgets.to_dict(),
        "board": board_record,
        "threads": threads,
        "bench": options.to_dict(),
        "float_top1": float_top1,
        "images": int(len(labels)),
        "latency_tie": LATENCY_TIE,
        "made_on": engine.describe(),
        "variants": variants,
        "winner": None,
        "seconds": round(time.perf_counter() - start_all, 1),
    }
    shipped = artifact = None
    if choice.winner is not None:
        win = choice.winner
        shipped_target = _fs.read_json(folders[win.variant] / _fs.MARKER).get("target") or RUNG_BY_NAME[win.variant].target
        doc["winner"] = {
            "variant": win.variant, "label": win.label, "target": shipped_target, "threads": win.threads,
            "p50_ms": win.p50_ms, "top1": win.top1, "drop_pts": win.drop_pts, "p_value": win.p_value, "size_bytes": win.size_bytes,
            "reason": next(row["reason"] for row in choice.rows if row["status"] == "chosen"),
        }
    else:
        doc["closest"] = {"variant": choice.closest.variant, "threads": choice.closest.threads, "misses": [m.flag for m in choice.closest_misses]} if choice.closest else None
    _fs.write_text(ladder_dir / LADDER_JSON, _json(doc))
    _fs.write_text(ladder_dir / "report.md", ladder_markdown(doc))
    _fs.write_text(ladder_dir / "report.html", ladder_html(doc))
    if choice.winner is not None:
        shipped = Path(auto_dir())
        source_folder = folders[choice.winner.variant]
        for item in source_folder.iterdir():
            if item.is_file():
                shutil.copy2(item, shipped / item.name)
        meta = _fs.read_json(shipped / _fs.MARKER)
        meta["ladder"] = {**meta.get("ladder", {}), "winner": doc["winner"], "ladder_json": f"../ladder/{LADDER_JSON}"}
        meta.update(extra_metadata or {})
        meta["chosen_by"] = "edgetl build --target auto"
        _fs.write_text(shipped / _fs.MARKER, _json(meta))
        _fs.write_text(shipped / LADDER_JSON, _json(doc))
        _fs.write_text(shipped / "report.md", ladder_markdown(doc))
        _fs.write_text(shipped / "report.html", ladder_html(doc))
        artifact = shipped / meta.get("model_file", "model.tflite")
    return LadderResult(doc, choice, shipped, artifact)


def _selective_cost(facts: dict[str, Any], latency: list[dict[str, Any]], variants: list[dict[str, Any]]) -> dict[str, Any]:
    """What a selective int8 variant keeps in float and what that costs: its p50 against int8 PTQ's at each thread count."""
    ptq = next((v for v in variants if v["variant"] == "int8-ptq" and "latency" in v), None)
    ptq_p50 = {r["threads"]: r["p50_ms"] for r in ptq["latency"]} if ptq else {}
    return {
        "float_layers": [layer or node for layer, node in zip(facts.get("keep_float_layers") or [], facts.get("keep_float") or [], strict=False)],
        "float_compute_ops": facts.get("float_compute_ops"),
        "p50_vs_int8_ptq": {str(r["threads"]): round(r["p50_ms"] / ptq_p50[r["threads"]], 3) for r in latency if ptq_p50.get(r["threads"])},
    }


def _best_reason(rows: list[dict[str, Any]]) -> str | None:
    """One reason for a variant timed at several thread counts: the rows' reasons, said once when they agree."""
    if len(rows) <= 1:
        return rows[0]["reason"] if rows else None
    bodies = [row["reason"].split(": ", 1)[-1] for row in rows]
    if len(set(bodies)) == 1:
        return f"{rows[0]['label']}: {bodies[0]}"
    return "; ".join(row["reason"] for row in rows)


def _json(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc, indent=1, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def ladder_markdown(doc: dict[str, Any]) -> str:
    """The ladder section of a report: budgets, every variant with its figures and why it was kept or rejected."""
    b = doc["budgets"]
    budget_text = ", ".join(
        text for text in (
            f"max drop {b['max_drop']:g} pts" if b.get("max_drop") is not None else None,
            f"p50 <= {b['budget_ms']:g} ms" if b.get("budget_ms") is not None else None,
            f"RAM <= {human_size(b['ram_bytes'])}" if b.get("ram_bytes") is not None else None,
            f"flash <= {human_size(b['flash_bytes'])}" if b.get("flash_bytes") is not None else None,
        ) if text
    ) or "none"
    board = doc["board"]
    lines = [
        "## Quantization ladder", "",
        f"Budgets: {budget_text}. Measured on {board['label']}{' (emulated: latency is not the device’s)' if board.get('emulated') else ''}; "
        f"float top-1 {100 * doc['float_top1']:.1f}% on {doc['images']} held-out images; threads {', '.join(map(str, doc['threads']))}.", "",
    ]
    winner = doc.get("winner")
    lines.append(f"**Shipped: {winner['label']} @{winner['threads']} thread(s)**: {winner['reason']}." if winner else "**Nothing fits the budgets.**")
    lines += ["", "| variant | status | top-1 | drop (pts) | McNemar p | size | p50 ms by threads | reason |", "|---|---|---:|---:|---:|---:|---|---|"]
    for v in doc["variants"]:
        if "accuracy" in v:
            acc = v["accuracy"]
            p50 = ", ".join(f"{r['threads']}: {r['p50_ms']:.3f}" for r in v["latency"])
            lines.append(
                f"| {v['label']} | {v['status']} | {100 * acc['top1']:.1f}% | {acc['drop_pts']:.1f} | {acc['mcnemar_vs_float']['p_value']:.3g} | "
                f"{human_size(v['size_bytes'])} | {p50} | {(v.get('reason') or '').replace('|', '/')} |"
            )
        else:
            lines.append(f"| {v['label']} | {v['status']} | | | | | | {(v.get('reason') or '').replace('|', '/')} |")
    for v in doc["variants"]:
        cost = v.get("selective")
        if cost:
            ratios = ", ".join(f"{ratio:.2f}x @{threads}" for threads, ratio in cost["p50_vs_int8_ptq"].items()) or "not compared"
            lines.append(
                f"\n{v['label']}: kept in float {', '.join(map(str, cost['float_layers'])) or 'nothing'} "
                f"({cost['float_compute_ops']} float compute ops); p50 against int8 PTQ: {ratios}."
            )
    return "\n".join(lines) + "\n"


_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}td.n{text-align:right}"
    "tr.chosen{background:#e6f4ea;font-weight:600}tr.skipped,tr.failed{color:#777}"
)


def ladder_html(doc: dict[str, Any]) -> str:
    """The ladder as one self-contained HTML page (no scripts, no external files): the markdown report's table."""
    from html import escape

    def cell(value: Any, numeric: bool = False) -> str:
        return f"<td{' class=n' if numeric else ''}>{escape(str(value))}</td>"

    win = doc.get("winner")
    head = (
        f"Shipped: {win['label']} @{win['threads']} thread(s), p50 {win['p50_ms']:.3f} ms, top-1 {100 * win['top1']:.1f}% "
        f"(drop {win['drop_pts']:.1f} pts)" if win else "Nothing fits the budgets."
    )
    rows = []
    for v in doc["variants"]:
        if v["status"] == "not requested":
            continue
        acc = v.get("accuracy")
        p50 = ", ".join(f"{r['p50_ms']:.3f} @{r['threads']}" for r in v.get("latency", []))
        rows.append(
            f"<tr class=\"{escape(v['status'])}\">" + cell(v["label"]) + cell(v["status"])
            + cell(f"{100 * acc['top1']:.1f}%" if acc else "", True) + cell(f"{acc['drop_pts']:.1f}" if acc else "", True)
            + cell(f"{acc['mcnemar_vs_float']['p_value']:.3g}" if acc else "", True)
            + cell(human_size(v["size_bytes"]) if "size_bytes" in v else "", True) + cell(p50) + cell(v.get("reason") or "") + "</tr>"
        )
    markdown_head = ladder_markdown(doc).split("\n")[2]  # the budgets and board sentence
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>edgetl quantization ladder</title>"
        f"<style>{_HTML_STYLE}</style></head><body><h1>Quantization ladder</h1><p>{escape(markdown_head)}</p>"
        f"<p><strong>{escape(head)}</strong></p><table><thead><tr><th>variant</th><th>status</th><th>top-1</th><th>drop (pts)</th>"
        "<th>McNemar p vs float</th><th>size</th><th>p50 ms @threads</th><th>reason</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></body></html>\n"
    )


def ladder_settings(config):
    """The ``[ladder]`` section (all off when the configuration has none)."""
    return config.ladder if config.ladder is not None else LadderConfig()


def check_ladder_config(config) -> None:
    """``[ladder]`` settings belong to ``--target auto`` only, and auto needs ``--max-drop``.

    Raises:
        ConfigError: ladder settings with another target, ``--target auto`` without ``--max-drop``, or with ``--package``.
    """
    given = [f"--{k.replace('_', '-')}" for k in ladder_settings(config).model_dump(exclude_none=True, exclude_defaults=True)]
    if config.target != AUTO_TARGET:
        if given:
            raise ConfigError(
                f"Received {', '.join(given)} with --target {config.target}; these budgets choose among the ladder's variants: "
                "pass --target auto, or drop them"
            )
        return
    unknown = [name for name in ladder_settings(config).variants or [] if name not in RUNG_BY_NAME]
    if unknown:
        raise ConfigError(f"Received --variants {','.join(unknown)}; the ladder's rungs are {', '.join(RUNG_BY_NAME)}")
    settings = ladder_settings(config)
    if settings.on or settings.identity or settings.known_hosts or settings.remote_python:
        # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
        from edgetl.bench import boards

        specs = ladder_board_specs(settings)  # checked, not contacted: a bad URL fails before training
        if len(specs) != 1:
            raise ConfigError(f"Received --on {settings.on!r}; the ladder chooses for one board: pass one of local, ssh://user@host[:port], arm64-emulated")
        if specs[0].kind == boards.ARM64_EMULATED and settings.budget_ms is not None:
            raise ConfigError(
                "Received --budget-ms with --on arm64-emulated; emulated timings are not latency figures (qemu translates every "
                "instruction): measure latency on the board itself (--on ssh://user@host) or drop --budget-ms"
            )
    ladder_engine(settings)  # a malformed --cluster address fails before training
    if settings.max_drop is None:
        raise ConfigError(
            "Received --target auto without --max-drop; pass the held-out top-1 points the shipped model may lose "
            "against the float model (e.g. --max-drop 1.0), and --budget-ms for latency"
        )
    if config.package.targets:
        raise ConfigError(
            "Received --package with --target auto; the shipped variant is known only after the ladder: "
            "build first, then `edgetl package` the <out>/<name>/auto/ model"
        )
