"""What ``edgetl experiment`` shows: means with 95% intervals, the plot, and a self-contained HTML page.

The interval is Student's: ``mean ± t(0.975, n-1) · sd / √n`` over the seeds, with t from the table
below (no SciPy). With one seed there is no interval (shown as ``n/a``), and comparisons fall back
to the means alone. Everything shown comes from ``experiment.json``; class names, paths and any
other text from the user are escaped before they reach the HTML.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetl.core import fs as _fs

#: t(0.975, df) for df = 1..30; larger df use the nearest listed value below (then 1.96 beyond 120).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
_T_LARGE = ((40, 2.021), (60, 2.000), (120, 1.980))

#: How each method is named in the plot, the table and the answer.
METHOD_LABELS = {
    "scratch": "from scratch",
    "features": "feature extraction (frozen backbone)",
    "fine_tune": "fine-tuning (freeze, then unfreeze the top)",
    "l2sp": "L2-SP fine-tuning",
    "first_layers": "first layers from the input (tutorial)",
}


def t_975(df: int) -> float:
    """Two-sided 95% Student t quantile for ``df`` degrees of freedom (``nan`` for df < 1)."""
    if df < 1:
        return float("nan")
    if df <= len(T_975):
        return T_975[df - 1]
    value = T_975[-1]
    for limit, t in _T_LARGE:
        if df >= limit:
            value = t
    return 1.960 if df > 120 else value


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``half`` (half-width of the 95% interval; nan with one value), ``low``, ``high``, ``n``."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "half": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = sum(values) / n
    if n < 2:
        half = float("nan")
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = t_975(n - 1) * sd / math.sqrt(n)
    low, high = (mean, mean) if math.isnan(half) else (mean - half, mean + half)
    return {"mean": mean, "half": half, "low": low, "high": high, "n": n}


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _interval_text(stat: dict[str, float]) -> str:
    if stat["n"] == 0:
        return "-"
    half = "" if math.isnan(stat["half"]) else f" ± {100 * stat['half']:.1f}"
    return f"{_pct(stat['mean'])}{half}"


def plot_curve(
    summary: dict[str, dict[str, dict[str, float]]], x_labels: list[str], path: Path, *, title: str, xlabel: str
) -> Path:
    """One line per method (mean top-1) over ``x_labels`` with its 95% interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xs = list(range(len(x_labels)))
    for method, by_x in summary.items():
        points = [(i, by_x[x]) for i, x in enumerate(x_labels) if x in by_x and by_x[x]["n"]]
        if not points:
            continue
        px = [i for i, _ in points]
        means = [100 * s["mean"] for _, s in points]
        line = ax.plot(px, means, marker="o", label=METHOD_LABELS.get(method, method).replace("$", r"\$"))[0]
        # accuracy lives in 0..100%: a t-interval over few seeds can reach past it, the band stops there
        lows = [max(0.0, 100 * s["low"]) for _, s in points]
        highs = [min(100.0, 100 * s["high"]) for _, s in points]
        ax.fill_between(px, lows, highs, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xticks(xs, [x.replace("$", r"\$") for x in x_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation top-1 (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title.replace("$", r"\$"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with _fs.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def summary_table(summary: dict[str, dict[str, dict[str, float]]], x_labels: list[str], seconds: dict[str, dict[str, float]]) -> list[list[str]]:
    """Rows of ``[method, x, mean ± half, n, mean seconds]`` for the text and HTML tables."""
    rows = []
    for method, by_x in summary.items():
        for x in x_labels:
            if x in by_x and by_x[x]["n"]:
                rows.append([METHOD_LABELS.get(method, method), x, _interval_text(by_x[x]), str(by_x[x]["n"]), f"{seconds[method][x]:.1f}"])
    return rows


def write_html(
    path: Path, *, title: str, answer: str, png: Path, headers: list[str], rows: list[list[str]], settings: dict[str, Any],
    notes: list[str] | None = None,
) -> Path:
    """A self-contained page (the PNG inlined as base64): the answer, the plot, the table, the settings.
    Every piece of text is escaped: class names and paths are the user's and may hold markup."""
    esc = html.escape
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    settings_rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td><code>{esc(v if isinstance(v, str) else _json(v))}</code></td></tr>" for k, v in settings.items()
    )
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes or [])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}}code{{white-space:pre-wrap;word-break:break-all}}</style>
</head><body>
<h1>{esc(title)}</h1>
<p>{esc(answer)}</p>
<img alt="accuracy plot" src="data:image/png;base64,{image}">
<h2>Validation top-1: mean ± 95% interval over seeds</h2>
<table><tr>{head}</tr>{body}</table>
{f"<ul>{note_items}</ul>" if note_items else ""}
<h2>Settings</h2>
<table>{settings_rows}</table>
</body></html>
"""
    return _fs.write_text(path, page)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)
