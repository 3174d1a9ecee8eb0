"""``edgetl select``: rank backbone x alpha x input-size candidates by linear-probe accuracy and the
int8 latency measured on the target, and print the ``edgetl build`` command of the best one that fits.

The command parses its flags, builds a configuration and makes one call to
:func:`edgetl.pipeline.api.select`; it prints the table, the recommendation and where select.json,
pareto.png and report.html went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgetl.cli.console import RichProgress, console, setup_logging
from edgetl.cli.errors import errors_as_exit, requires_training_stack
from edgetl.cli.options import (
    BatchOpt,
    ConfigOpt,
    DataOpt,
    ForceOpt,
    SeedOpt,
    ValOpt,
    ValSplitOpt,
    VerboseOpt,
    resolve,
    training_flags,
)
from edgetl.core.text import display_safe

_FLAG_NAMES = {
    "data.path": "--data", "data.val_path": "--val", "data.val_split": "--val-split", "data.seed": "--seed",
    "data.batch_size": "--batch-size", "train.head_epochs": "--probe-epochs",
}


def select_cmd(
    data: DataOpt = None,
    candidates: Annotated[str | None, typer.Option("--candidates", help="Candidates to try: BACKBONE[:ALPHA,...][@SIZE,...] separated by spaces, e.g. 'mobilenet_v2:0.35,1.0@96,160 efficientnet_lite0@224' (default: a small grid of mobilenet_v2, mobilenet_v3_small and efficientnet_lite0).", show_default=False)] = None,
    budget_ms: Annotated[float | None, typer.Option("--budget-ms", help="p50 latency budget of the int8 model on each (real) board, in ms.", show_default=False)] = None,
    ram_budget: Annotated[str | None, typer.Option("--ram-budget", help="TFLite Micro tensor arena budget (256KB, 1MB), measured as `edgetl package --for c` measures it.", show_default=False)] = None,
    flash_budget: Annotated[str | None, typer.Option("--flash-budget", help="int8 model file budget (256KB, 1MB).", show_default=False)] = None,
    on: Annotated[list[str] | None, typer.Option("--on", help="Where to time: local (default), ssh://user@host[:port] or arm64-emulated; repeat for one column per board.", show_default=False)] = None,
    threads: Annotated[int, typer.Option("--threads", help="Threads the int8 models run with on the board.")] = 1,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per candidate and board.")] = 100,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs before the timed ones.")] = 10,
    weights: Annotated[str, typer.Option("--weights", help="auto: ImageNet where edgetl has it offline, else random (recorded per candidate); imagenet; none; or a weights file.")] = "auto",
    workers: Annotated[int, typer.Option("--workers", help="Probe candidates in N local worker processes (dask.distributed).")] = 1,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Probe candidates on a running dask cluster: tcp://HOST:8786 (`dask scheduler`, `dask worker`).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for select.json, pareto.png, report.html and the int8 files (default: select/<data folder name>).", show_default=False)] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="With ssh:// boards: private key to log in with.", show_default=False)] = None,
    known_hosts: Annotated[Path | None, typer.Option("--known-hosts", help="With ssh:// boards: known_hosts file (default ~/.ssh/known_hosts).", show_default=False)] = None,
    insecure_no_host_key_check: Annotated[bool, typer.Option("--insecure-no-host-key-check", help="With ssh:// boards: accept any host key. INSECURE.")] = False,
    remote_python: Annotated[str, typer.Option("--remote-python", help="With ssh:// boards: the board's Python.")] = "python3",
    val: ValOpt = None,
    val_split: ValSplitOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = None,
    probe_epochs: Annotated[int, typer.Option("--probe-epochs", help="Epochs of the probe's head on the cached features (cheap: the backbone runs once).")] = 20,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Choose the backbone, alpha and input size by measurement: linear-probe accuracy and int8 latency on the target, within budgets."""
    setup_logging(verbose)
    with errors_as_exit():
        requires_training_stack("select")
        # numpy, pydantic and the pipeline: imported when the command runs (keeps --help fast)
        from edgetl.bench.options import BenchOptions
        from edgetl.core.errors import BudgetError, ConfigError
        from edgetl.core.jobs import Engine
        from edgetl.core.units import parse_size
        from edgetl.pipeline import api
        from edgetl.pipeline.select import BoardOptions, Budgets, default_out, parse_candidates

        grid = parse_candidates(candidates)
        budgets = Budgets(
            latency_ms=budget_ms,
            ram_bytes=parse_size(ram_budget, "--ram-budget") if ram_budget is not None else None,
            flash_bytes=parse_size(flash_budget, "--flash-budget") if flash_budget is not None else None,
        )
        boards = BoardOptions(on=tuple(on or ("local",)), identity=identity, known_hosts=known_hosts, insecure=insecure_no_host_key_check, python=remote_python)
        bench = BenchOptions(threads=(threads,), runs=runs, warmup=warmup, profile_runs=0)
        engine = Engine(workers=workers, address=cluster)
        flags = training_flags(data, None, None, None, None, val, val_split, seed, batch_size, probe_epochs, None, None, None, None, None)
        cfg = resolve(config, flags, _FLAG_NAMES)
        if cfg.data.path is None:
            raise ConfigError("no training data: pass --data DIR (a folder with one subfolder per class)")
        folder = out if out is not None else default_out(cfg.data.path)
        console.print(f"{len(grid)} candidate(s): {', '.join(c.label for c in grid)}", highlight=False, markup=False)
        try:
            with RichProgress() as progress:
                result = api.select(
                    cfg, folder, candidates=grid, budgets=budgets, boards=boards, bench=bench, engine=engine, weights=weights,
                    force=force, progress=progress,
                )
        except BudgetError:
            _print_table(folder)  # what was measured, then the one-line error naming the closest candidate
            raise
        _print_table(folder)
        console.print(f"recommended: {display_safe(result.recommendation['label'])}", highlight=False)  # type: ignore[index]
        console.print(display_safe(result.command or ""), highlight=False, markup=False, soft_wrap=True)
        for note in result.notes:
            console.print(f"note: {display_safe(note)}", highlight=False, markup=False)
        console.print(f"wrote {display_safe(result.json_path)}, {result.png_path.name}, {result.html_path.name}", highlight=False)


def _print_table(folder: Path) -> None:
    # pydantic, numpy and the pipeline: imported when the command runs (keeps --help fast)
    from edgetl.core import fs
    from edgetl.pipeline.select import RESULT_FILE
    from edgetl.pipeline.select_report import table_headers, table_rows

    try:
        record = fs.read_json(folder / RESULT_FILE)
    except (OSError, ValueError):
        return
    t = Table(title="candidates: linear-probe top-1 (validation), int8 top-1, int8 latency per board")
    for i, header in enumerate(table_headers(record)):
        t.add_column(header, justify="left" if i in (0, 1) or header == "verdict" else "right", overflow="fold")
    for row in table_rows(record):
        t.add_row(*(Text(display_safe(c)) for c in row))
    console.print(t)
