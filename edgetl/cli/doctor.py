"""``edgetl doctor``: versions, GPUs, CUDA/cuDNN, installed extras, offline weights, TF_CONFIG, in one table.

The facts come from :func:`edgetl.pipeline.doctor.diagnose`; this module shows them. Exit 0 when
nothing is broken (notes included), 1 when a row is a problem (TensorFlow installed but failing to
import, a ``TF_CONFIG`` that does not parse).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from edgetl.cli.console import console, setup_logging
from edgetl.cli.errors import errors_as_exit
from edgetl.cli.options import VerboseOpt

_STYLE = {"ok": "green", "note": "yellow", "problem": "bold red"}


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Check this install: Python, packages, TensorFlow's CUDA/cuDNN and GPUs, extras, cached ImageNet weights.

    Runs offline. Exits 1 only when something edgetl needs is broken; notes (no GPU, weights not
    cached, an extra not installed) are information.
    """
    setup_logging(verbose)
    with errors_as_exit():
        # the diagnosis imports TensorFlow (when installed): only when the command runs
        from edgetl.pipeline.doctor import diagnose

        report = diagnose()
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
        table.add_column("check", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_column("status", no_wrap=True)
        for row in report.checks:
            table.add_row(escape(row.check), escape(row.value), f"[{_STYLE.get(row.status, '')}]{row.status}[/]")
        console.print(table)
        problems = report.problems
        if problems:
            console.print(f"[bold red]{len(problems)} problem(s)[/]: {', '.join(escape(p.check) for p in problems)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
