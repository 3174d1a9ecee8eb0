"""Training curves: loss and accuracy per epoch, phases marked and discarded epochs shaded.

A history is the dict ``history.json`` holds: per-epoch lists (``loss``, ``accuracy``,
``val_loss``, ``val_accuracy``, ...), ``phase`` (which phase each epoch belongs to) and
``discarded`` (true where the epoch's weights were thrown away: after the best epoch of its phase,
which :class:`edgetl.ml.phases.BestWeights` restores) and ``best`` (the epoch it kept). Histories written before ``discarded`` was
recorded get it inferred by the same rule (epochs after the lowest validation loss of their phase).
Only matplotlib is needed here, no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.core import fs as _fs

#: Above each phase of the curves (the head phase trains the new head on the frozen backbone).
PHASE_LABELS = {"head": "head", "fine_tune": "fine-tune", "clean": "clean", "qat": "QAT"}


def phase_segments(phases: list[str]) -> list[tuple[str, int, int]]:
    """``(phase, first, end)`` for each run of equal phase names (0-based, ``end`` exclusive)."""
    segments: list[tuple[str, int, int]] = []
    for index, phase in enumerate(phases):
        if segments and segments[-1][0] == phase and segments[-1][2] == index:
            segments[-1] = (phase, segments[-1][1], index + 1)
        else:
            segments.append((phase, index, index + 1))
    return segments


def discarded_epochs(history: dict[str, Any]) -> list[bool]:
    """Per epoch, whether its weights were thrown away (recorded, else inferred from ``val_loss``)."""
    count = len(history.get("loss", []))
    recorded = history.get("discarded")
    if recorded is not None and len(recorded) == count:
        return [bool(v) for v in recorded]
    flags = [False] * count
    val_loss = history.get("val_loss") or []
    if len(val_loss) != count:
        return flags
    for _phase, first, end in phase_segments(list(history.get("phase") or ["?"] * count)):
        values = val_loss[first:end]
        finite = [(v, i) for i, v in enumerate(values) if v == v]
        if finite:
            best = min(finite)[1]  # the first of equal minima, as a strict "<" keeps it
            for i in range(first + best + 1, end):
                flags[i] = True
    return flags


def combine_histories(*histories: tuple[str | None, dict[str, Any]]) -> dict[str, list]:
    """One history from several runs, epochs one after another: ``(phase, history)`` pairs, where a
    ``phase`` names every epoch of a history without its own ``phase`` list (QAT's)."""
    combined: dict[str, list] = {}
    total = 0
    for phase, history in histories:
        count = len(history.get("loss", []))
        if not count:
            continue
        keys = set(combined) | {k for k, v in history.items() if isinstance(v, list)}
        flags = discarded_epochs(history)
        for key in keys:
            if key in ("phase", "discarded"):
                continue
            values = history.get(key)
            column = combined.setdefault(key, [None] * total)
            column.extend(values if isinstance(values, list) and len(values) == count else [None] * count)
        combined.setdefault("phase", []).extend(history.get("phase") or [phase or "?"] * count)
        combined.setdefault("discarded", []).extend(float(f) for f in flags)
        total += count
    return combined


def _axis_text(text: str) -> str:
    return text.replace("$", r"\$")  # matplotlib reads $...$ as math


def plot_history(history: dict[str, Any], path: Path, *, title: str | None = None) -> Path:
    """Loss and accuracy per epoch as a PNG: training and validation, a line and label where each
    phase starts, and discarded epochs (weights thrown away for an earlier, better epoch) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    count = len(history.get("loss", []))
    epochs = list(range(1, count + 1))
    phases = list(history.get("phase") or [""] * count)
    flags = discarded_epochs(history)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key) or []
            if len(values) == count and any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, marker=".", label=key)
        best = history.get("best") or []  # the epoch each fit ended with (recorded since early stopping marks it)
        val = history.get(f"val_{metric}") or []
        kept = [e for e, flag in zip(epochs, best, strict=False) if flag] if len(val) == count else []
        if kept:
            ax.plot(kept, [val[e - 1] for e in kept], "o", markersize=8, markerfacecolor="none", markeredgecolor="black", label="kept (best epoch of its phase)")
        for epoch, gone in zip(epochs, flags, strict=True):
            if gone:
                ax.axvspan(epoch - 0.5, epoch + 0.5, color="0.85", linewidth=0, zorder=0)
        for phase, first, end in phase_segments(phases):
            if first > 0:
                ax.axvline(first + 0.5, color="0.35", linewidth=0.9, linestyle=":")
            if phase:  # centred over the phase, just above the plot
                ax.text((first + end + 1) / 2, 1.01, _axis_text(PHASE_LABELS.get(phase, phase)), transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color="0.25")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        handles, labels = ax.get_legend_handles_labels()
        if any(flags):
            handles.append(Patch(color="0.85", label="discarded (after the best epoch)"))
        ax.legend(handles=handles, fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(_axis_text(title), fontsize=10)
    fig.tight_layout()
    with _fs.atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
