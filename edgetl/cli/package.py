"""``edgetl package``: bundle a model for TFLite Micro (C), Android, iOS or Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetl.cli.console import console, err_console, pct, setup_logging
from edgetl.cli.errors import errors_as_exit
from edgetl.cli.options import ForceOpt, VerboseOpt
from edgetl.core.text import display_safe
from edgetl.core.types import PackageFor
from edgetl.core.units import human_size


def package_cmd(
    artifact: Annotated[Path, typer.Argument(help="A .tflite or .onnx file, or an edgetl build/export folder (the model its edgetl.json names).", show_default=False)],
    for_: Annotated[PackageFor, typer.Option("--for", help="c: C++ array, headers and op resolver for TFLite Micro (arena measured); android/ios: LiteRT assets and Kotlin/Swift code; python: model, labels and predict.py.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Package folder, replaced whole when complete (default: outside the folders a rebuild replaces: OUT/NAME-packages/TARGET-FOR/ for a build's OUT/NAME/TARGET/, FOLDER-FOR/ beside an export folder, STEM-FOR/ beside a plain file).", show_default=False)] = None,
    ram_budget: Annotated[str | None, typer.Option("--ram-budget", help="c: fail when the measured tensor arena exceeds this: 256KB, 1MB or bytes (1 KB = 1024 bytes).", show_default=False)] = None,
    flash_budget: Annotated[str | None, typer.Option("--flash-budget", help="Fail when the model file exceeds this: 1MB, 512KB or bytes.", show_default=False)] = None,
    arena_margin: Annotated[str | None, typer.Option("--arena-margin", help="c: added to the measured arena: bytes (16KB) or a percentage (10%); default: the larger of 16 KiB and 10%.", show_default=False)] = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Bundle a model for an app: C for TFLite Micro (arena measured, outputs checked against LiteRT), Android, iOS or Python."""
    setup_logging(verbose)
    with errors_as_exit():
        # the API (numpy, the runtimes, TFLite Micro; no TensorFlow): imported when the command runs, not for --help
        from edgetl.pipeline import api

        with err_console.status(f"packaging {display_safe(artifact)} for {for_.value}"):  # seconds: a spinner, gone before any error line
            result = api.package(artifact, for_, out, ram_budget=ram_budget, flash_budget=flash_budget, arena_margin=arena_margin, force=force)
        report = result.report
        console.print(f"wrote the {for_.value} package of {display_safe(report['model']['file'])} ({human_size(report['model']['size_bytes'])}) to {display_safe(result.out_dir)}: {display_safe(', '.join(result.files))}", highlight=False)
        if "tflm" in report:
            arena, parity = report["tflm"]["arena"], report["tflm"]["parity"]
            console.print(
                f"tensor arena: measured [bold]{arena['measured_bytes']}[/] bytes ({human_size(arena['measured_bytes'])}) + margin {arena['margin_bytes']} "
                f"= kTensorArenaSize {arena['arena_bytes']} bytes ({human_size(arena['arena_bytes'])})", highlight=False,
            )
            ref, default = parity["against_litert_reference_kernels"], parity["against_litert_default_kernels"]
            console.print(
                f"TFLite Micro vs LiteRT reference kernels: {'identical' if ref['exact'] else str(ref['max_abs_diff_lsb']) + ' LSB'}; "
                f"vs LiteRT default kernels: max {default['max_abs_diff_lsb']} LSB, top-1 agreement {pct(default['top1_agreement'])} "
                f"({len(ref['per_input_max_diff_lsb'])} inputs)", highlight=False,
            )
