"""``edgetl data check``: what an image folder holds and what would stop or weaken training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgetl.cli.console import console, err_console, setup_logging
from edgetl.cli.errors import errors_as_exit
from edgetl.cli.options import VerboseOpt
from edgetl.core.text import display_safe

data_app = typer.Typer(help="Inspect image folders.", no_args_is_help=True)


@data_app.command("check")
def data_check(
    directory: Annotated[Path, typer.Argument(help="Image folder to check (one subfolder per class).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 when the folder is not fit to train on: unreadable files, fewer than 2 classes, a class "
            "under 10 images, or the largest class over 10x the smallest (for CI gates).",
        ),
    ] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Report classes, images per class, sizes and modes, imbalance, and unreadable files."""
    setup_logging(verbose)
    with errors_as_exit():
        from edgetl.data.folder import check_folder  # Pillow, numpy: when the command runs, not for --help

        scan = check_folder(directory)
        report = {
            "root": str(scan.root),
            "classes": scan.class_names,
            "counts": scan.counts,
            "images": int(sum(scan.counts.values())),
            "imbalance": scan.imbalance if scan.counts and not scan.empty_classes else None,
            "sizes": {f"{w}x{h}": n for (w, h), n in scan.sizes.most_common()},
            "modes": dict(scan.modes.most_common()),
            "unreadable": [{"path": str(s.path), "reason": s.reason} for s in scan.skipped],
        }
        problems = scan.problems()
        report["problems"] = problems
        failures = scan.strict_failures() if strict else []
        if strict:
            report["strict_failures"] = failures
        if as_json:
            console.print_json(json.dumps(report))
            _fail_if_strict(failures)
            return
        t = Table(title=f"{display_safe(scan.root)}: {len(scan.class_names)} classes, {report['images']} readable images")
        t.add_column("class")
        t.add_column("images", justify="right")
        for name in scan.class_names:
            t.add_row(display_safe(name), str(scan.counts.get(name, 0)))
        console.print(t)
        sizes = ", ".join(f"{k} ({v})" for k, v in list(report["sizes"].items())[:8])
        console.print(f"sizes: {sizes}{' ...' if len(report['sizes']) > 8 else ''}")
        console.print(f"modes: {', '.join(f'{k} ({v})' for k, v in report['modes'].items())}")
        if report["imbalance"] is not None:
            console.print(f"imbalance (largest / smallest class): {report['imbalance']:.2f}")
        if scan.skipped:
            console.print(f"[yellow]{len(scan.skipped)} unreadable file(s), skipped in training:[/]")
            for s in scan.skipped[:20]:
                console.print(f"  {display_safe(s.path)}: {display_safe(s.reason)}", highlight=False)
            if len(scan.skipped) > 20:
                console.print(f"  ... and {len(scan.skipped) - 20} more (see --json)")
        for p in problems:
            console.print(f"[yellow]warning:[/] {display_safe(p)}", highlight=False)
        _fail_if_strict(failures)


def _fail_if_strict(failures: list[str]) -> None:
    """``--strict``: one line on stderr naming every failure, exit 1."""
    if failures:
        err_console.print(f"[bold red]error:[/] --strict: {display_safe('; '.join(failures))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
