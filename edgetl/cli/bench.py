"""``edgetl bench`` (latency of model files, here or on a board) and ``edgetl compare`` (two bench.json files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgetl.cli.console import RichProgress, console, err_console, setup_logging
from edgetl.cli.errors import errors_as_exit
from edgetl.cli.options import VerboseOpt
from edgetl.core.errors import ConfigError
from edgetl.core.text import display_safe


def bench_cmd(
    artifacts: Annotated[list[Path], typer.Argument(help=".onnx or .tflite files, edgetl's or anyone's (no edgetl.json needed).", show_default=False)],
    runtime: Annotated[str | None, typer.Option("--runtime", help="onnxruntime or litert (default by suffix: .onnx -> onnxruntime, .tflite -> litert).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Thread counts, comma-separated, e.g. 1,2,4; each is measured in a fresh process.")] = "1",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs after the first (cold-start) run.")] = 20,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs (default 200). Not with --duration.", show_default=False)] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Time runs for this long instead of --runs: 10s, 500ms, 2m.", show_default=False)] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Size of dynamic batch dimensions (default 1).", show_default=False)] = None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="Size of an input with dynamic dimensions: NAME=1x224x224x3 (repeat per input).", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json, report.md and report.html.")] = Path("bench-results"),
    remote: Annotated[str | None, typer.Option("--remote", help="Measure on a board over SSH: ssh://user@host[:port] (it needs Python, numpy and the runtime).", show_default=False)] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="With --remote: private key to log in with (default: ssh-agent and ~/.ssh/id_*).", show_default=False)] = None,
    known_hosts: Annotated[Path | None, typer.Option("--known-hosts", help="With --remote: known_hosts file to check the board's host key against (default ~/.ssh/known_hosts).", show_default=False)] = None,
    insecure_no_host_key_check: Annotated[bool, typer.Option("--insecure-no-host-key-check", help="With --remote: accept any host key. INSECURE: anyone in between can pose as the board.")] = False,
    remote_python: Annotated[str, typer.Option("--remote-python", help="With --remote: the board's Python.")] = "python3",
    verbose: VerboseOpt = 0,
) -> None:
    """Latency (p50-p99), throughput, cold start, peak memory and top ops of .onnx/.tflite files, per thread count (here, or on a board with --remote)."""
    setup_logging(verbose)
    with errors_as_exit():
        # numpy, the runtimes and the API (no TensorFlow): imported when the command runs, not for --help
        from edgetl.bench.options import BenchOptions, parse_duration, parse_shape, parse_threads
        from edgetl.bench.remote import make_target
        from edgetl.bench.report import warnings as bench_warnings
        from edgetl.pipeline import api

        if runs is not None and duration is not None:
            raise ConfigError("Received both --runs and --duration; pass one of them")
        shapes: dict[str, tuple[int, ...]] = {}
        for text in shape or []:
            name, dims = parse_shape(text)
            if name in shapes:
                raise ConfigError(f"Received --shape twice for input {name!r}; pass it once")
            shapes[name] = dims
        options = BenchOptions(
            threads=parse_threads(threads), warmup=warmup, runs=runs,
            duration_s=parse_duration(duration) if duration is not None else None,
            batch=batch, shapes=shapes, runtime=runtime,
        )
        target = None
        if remote is not None:
            target = make_target(remote, identity=identity, known_hosts=known_hosts, insecure=insecure_no_host_key_check, python=remote_python)
        elif identity or known_hosts or insecure_no_host_key_check or remote_python != "python3":
            raise ConfigError("--identity, --known-hosts, --insecure-no-host-key-check and --remote-python need --remote ssh://user@host")
        with RichProgress() as progress:  # drawn from the first measurement: bad files and shapes fail before it
            doc, written = api.bench(artifacts, options, out, remote=target, progress=progress)
        t = Table(title="latency per call (ms); throughput per second from the median (p50); cold start in ms, peak RSS in MiB")
        t.add_column("artifact", no_wrap=True)
        for col in ("threads", "p50", "p90", "p99", "mean", "per s (p50)", "cold", "RSS"):
            t.add_column(col, justify="right")
        for entry in doc["artifacts"]:
            for r in entry["results"]:
                s = r["stats"]
                rss = "n/a" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
                t.add_row(
                    display_safe(entry["label"]), str(r["threads"]), f"{s['p50_ms']:.3f}", f"{s['p90_ms']:.3f}",
                    f"{s['p99_ms']:.3f}", f"{s['mean_ms']:.3f}", f"{s['throughput_ips']:.0f}", f"{r['cold_start_ms']:.1f}", rss,
                )
        console.print(t)
        for warning in bench_warnings(doc):
            err_console.print(f"[bold yellow]warning:[/] {display_safe(warning)}", highlight=False)
        console.print(display_safe(f"wrote {written['json']}, {written['markdown'].name}, {written['html'].name}"), highlight=False)


def compare(
    a: Annotated[Path, typer.Argument(help="The baseline: a bench.json from `edgetl bench` (A).", show_default=False)],
    b: Annotated[Path, typer.Argument(help="The bench.json to compare with it (B).", show_default=False)],
    threads: Annotated[int | None, typer.Option("--threads", help="Compare this thread count only.", show_default=False)] = None,
    equivalence: Annotated[str, typer.Option("--equivalence", help="Practical-equivalence margin: B/A whose whole 95% interval lies within ±this reads 'equivalent'; an interval crossing the band edge reads 'inconclusive'.")] = "3%",
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """p50 latency of B relative to A per artifact and thread count, with a bootstrap 95% confidence interval and a practical-equivalence band."""
    setup_logging(verbose)
    with errors_as_exit():
        # numpy: imported when the command runs, not for --help
        from edgetl.bench.compare import compare_benches, equivalence_band, load_bench, parse_equivalence

        margin = parse_equivalence(equivalence)
        doc_a, doc_b = load_bench(a), load_bench(b)
        comparisons = compare_benches(doc_a, doc_b, threads=threads, equivalence=margin)
        low, high = equivalence_band(margin)
        if as_json:
            console.print_json(json.dumps({
                "a": str(a), "b": str(b), "equivalence": margin, "equivalence_band": [low, high],
                "comparisons": [c.to_dict() for c in comparisons],
            }))
            return
        console.print(f"A = {display_safe(a)}\nB = {display_safe(b)}", highlight=False)
        t = Table(title=f"p50 latency of B / A, bootstrap 95% confidence interval; equivalent when the whole interval is within ±{100 * margin:g}% ([{low:.3f}, {high:.3f}])")
        t.add_column("artifact", no_wrap=True)
        for col in ("threads", "A p50 ms", "B p50 ms", "B/A [95% CI]"):
            t.add_column(col, justify="right", no_wrap=col == "B/A [95% CI]")
        t.add_column("verdict", no_wrap=True)
        for c in comparisons:
            name = c.artifact_a if c.artifact_a == c.artifact_b else f"{c.artifact_a} -> {c.artifact_b}"
            t.add_row(display_safe(name), str(c.threads), f"{c.p50_a_ms:.3f}", f"{c.p50_b_ms:.3f}", f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]", c.verdict)
        console.print(t)
        if any(c.status == "inconclusive" for c in comparisons):
            console.print(
                f"[yellow]inconclusive:[/] the 95% interval crosses an edge of the ±{100 * margin:g}% equivalence band; "
                "more --runs (or --duration) in both benchmarks narrow it", highlight=False,
            )
        cpu_a, cpu_b = doc_a.get("machine", {}).get("cpu"), doc_b.get("machine", {}).get("cpu")
        if cpu_a != cpu_b:
            console.print(f"[yellow]note:[/] A ran on {cpu_a}, B on {cpu_b}: the ratio compares the machines too", highlight=False)
