"""``edgetl experiment``: the transfer-learning FAQ answered by measurement on the user's own data.

- :func:`data_efficiency`: validation top-1 against images per class, for training from scratch,
  feature extraction (frozen backbone), edgetl's freeze-then-unfreeze fine-tuning and, when asked and
  available, L2-SP fine-tuning; several seeds per point, one fixed validation set.
- :func:`unfreeze_depth`: validation top-1 and training time against how many blocks are unfrozen
  from the top, plus the tutorial's literal choice (the FIRST N layers, from the input) for contrast.

Both write ``experiment.json`` (settings and every run) after each run, atomically, so an interrupted
experiment resumes: a rerun with the same settings skips the runs already recorded; different
settings in the same folder are refused in one line (``force`` starts over). Then a plot, a
self-contained ``report.html`` and a one-paragraph answer. The training itself is
:class:`edgetl.ml.experiment.TransferLab` (TensorFlow loads when an experiment starts).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.core import fs as _fs
from edgetl.core.config import BuildConfig
from edgetl.core.errors import ConfigError
from edgetl.core.progress import Progress, log_progress
from edgetl.pipeline.experiment_report import METHOD_LABELS, mean_interval, plot_curve, summary_table, write_html

log = logging.getLogger(__name__)

RESULT_FILE = "experiment.json"
REPORT_FILE = "report.html"
CURVE_PNG = "learning_curve.png"
DEPTH_PNG = "unfreeze_depth.png"
#: Version of the ``experiment.json`` layout.
FORMAT = 1
#: Epochs and patience from scratch when not given: it needs many more epochs than fine-tuning
#: before validation loss moves (see :mod:`edgetl.ml.train`).
SCRATCH_MIN_EPOCHS = 30
SCRATCH_MIN_PATIENCE = 8
MAX_SEEDS = 100


@dataclass
class ExperimentResult:
    """What an experiment wrote and found.

    Attributes:
        out_dir: the folder with ``experiment.json``, the PNG and ``report.html``.
        answer: the one-paragraph answer, as printed.
        runs: every run (this call's and the ones resumed from the file).
        trained: how many runs this call trained (0: all of them were already recorded).
        seconds: wall time of this call.
    """

    out_dir: Path
    answer: str
    runs: list[dict[str, Any]]
    trained: int
    seconds: float
    png: Path
    notes: list[str] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return self.out_dir / RESULT_FILE

    @property
    def html_path(self) -> Path:
        return self.out_dir / REPORT_FILE


# -- parsing -------------------------------------------------------------------------------------


def _parse_list(text: str, flag: str, allowed: str) -> list[str]:
    items = [part.strip() for part in str(text).split(",")]
    if not items or any(not item for item in items):
        raise ConfigError(f"{flag} {text!r} must be a comma-separated list, {allowed}")
    return items


def _parse_counts(text: str, flag: str, allowed: str, minimum: int) -> tuple[list[int], bool]:
    """Whole numbers >= ``minimum`` (sorted, no repeats) from a comma-separated ``text``, and whether ``all`` was given."""
    counts: set[int] = set()
    everything = False
    for item in _parse_list(text, flag, allowed):
        if item.lower() == "all":
            everything = True
        elif item.isascii() and item.isdecimal() and int(item) >= minimum:
            counts.add(int(item))
        else:
            raise ConfigError(f"{flag} {text!r}: {item!r} is not a number; give a comma-separated list {allowed}")
    return sorted(counts), everything


def parse_per_class(text: str) -> list[int | None]:
    """``"5,10,all"`` -> ``[5, 10, None]`` (None: every image of the training pool), sorted, no repeats.

    Raises:
        ConfigError: anything but positive whole numbers and ``all``.
    """
    allowed = "of images per class (whole numbers >= 1) and 'all', e.g. 5,10,20,50,all"
    sizes, everything = _parse_counts(text, "--per-class", allowed, 1)
    return [*sizes, *([None] if everything else [])]


def parse_depths(text: str) -> list[int | str]:
    """``"0,1,2,all"`` -> ``[0, 1, 2, "all"]``: blocks unfrozen from the top, sorted, no repeats.

    Raises:
        ConfigError: anything but whole numbers >= 0 and ``all``.
    """
    allowed = "of blocks unfrozen from the top (whole numbers >= 0) and 'all', e.g. 0,1,2,3,4,all"
    depths, everything = _parse_counts(text, "--depths", allowed, 0)
    return [*depths, *(["all"] if everything else [])]


def parse_l2sp(text: str | None) -> list[float] | None:
    """``"0.01"`` or ``"0.01,0.001"`` (L2-SP's alpha, then beta) -> floats; None stays None."""
    if text is None:
        return None
    values = []
    for item in _parse_list(text, "--l2sp", "one or two non-negative numbers (alpha[,beta]), e.g. 0.01,0.001"):
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"--l2sp {text!r}: {item!r} is not a non-negative number; pass alpha[,beta], e.g. 0.01,0.001")
        values.append(value)
    if len(values) > 2:
        raise ConfigError(f"--l2sp {text!r}: give at most two numbers, alpha[,beta]")
    return values


def _size_label(size: int | None) -> str:
    return "all" if size is None else str(size)


def _check_seeds(seeds: int) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds {seeds} must be between 1 and {MAX_SEEDS} (seeds per point; 3 gives a 95% interval)")


# -- resume ----------------------------------------------------------------------------------------


def _open_record(out_dir: Path, settings: dict[str, Any], *, force: bool) -> dict[str, Any]:
    """The record to continue: the file's, when its settings are these; a new one otherwise.

    Raises:
        ConfigError: the folder's ``experiment.json`` has other settings (or is not ours) and ``force`` is off.
    """
    path = out_dir / RESULT_FILE
    fresh = {"format": FORMAT, "experiment": settings["experiment"], "settings": settings, "runs": [], "complete": False}
    if not path.exists() or force:
        return fresh
    try:
        record = _fs.read_json(path)
        ok = isinstance(record, dict) and isinstance(record.get("runs"), list) and isinstance(record.get("settings"), dict)
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} is not an edgetl experiment record; choose another --out, or pass --force to replace it")
    old = record["settings"]
    if old != _jsonable(settings):
        differ = sorted(k for k in set(old) | set(settings) if old.get(k) != _jsonable(settings).get(k))
        raise ConfigError(
            f"{out_dir} holds an experiment with other settings (differing: {', '.join(differ)}); "
            "rerun with the same settings to resume it, choose another --out, or pass --force to start over"
        )
    record["runs"] = [run for run in record["runs"] if isinstance(run, dict) and "key" in run]
    return record


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _save(out_dir: Path, record: dict[str, Any]) -> None:
    _fs.write_json(out_dir / RESULT_FILE, record)


def _base_settings(kind: str, config: BuildConfig) -> dict[str, Any]:
    return {
        "experiment": kind,
        "data": config.data.path and str(config.data.path),
        "val_data": config.data.val_path and str(config.data.val_path),
        "val_split": None if config.data.val_path else config.data.val_split,
        "data_seed": config.data.seed,
        "model": config.model.name, "weights": config.model.weights, "alpha": config.model.alpha,
        "input_size": config.model.input_size, "channels": config.model.channels,
        "batch_size": config.data.batch_size,
        "train": config.train.model_dump(mode="json", exclude={"deterministic"}),
    }


def _lab(config: BuildConfig, out_dir: Path, progress: Progress):
    # TensorFlow loads here, when an experiment starts
    from edgetl.ml.experiment import TransferLab

    return TransferLab(config, progress=progress, cache_dir=out_dir / "cache")


def _summaries(runs: list[dict[str, Any]], x_key: str, x_labels: list[str]) -> tuple[dict, dict]:
    methods = list(dict.fromkeys(run["method"] for run in runs))
    summary: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for method in methods:
        summary[method], seconds[method] = {}, {}
        for x in x_labels:
            chosen = [run for run in runs if run["method"] == method and str(run[x_key]) == x]
            if chosen:
                summary[method][x] = mean_interval([run["top1"] for run in chosen])
                summary[method][x]["balanced_mean"] = sum(run["balanced_accuracy"] for run in chosen) / len(chosen)
                seconds[method][x] = sum(run["seconds"] for run in chosen) / len(chosen)
    return summary, seconds


def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


# -- data efficiency -----------------------------------------------------------------------------


def data_efficiency(
    config: BuildConfig, out_dir: Path, *, per_class: list[int | None], seeds: int = 3, l2sp: list[float] | None = None,
    scratch_epochs: int | None = None, force: bool = False, progress: Progress = log_progress,
) -> ExperimentResult:
    """Accuracy against images per class for scratch, feature extraction, fine-tuning (and L2-SP).

    Args:
        config: resolved configuration (``data.path``; ``data.val_path`` for a separate validation
            folder, else ``data.val_split`` of it held out once with ``data.seed``).
        out_dir: folder for ``experiment.json``, ``learning_curve.png``, ``report.html`` and the feature cache.
        per_class: training images per class (None: all of the pool), from :func:`parse_per_class`.
        seeds: runs per point; seed ``i`` is ``data.seed + i`` (subset draw, initialisation, shuffles).
        l2sp: L2-SP's ``[alpha, beta]`` for a fourth method (skipped with a note when this edgetl's
            ``[train]`` has no ``l2sp`` setting).
        scratch_epochs: phase-2 epochs from scratch (default: ``max(fine_tune_epochs, 30)``).
        force: start over in a folder that holds another experiment.
        progress: progress callback.

    Raises:
        ConfigError: bad sizes, seeds, L2-SP values or model options; ``weights="none"``; another experiment in ``out_dir``.
        DataError: an unusable image folder; a size larger than every class.
    """
    # the ml layer; TensorFlow itself loads when a model is built
    from edgetl.ml.experiment import l2sp_supported, with_train

    started = time.perf_counter()
    _check_seeds(seeds)
    if not per_class:
        raise ConfigError("--per-class is empty; give sizes such as 5,10,20,50,all")
    notes: list[str] = []
    methods = ["scratch", "features", "fine_tune"]
    l2sp_config = None
    if l2sp:
        if l2sp_supported():
            value: Any = l2sp[0] if len(l2sp) == 1 else l2sp
            try:
                l2sp_config = with_train(config, l2sp=value)
            except Exception as exc:  # pydantic's ValidationError: the field's own rule
                raise ConfigError(f"--l2sp {','.join(f'{v:g}' for v in l2sp)} is not accepted by [train] l2sp: {' '.join(str(exc).split())[:200]}") from None
            methods.append("l2sp")
        else:
            notes.append("L2-SP skipped: this edgetl's [train] section has no l2sp setting yet")
            log.warning("--l2sp given, but this edgetl's [train] section has no l2sp setting yet: L2-SP runs are skipped")
    if l2sp_supported() and getattr(config.train, "l2sp", None) is not None:
        config = with_train(config, l2sp=None)  # L2-SP is its own method here (--l2sp), never mixed into the others
    scratch_cfg = with_train(
        config, fine_tune_epochs=scratch_epochs if scratch_epochs is not None else max(config.train.fine_tune_epochs, SCRATCH_MIN_EPOCHS),
        patience=max(config.train.patience, SCRATCH_MIN_PATIENCE),
    )
    labels = [_size_label(s) for s in per_class]
    settings = {
        **_base_settings("data-efficiency", config), "per_class": labels, "seeds": seeds, "methods": methods,
        "l2sp": l2sp, "scratch_epochs": scratch_cfg.train.fine_tune_epochs, "scratch_patience": scratch_cfg.train.patience,
    }
    out_dir = Path(out_dir)
    with _fs.output_lock(out_dir):
        record = _open_record(out_dir, settings, force=force)
        # the ml layer (TensorFlow), which _lab loads anyway
        from edgetl.ml.experiment import check_subset_sizes, nested_subset

        lab = _lab(config, out_dir, progress)
        check_subset_sizes(lab, per_class)
        lab.compute_features()
        record.update(classes=lab.class_names, pool_images=int(len(lab.split.train.y)), val_images=int(len(lab.split.val.y)), complete=False)
        done = {run["key"] for run in record["runs"]}
        plan = [(size, i, method) for size in per_class for i in range(seeds) for method in methods]
        trained = 0
        for step, (size, i, method) in enumerate(plan):
            seed = config.data.seed + i
            key = f"{method}/{_size_label(size)}/{seed}"
            progress("experiment runs", step, len(plan), f"{METHOD_LABELS[method]}, {_size_label(size)} per class, seed {seed}")
            if key in done:
                continue
            indices = nested_subset(lab.split.train.y, size, seed)
            run_cfg = scratch_cfg if method == "scratch" else l2sp_config if method == "l2sp" else config
            result = lab.run("fine_tune" if method == "l2sp" else method, indices, seed, config=run_cfg)
            record["runs"].append({
                "key": key, "method": method, "per_class": _size_label(size), "seed": seed, "train_images": int(len(indices)),
                "top1": result.top1, "balanced_accuracy": result.balanced_accuracy, "seconds": round(result.seconds, 3),
                "trainable_layers": result.trainable_layers,
            })
            trained += 1
            _save(out_dir, record)  # after every run: an interruption loses at most the run in progress
            log.info("%s: top-1 %.4f in %.1f s", key, result.top1, result.seconds)
        progress("experiment runs", len(plan), len(plan), "done")
        summary, seconds = _summaries(record["runs"], "per_class", labels)
        answer = data_efficiency_answer(summary, labels)
        record.update(summary=summary, mean_seconds=seconds, answer=answer, notes=notes, complete=True)
        png = plot_curve(summary, labels, out_dir / CURVE_PNG, title="Validation top-1 against training images per class", xlabel="training images per class")
        write_html(
            out_dir / REPORT_FILE, title="edgetl experiment data-efficiency", answer=answer, png=png,
            headers=["method", "images per class", "top-1 (mean ± 95% interval)", "seeds", "seconds per run"],
            rows=summary_table(summary, labels, seconds), settings={**settings, "classes": lab.class_names}, notes=notes,
        )
        _save(out_dir, record)
    return ExperimentResult(out_dir, answer, record["runs"], trained, time.perf_counter() - started, png, notes)


def _overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether ``a`` has caught up with ``b``: its mean is at least ``b``'s, or (with intervals) they overlap."""
    if a["mean"] >= b["mean"]:
        return True
    if math.isnan(a["half"]) or math.isnan(b["half"]):
        return False
    return a["high"] >= b["low"]


def data_efficiency_answer(summary: dict[str, dict[str, dict[str, float]]], labels: list[str]) -> str:
    """Where transfer wins and by how much, and from how many images per class scratch catches up."""
    transfer = [m for m in ("fine_tune", "features", "l2sp") if m in summary]
    if "scratch" not in summary or not transfer:
        return "Not enough runs to compare transfer with training from scratch."
    sizes = [x for x in labels if x in summary["scratch"] and any(x in summary[m] for m in transfer)]
    if not sizes:
        return "Not enough runs to compare transfer with training from scratch."
    best = {x: max((m for m in transfer if x in summary[m]), key=lambda m: summary[m][x]["mean"]) for x in sizes}
    gaps = {x: summary[best[x]][x]["mean"] - summary["scratch"][x]["mean"] for x in sizes}
    caught = [x for x in sizes if _overlaps(summary["scratch"][x], summary[best[x]][x])]
    first, last = sizes[0], sizes[-1]
    parts = []
    wins = [x for x in sizes if gaps[x] > 0]
    widest = max(wins, key=lambda x: gaps[x]) if wins else None
    if widest is not None:
        parts.append(
            f"Transfer beats training from scratch at {len(wins)} of {len(sizes)} sizes; the widest gap is at {widest} images per class, "
            f"where {METHOD_LABELS[best[widest]]} reaches {_pct(summary[best[widest]][widest]['mean'])} against "
            f"{_pct(summary['scratch'][widest]['mean'])} from scratch ({_points(gaps[widest])})."
        )
    else:
        parts.append("Training from scratch matched or beat transfer at every size tried.")
    if widest is not None and first != widest:
        parts.append(f"At {first} per class: {METHOD_LABELS[best[first]]} {_pct(summary[best[first]][first]['mean'])} vs scratch {_pct(summary['scratch'][first]['mean'])}.")
    # caught up: from the first size on which scratch stays level with the best transfer at every larger size
    catch = next((x for i, x in enumerate(sizes) if all(y in caught for y in sizes[i:])), None)
    n_seeds = int(summary["scratch"][first]["n"])
    how = "within the 95% intervals" if n_seeds > 2 else (
        "within the 95% intervals, which two seeds make very wide" if n_seeds == 2 else "by the means (one seed: no interval)"
    )
    if catch is None:
        parts.append(f"Scratch does not catch up within the sizes tried (up to {last} per class, judged {how}).")
    elif catch == first:
        parts.append(f"Scratch is level with transfer ({how}) from the smallest size tried, {first} per class: transfer brings no measurable gain here.")
    else:
        parts.append(f"Scratch catches up ({how}) from {catch} images per class and stays level at every larger size tried.")
    fine, feats = summary.get("fine_tune", {}), summary.get("features", {})
    ft_better = [x for x in sizes if x in fine and x in feats and fine[x]["mean"] > feats[x]["mean"]]
    if fine and feats:
        parts.append(f"Fine-tuning beats feature extraction at {len(ft_better)} of {len(sizes)} sizes.")
    return " ".join(parts)


# -- unfreeze depth ------------------------------------------------------------------------------


def _depth_label(depth: int | str) -> str:
    return str(depth)


def unfreeze_depth(
    config: BuildConfig, out_dir: Path, *, depths: list[int | str], seeds: int = 1, force: bool = False, progress: Progress = log_progress,
) -> ExperimentResult:
    """Accuracy and training time against the number of blocks unfrozen from the top, on the whole
    training pool, plus the tutorial's ``model.layers[:N]`` (the first N layers from the input) with
    N the number of layers the median non-zero depth unfreezes.

    Raises:
        ConfigError: bad depths or seeds, a depth beyond the backbone's blocks, model options,
            ``weights="none"``, or another experiment in ``out_dir``.
        DataError: an unusable image folder.
    """
    started = time.perf_counter()
    _check_seeds(seeds)
    if not depths:
        raise ConfigError("--depths is empty; give depths such as 0,1,2,3,4,all")
    labels = [_depth_label(d) for d in depths]
    settings = {**_base_settings("unfreeze-depth", config), "depths": labels, "seeds": seeds}
    out_dir = Path(out_dir)
    with _fs.output_lock(out_dir):
        record = _open_record(out_dir, settings, force=force)
        lab = _lab(config, out_dir, progress)
        layers = {label: lab.layers_unfrozen(d) for label, d in zip(labels, depths, strict=True)}  # a depth beyond the model: one line, before training
        nonzero = [d for d in depths if d != 0]
        median = nonzero[(len(nonzero) - 1) // 2] if nonzero else None
        first_n = layers[_depth_label(median)] if median is not None else 0
        lab.compute_features()
        record.update(
            classes=lab.class_names, pool_images=int(len(lab.split.train.y)), val_images=int(len(lab.split.val.y)),
            blocks=[b for b, _ in lab.blocks], backbone_layers=len(lab.layer_names), layers_unfrozen=layers,
            first_layers={"count": first_n, "as_depth": _depth_label(median) if median is not None else None}, complete=False,
        )
        done = {run["key"] for run in record["runs"]}
        plan: list[tuple[str, int | str | None, int]] = [
            ("features" if d == 0 else "fine_tune", d, i) for i in range(seeds) for d in depths
        ] + ([("first_layers", None, i) for i in range(seeds)] if first_n else [])
        indices = None
        trained = 0
        for step, (method, depth, i) in enumerate(plan):
            seed = config.data.seed + i
            label = "first" if method == "first_layers" else _depth_label(depth)  # type: ignore[arg-type]
            key = f"{method}/{label}/{seed}"
            what = f"first {first_n} layers from the input" if method == "first_layers" else f"top {label} blocks"
            progress("experiment runs", step, len(plan), f"{what}, seed {seed}")
            if key in done:
                continue
            if indices is None:
                from edgetl.ml.experiment import nested_subset  # the ml layer: TensorFlow, already loaded by _lab

                indices = nested_subset(lab.split.train.y, None, seed)
            result = lab.run(method, indices, seed, depth=depth, first_layers=first_n)
            record["runs"].append({
                "key": key, "method": method, "depth": label, "seed": seed, "train_images": int(len(indices)),
                "layers_unfrozen": first_n if method == "first_layers" else layers[label],
                "top1": result.top1, "balanced_accuracy": result.balanced_accuracy, "seconds": round(result.seconds, 3),
                "trainable_layers": result.trainable_layers,
            })
            trained += 1
            _save(out_dir, record)
            log.info("%s: top-1 %.4f in %.1f s", key, result.top1, result.seconds)
        progress("experiment runs", len(plan), len(plan), "done")
        x_labels = labels + (["first"] if first_n else [])
        # one line over the depths (features at 0 joins fine-tuning's curve), the tutorial's choice as its own point
        depth_runs = [{**r, "method": "fine_tune" if r["method"] == "features" else r["method"]} for r in record["runs"]]
        summary, seconds = _summaries(depth_runs, "depth", x_labels)
        answer = unfreeze_depth_answer(summary, seconds, labels, first_n, _depth_label(median) if median is not None else None)
        record.update(summary=summary, mean_seconds=seconds, answer=answer, complete=True)
        png = plot_curve(
            summary, x_labels, out_dir / DEPTH_PNG, title="Validation top-1 against blocks unfrozen from the top",
            xlabel="blocks unfrozen from the top ('first': the tutorial's first N layers from the input)",
        )
        write_html(
            out_dir / REPORT_FILE, title="edgetl experiment unfreeze-depth", answer=answer, png=png,
            headers=["method", "depth", "top-1 (mean ± 95% interval)", "seeds", "seconds per run"],
            rows=summary_table(summary, x_labels, seconds),
            settings={**settings, "classes": lab.class_names, "layers_unfrozen": layers, "first_layers": first_n},
        )
        _save(out_dir, record)
    return ExperimentResult(out_dir, answer, record["runs"], trained, time.perf_counter() - started, png)


def unfreeze_depth_answer(
    summary: dict[str, dict[str, dict[str, float]]], seconds: dict[str, dict[str, float]], labels: list[str], first_n: int, median: str | None
) -> str:
    """Which depth wins, whether deeper helps within the intervals, what it costs in time, and the tutorial's choice."""
    curve = summary.get("fine_tune", {})
    tried = [x for x in labels if x in curve]
    if not tried:
        return "No runs to compare."
    best = max(tried, key=lambda x: curve[x]["mean"])
    level = [x for x in tried if _overlaps(curve[x], curve[best])]
    cheapest = min(level, key=lambda x: seconds["fine_tune"][x])
    parts = [
        f"Unfreezing {best} block(s) from the top gave the best validation top-1, {_pct(curve[best]['mean'])} "
        f"({seconds['fine_tune'][best]:.1f} s per run)."
    ]
    if "0" in curve and best != "0":
        parts.append(f"Feature extraction alone (0 blocks): {_pct(curve['0']['mean'])} ({seconds['fine_tune']['0']:.1f} s).")
    if cheapest != best:
        parts.append(f"Within the measurement's spread, {cheapest} block(s) is as good and the cheapest to train ({seconds['fine_tune'][cheapest]:.1f} s).")
    first = summary.get("first_layers", {}).get("first")
    if first is not None and median is not None and median in curve:
        verdict = "worse than" if not _overlaps(first, curve[median]) else "level with"
        parts.append(
            f"The tutorial's choice, the first {first_n} layers from the input, reached {_pct(first['mean'])}: {verdict} the same "
            f"number of layers at the top ({median} blocks, {_pct(curve[median]['mean'])})."
        )
    return " ".join(parts)
