"""``report.md`` and a self-contained ``report.html`` from an ``edgetl bench`` document.

The HTML has no external references: plots are matplotlib figures (no pyplot, no global
backend change) embedded as inline SVG, and a few lines of inline script record, on load, how
many plots the browser rendered with a non-zero size (``#plot-check``), which the headless
browser test reads. The build report lives in :mod:`edgetl.pipeline.report`; this one is the benchmark's.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

_SVG_START = re.compile(r"<svg\b")
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


# ----------------------------------------------------------------------------- formatting
def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1024**2 else f"{num_bytes / 1024**2:.2f} MiB"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def latency_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per artifact and thread count: percentiles, spread, throughput, cold start, memory, size."""
    rows = []
    for entry in doc["artifacts"]:
        for result in entry["results"]:
            s = result["stats"]
            rows.append([
                entry["label"], f"{entry['runtime_label']} {entry['runtime_version']}", str(result["threads"]),
                _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]), _ms(s["mean_ms"]), _ms(s["std_ms"]),
                _ms(s["min_ms"]), _ms(s["max_ms"]), f"{s['throughput_ips']:.1f}", _ms(result["cold_start_ms"]),
                _mib(result["peak_rss_mib"]), _size(entry["size_bytes"]),
            ])
    return rows


LATENCY_HEADERS = [
    "artifact", "runtime", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "min ms", "max ms",
    "throughput /s (from p50)", "cold start ms", "peak RSS MiB", "file size",
]


def speedups(doc: dict[str, Any]) -> dict[str, dict[int, float]]:
    """p50 of the first artifact / p50 of each artifact, per thread count both measured (above 1: faster)."""
    entries = doc["artifacts"]
    if not entries:
        return {}
    base = {r["threads"]: r["stats"]["p50_ms"] for r in entries[0]["results"]}
    return {
        e["label"]: {r["threads"]: base[r["threads"]] / r["stats"]["p50_ms"] for r in e["results"] if r["threads"] in base and r["stats"]["p50_ms"] > 0}
        for e in entries
    }


def _thread_counts(doc: dict[str, Any]) -> list[int]:
    return sorted({r["threads"] for e in doc["artifacts"] for r in e["results"]})


def _op_profile_section(entry: dict[str, Any]) -> tuple[str, list[list[str]] | None, str]:
    """(heading, rows or None, note) for one artifact's op profile at its first thread count."""
    result = entry["results"][0]
    heading = f"{entry['label']} ({_threads(result['threads'])})"
    profile = result.get("op_profile")
    if isinstance(profile, str):
        return heading, None, f"op profile: {profile}"
    rows = [[p["op"], f"{p['total_ms']:.3f}", f"{p['percent']:.1f}%", str(p["calls"])] for p in profile or []]
    return heading, rows, ""


OP_HEADERS = ["op type", "kernel time ms", "share", "calls"]


def warnings(doc: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the numbers: an emulated board (its timings are not
    latency), thread counts above the machine's cores."""
    found = []
    emulated = doc.get("emulated")
    if isinstance(emulated, dict) and emulated.get("timings"):
        found.append(f"emulated arm64 ({emulated.get('emulator', 'qemu')}): {emulated['timings']}")
    cores = doc.get("machine", {}).get("cores")
    over = [t for t in doc.get("settings", {}).get("threads", []) if isinstance(cores, int) and t > cores]
    if over:
        found.append(
            f"threads {', '.join(map(str, over))} exceed the {cores} logical cores of {doc['machine'].get('cpu', 'this machine')}: "
            "those rows measure an oversubscribed CPU, not the model's scaling"
        )
    return found


def _measured_lines(doc: dict[str, Any]) -> list[str]:
    settings, machine = doc["settings"], doc["machine"]
    timed = f"{settings['runs']} timed runs" if settings.get("runs") else f"timed runs for {settings['duration_s']:g} s"
    runtimes = sorted({f"{e['runtime_label']} {e['runtime_version']} ({e['provider']})" for e in doc["artifacts"]})
    lines = [
        f"runtime: {'; '.join(runtimes)}",
        f"threads: {', '.join(map(str, settings['threads']))}; warm-up {settings['warmup']} runs, then {timed}; "
        f"batch {settings['batch'] or 1} (dynamic batch dimensions)",
        f"machine: {machine['cpu']}, {machine['cores']} logical cores, {machine['os']}, Python {machine['python']}",
        f"edgetl {doc['edgetl_version']}, {doc['created_utc']}",
    ]
    lines += [f"{key.replace('_', ' ')}: {text}" for key, text in doc.get("method", {}).items()]
    return lines


def _input_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [
        [e["label"], i["name"], i["dtype"], "[" + ", ".join(map(str, i["declared_shape"])) + "]", "x".join(map(str, i["shape"]))]
        for e in doc["artifacts"] for i in e["inputs"]
    ]


INPUT_HEADERS = ["artifact", "input", "dtype", "declared shape", "benchmarked shape"]


# ----------------------------------------------------------------------------- Markdown
def render_markdown(doc: dict[str, Any]) -> str:
    """``report.md``: latency table, speed-up, top ops, inputs, and how it was measured."""
    entries = doc["artifacts"]
    lines = [
        "# edgetl bench",
        "",
        f"{len(entries)} artifact(s) on {doc['machine']['cpu']}; latency per call in milliseconds, "
        f"each artifact and thread count measured in a fresh process.",
        "",
        *[f"> **Warning:** {w}\n" for w in warnings(doc)],
        "## Latency",
        "",
        table(LATENCY_HEADERS, latency_rows(doc)),
        "",
    ]
    if len(entries) > 1:
        counts = _thread_counts(doc)
        ups = speedups(doc)
        lines += [
            f"## Speed-up vs {entries[0]['label']} (p50, same thread count; above 1 is faster)",
            "",
            table(["artifact", *[_threads(t) for t in counts]], [[label, *[f"{v[t]:.2f}x" if t in v else "" for t in counts]] for label, v in ups.items()]),
            "",
        ]
    lines += ["## Top ops by time", ""]
    for entry in entries:
        heading, rows, note = _op_profile_section(entry)
        lines += [f"### {heading}", ""]
        lines += [table(OP_HEADERS, rows) if rows is not None else note, ""]
    lines += ["## Inputs (synthetic)", "", table(INPUT_HEADERS, _input_rows(doc)), "", "## How this was measured", ""]
    lines += [f"- {line}" for line in _measured_lines(doc)]
    lines += ["", "Raw per-run samples are in `bench.json` (`edgetl compare A.json B.json` uses them).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots
def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = _SVG_METADATA.sub("", text)
    match = _SVG_START.search(text)
    return text[match.start() :] if match else text


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


#: Whisker span (largest p99 / smallest p1 over the plotted sets) above which the box plot uses a log axis:
#: one slow set or a long p99 tail would otherwise flatten every other box into a line.
LOG_SCALE_SPAN = 5.0


def distribution_scale(data: list[list[float]]) -> str:
    """``"log"`` or ``"linear"``: the box plot's latency axis for these sample sets (see :data:`LOG_SCALE_SPAN`)."""
    import numpy as np

    lows = [float(np.percentile(d, 1)) for d in data if len(d)]
    highs = [float(np.percentile(d, 99)) for d in data if len(d)]
    if not lows or min(lows) <= 0:
        return "linear"
    return "log" if max(highs) / min(lows) > LOG_SCALE_SPAN else "linear"


def plot_distribution(doc: dict[str, Any]) -> str:
    """Box plot of every (artifact, threads) sample set: box p25-p75, line at p50, whiskers clipped at
    p1-p99 (samples beyond are not drawn); a log latency axis when the sets span more than
    :data:`LOG_SCALE_SPAN`x. The axis label says which."""
    data, labels = [], []
    for entry in doc["artifacts"]:
        for result in entry["results"]:
            data.append(result.get("samples_ms") or [result["stats"]["p50_ms"]])
            labels.append(f"{entry['label']} · {_threads(result['threads'])}")
    scale = distribution_scale(data)
    fig = _figure(7.5, 1.0 + 0.45 * len(data))
    ax = fig.add_subplot()
    ax.boxplot(data[::-1], orientation="horizontal", whis=(1, 99), showfliers=False, tick_labels=labels[::-1])
    if scale == "log":
        ax.set_xscale("log")
    ax.set_xlabel(f"latency per call (ms, {scale} scale); box p25-p75, line p50, whiskers clipped at p1-p99")
    ax.set_title("Latency distribution")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _grouped_bars(doc: dict[str, Any], values: dict[str, dict[int, float]], ylabel: str, title: str, ref_line: float | None = None) -> str:
    import numpy as np

    counts = _thread_counts(doc)
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(counts))
    for i, (label, per_thread) in enumerate(values.items()):
        heights = [per_thread.get(t, np.nan) for t in counts]
        bars = ax.bar(x + (i - (len(values) - 1) / 2) * width, heights, width, label=label)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    if ref_line is not None:
        ax.axhline(ref_line, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, [_threads(t) for t in counts])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def plot_p50_by_threads(doc: dict[str, Any]) -> str:
    values = {e["label"]: {r["threads"]: r["stats"]["p50_ms"] for r in e["results"]} for e in doc["artifacts"]}
    return _grouped_bars(doc, values, "p50 latency (ms)", "p50 by thread count")


def plot_speedup(doc: dict[str, Any]) -> str:
    first = doc["artifacts"][0]["label"]
    return _grouped_bars(doc, speedups(doc), f"speed-up vs {first} (p50)", f"Speed-up vs {first} (above 1 is faster)", ref_line=1.0)


def plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(title, inline svg)`` for the report: distribution, p50 by threads, and with two or more
    artifacts the speed-up vs the first."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "edgetl", "font.size": 9}):
        figures = [("Latency distribution", plot_distribution(doc)), ("p50 by thread count", plot_p50_by_threads(doc))]
        if len(doc["artifacts"]) > 1:
            figures.append((f"Speed-up vs {doc['artifacts'][0]['label']}", plot_speedup(doc)))
    return figures


# ----------------------------------------------------------------------------- HTML
def html_table(headers: list[str], rows: list[list[str]], table_id: str | None = None) -> str:
    """A table in a ``.table-wrap`` box: it scrolls inside the box, never the page, if it is still too wide."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f'<div class="table-wrap"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


#: The HTML latency table: min and max share a column, so 13 columns fit a 1200 px page.
HTML_LATENCY_HEADERS = [
    "artifact", "runtime", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "min-max ms",
    "throughput /s (from p50)", "cold start ms", "peak RSS MiB", "file size",
]


def html_latency_rows(doc: dict[str, Any]) -> list[list[str]]:
    """:func:`latency_rows` with min and max in one cell."""
    return [[*row[:8], f"{row[8]}-{row[9]}", *row[10:]] for row in latency_rows(doc)]


REPORT_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; padding: 0 1em; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.8em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.45em; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; white-space: normal; overflow-wrap: anywhere; min-width: 8em; }
th { background: #f3f3f3; }
figure.plot { margin: 1em 0 2em; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #555; }
footer { font-size: 0.75em; color: #888; margin-top: 3em; }
"""

# Counts the plots with a non-zero rendered size, once the document is parsed and again on load.
REPORT_CHECK_SCRIPT = """
(function () {
  function check() {
    var plots = document.querySelectorAll("figure.plot > svg, figure.plot > img");
    var rendered = 0;
    for (var i = 0; i < plots.length; i++) {
      var box = plots[i].getBoundingClientRect();
      if (box.width > 0 && box.height > 0) { rendered++; }
    }
    var out = document.getElementById("plot-check");
    out.setAttribute("data-found", String(plots.length));
    out.setAttribute("data-rendered", String(rendered));
    // layout facts for the headless browser test: the page must not scroll sideways
    var table = document.getElementById("latency");
    out.setAttribute("data-viewport-width", String(window.innerWidth));
    out.setAttribute("data-page-width", String(document.documentElement.scrollWidth));
    if (table) {
      out.setAttribute("data-table-right", String(Math.ceil(table.getBoundingClientRect().right)));
      out.setAttribute("data-table-width", String(Math.ceil(table.scrollWidth)));
    }
    out.textContent = "self-check: " + rendered + " of " + out.getAttribute("data-expected") + " plots rendered";
  }
  check();
  window.addEventListener("load", check);
})();
"""


def render_html(doc: dict[str, Any]) -> str:
    """``report.html``: the Markdown report's tables plus the plots, in one file with no external URLs."""
    entries = doc["artifacts"]
    figures = plots(doc)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>edgetl bench: {html.escape(', '.join(e['label'] for e in entries))}</title>",
        f"<style>{REPORT_CSS}</style></head><body>",
        "<h1>edgetl bench</h1>",
        f"<p>{len(entries)} artifact(s) on {html.escape(str(doc['machine']['cpu']))}; latency per call in milliseconds, "
        "each artifact and thread count measured in a fresh process.</p>",
        *[f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>' for w in warnings(doc)],
        "<h2>Latency</h2>",
        html_table(HTML_LATENCY_HEADERS, html_latency_rows(doc), table_id="latency"),
    ]
    for title, svg in figures:
        parts.append(f'<figure class="plot">{svg}<figcaption>{html.escape(title)}</figcaption></figure>')
    if len(entries) > 1:
        counts = _thread_counts(doc)
        rows = [[label, *[f"{v[t]:.2f}x" if t in v else "" for t in counts]] for label, v in speedups(doc).items()]
        parts += [f"<h2>Speed-up vs {html.escape(entries[0]['label'])} (p50; above 1 is faster)</h2>",
                  html_table(["artifact", *[_threads(t) for t in counts]], rows)]
    parts.append("<h2>Top ops by time</h2>")
    for entry in entries:
        heading, rows, note = _op_profile_section(entry)
        parts.append(f"<h3>{html.escape(heading)}</h3>")
        parts.append(html_table(OP_HEADERS, rows) if rows is not None else f'<p class="op-note">{html.escape(note)}</p>')
    parts += ["<h2>Inputs (synthetic)</h2>", html_table(INPUT_HEADERS, _input_rows(doc)), "<h2>How this was measured</h2><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in _measured_lines(doc)]
    parts += [
        "</ul><p>Raw per-run samples are in <code>bench.json</code> (<code>edgetl compare A.json B.json</code> uses them).</p>",
        f'<footer><p id="plot-check" data-expected="{len(figures)}">self-check: needs JavaScript</p></footer>',
        f"<script>{REPORT_CHECK_SCRIPT}</script>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
