"""What ``edgetl select`` shows: the Pareto plot (probe top-1 against p50 latency, marker area by
int8 file size, candidates over budget hollow and red, the Pareto front drawn, the recommendation
starred) as a PNG, and a self-contained ``report.html`` with the PNG inlined.

Everything comes from the ``select.json`` record. The page uses the benchmark report's table,
style and self-check script (:mod:`edgetl.bench.report`), so the headless-browser test reads it the
same way; backbone names, board labels and paths are escaped before they reach the HTML.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from edgetl.bench.report import REPORT_CHECK_SCRIPT, REPORT_CSS, html_table
from edgetl.core import fs as _fs
from edgetl.core.units import human_size
from edgetl.pipeline.plots import axis_text

#: Marker area (points^2) of the smallest and the largest int8 file in the plot.
MARKER_AREA = (40.0, 600.0)


def primary_board(record: dict[str, Any]) -> str | None:
    """The board whose p50 the plot and the ranking use: the first that is not emulated (else the first)."""
    boards = record.get("boards", [])
    real = [b["label"] for b in boards if not b.get("emulated")]
    return real[0] if real else (boards[0]["label"] if boards else None)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table_headers(record: dict[str, Any]) -> list[str]:
    """Columns of the candidate table: one p50/p90 column per board."""
    boards = [b["label"] for b in record.get("boards", [])]
    arena = any("tflm" in e for e in record["candidates"])
    return [
        "candidate", "weights", "probe top-1", "int8 top-1", "int8 size",
        *[f"p50 / p90 ms ({b})" for b in boards], *(["TFLM arena"] if arena else []), "verdict",
    ]


def table_rows(record: dict[str, Any]) -> list[list[str]]:
    """One row per candidate, best probe top-1 first, as the CLI and the HTML show them."""
    boards = [b["label"] for b in record.get("boards", [])]
    arena = any("tflm" in e for e in record["candidates"])
    chosen = (record.get("recommendation") or {}).get("key")
    rows = []
    for e in sorted(record["candidates"], key=lambda e: -e["probe"]["top1"]):
        latency = []
        for board in boards:
            figures = e["latency"].get(board)
            latency.append("n/a" if figures is None else f"{_ms(figures['p50_ms'])} / {_ms(figures['p90_ms'])}")
        tflm = e.get("tflm") or {}
        arena_cell = [("n/a" if tflm.get("arena_bytes") is None else human_size(tflm["arena_bytes"]))] if arena else []
        verdict = "recommended" if e["key"] == chosen else ("over budget: " + "; ".join(e["over_budget"]) if e["over_budget"] else "within budget")
        if e.get("pareto") and e["key"] != chosen:
            verdict += " (Pareto)"
        rows.append([
            e["label"], e["weights"]["used"], _pct(e["probe"]["top1"]), _pct(e["int8"]["top1"]), human_size(e["size_bytes"]),
            *latency, *arena_cell, verdict,
        ])
    return rows


def plot_pareto(record: dict[str, Any], path: Path) -> Path:
    """Probe top-1 (%) against p50 latency on the primary board; marker area by int8 file size;
    over budget: hollow red; the Pareto front as a step line; the recommendation as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = primary_board(record)
    entries = [e for e in record["candidates"] if board is not None and board in e["latency"]]
    sizes = [e["size_bytes"] for e in entries] or [1]
    low, high = min(sizes), max(sizes)

    def area(size: int) -> float:
        share = 0.5 if high == low else (math.sqrt(size) - math.sqrt(low)) / (math.sqrt(high) - math.sqrt(low))
        return MARKER_AREA[0] + share * (MARKER_AREA[1] - MARKER_AREA[0])

    budget = record["settings"]["budgets"].get("latency_ms")
    chosen = (record.get("recommendation") or {}).get("key")
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    for within, style in ((True, {"color": "tab:blue", "label": "within budget"}), (False, {"facecolors": "none", "edgecolors": "tab:red", "label": "over budget"})):
        chosen_set = [e for e in entries if bool(e["within_budget"]) == within]
        if chosen_set:
            ax.scatter(
                [e["latency"][board]["p50_ms"] for e in chosen_set], [100 * e["probe"]["top1"] for e in chosen_set],
                s=[area(e["size_bytes"]) for e in chosen_set], alpha=0.75, linewidths=1.5, **style,
            )
    front = sorted((e for e in entries if e.get("pareto")), key=lambda e: e["latency"][board]["p50_ms"])
    if front:
        ax.step(
            [e["latency"][board]["p50_ms"] for e in front], [100 * e["probe"]["top1"] for e in front], where="post",
            color="tab:green", linewidth=1.2, label="Pareto front",
        )
    for e in entries:
        ax.annotate(axis_text(e["label"], 32), (e["latency"][board]["p50_ms"], 100 * e["probe"]["top1"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        if e["key"] == chosen:
            ax.scatter([e["latency"][board]["p50_ms"]], [100 * e["probe"]["top1"]], marker="*", s=260, color="gold", edgecolors="black", zorder=5, label="recommended")
    if budget is not None:
        ax.axvline(budget, color="tab:red", linestyle="--", linewidth=1, label=f"--budget-ms {budget:g}")
    ax.set_xlabel(f"int8 p50 latency, ms ({axis_text(board or 'no board', 40)}; marker area: int8 file size {human_size(low)}-{human_size(high)})")
    ax.set_ylabel("linear-probe validation top-1 (%)")
    ax.set_ylim(-2, 102)
    ax.margins(x=0.18)  # room for the labels right of the markers
    ax.set_title("edgetl select: probe accuracy against measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", markerscale=0.6)
    fig.tight_layout()
    with _fs.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(record: dict[str, Any], path: Path, png: Path) -> Path:
    """``report.html``: the recommendation, the plot (inlined), the candidate table, notes, settings."""
    esc = html.escape
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    recommendation = record.get("recommendation")
    if recommendation:
        answer = f"<p>Recommended: <strong>{esc(recommendation['label'])}</strong>. Build it with:</p><pre><code>{esc(recommendation['command'])}</code></pre>"
    else:
        message = (record.get("no_fit") or {}).get("message", "no candidate fits the budgets")
        answer = f'<p class="warning"><strong>No candidate fits:</strong> {esc(message)}</p>'
    boards = ", ".join(f"{b['label']}{' (emulated)' if b.get('emulated') else ''}" for b in record.get("boards", []))
    timings = record["timings"]
    settings_rows = [[str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)] for k, v in record["settings"].items()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">',
        f"<title>edgetl select: {esc(str(record['settings']['data']))}</title>",
        f"<style>{REPORT_CSS} pre {{ white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: .5em; }}</style></head><body>",
        "<h1>edgetl select</h1>",
        f"<p>{len(record['candidates'])} candidate(s) on {esc(str(record['settings']['data']))} ({record['train_images']} training, "
        f"{record['val_images']} validation images, {len(record['classes'])} classes); int8 latency measured on {esc(boards)} "
        "with the <code>edgetl bench</code> harness.</p>",
        answer,
        f'<figure class="plot"><img alt="probe top-1 against p50 latency" src="data:image/png;base64,{image}">'
        "<figcaption>Linear-probe validation top-1 against int8 p50 latency; marker area: int8 file size; hollow red: over budget; "
        "green: the Pareto front; star: the recommendation.</figcaption></figure>",
        "<h2>Candidates</h2>",
        html_table(table_headers(record), table_rows(record), table_id="candidates"),
        *([f"<ul>{''.join(f'<li>{esc(n)}</li>' for n in record['notes'])}</ul>"] if record.get("notes") else []),
        "<h2>How this was measured</h2><ul>",
        "<li>Probe: the backbone frozen with the weights shown, its pooled features computed once, a softmax head trained on them "
        f"({record['settings']['probe']['head_epochs']} epochs); top-1 on the validation split.</li>",
        f"<li>int8: that classifier post-training quantized (calibrated on {record['settings']['calibration_images']} training images at most), "
        "verified against the Keras model; its own top-1 on the same validation split.</li>",
        "<li>Latency: each int8 file timed one after another, after every job had finished, with the settings "
        f"<code>{esc(json.dumps(record['settings']['bench'], sort_keys=True))}</code>; raw samples in the <code>bench-*.json</code> files.</li>",
        f"<li>Wall time: jobs {timings['jobs_s']:.1f} s, latency {timings['latency_s']:.1f} s, arena {timings['arena_s']:.1f} s, "
        f"total {timings['total_s']:.1f} s; jobs ran {esc(json.dumps(record['settings']['engine']))}.</li></ul>",
        "<h2>Settings</h2>",
        html_table(["setting", "value"], settings_rows),
        f'<footer><p id="plot-check" data-expected="1">self-check: needs JavaScript</p><p>edgetl {esc(str(record["edgetl_version"]))}, {esc(record["created_utc"])}</p></footer>',
        f"<script>{REPORT_CHECK_SCRIPT}</script>",
        "</body></html>",
        "",
    ]
    return _fs.write_text(path, "\n".join(parts))
