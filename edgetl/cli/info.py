"""``edgetl backbones``: what can be fine-tuned (the version is the app's ``--version`` option).

The figures (parameters, MACs, TFLite file sizes) come from the table stored with the backbones
(:mod:`edgetl.ml.backbones.figures`), so the listing is instant; only ``--input-size`` other than a
backbone's default builds models (MACs depend on the size), with a spinner meanwhile.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from edgetl.cli.console import console, err_console, setup_logging
from edgetl.cli.errors import errors_as_exit, requires_training_stack
from edgetl.cli.options import AlphaOpt, SquareInputSizeOpt, VerboseOpt
from edgetl.core.errors import ConfigError
from edgetl.core.units import human_size

#: Wider than this, the table also shows the fp32 file size.
_WIDE = 92


def backbones(
    input_size: SquareInputSizeOpt = None,
    alpha: AlphaOpt = None,
    classes: Annotated[int | None, typer.Option("--classes", help="Classes of your head (default 1000, as published figures use).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """List the registered backbones: input sizes, width multipliers, parameters, MACs, TFLite sizes.

    Figures are for the default input size and alpha with a 1000-class head unless --input-size,
    --alpha or --classes say otherwise.
    """
    setup_logging(verbose)
    with errors_as_exit():
        if classes is not None and classes < 1:
            raise ConfigError(f"Received --classes {classes}; pass a positive number of classes")
        # the backbone registry and stored figures (no TensorFlow unless a size must be measured): when the command runs
        from edgetl.ml.backbones.figures import describe_backbone
        from edgetl.ml.backbones.spec import BACKBONES

        specs = [spec for _, spec in BACKBONES.items()]
        skipped: list[str] = []
        if alpha is not None:
            skipped = [spec.name for spec in specs if alpha not in spec.alphas]
            specs = [spec for spec in specs if alpha in spec.alphas]
            if not specs:
                raise ConfigError(f"no backbone has alpha {alpha}; mobilenet_v2 takes 0.35 to 1.4, the MobileNetV3s 0.75 and 1.0")
        if input_size is not None:
            for spec in specs:
                spec.check_input_size(input_size)
        builds = input_size is not None and any(input_size != spec.default_input_size for spec in specs)
        if builds:
            requires_training_stack("backbones --input-size")  # MACs at another size: the models are built
        rows = []
        if builds:  # MACs at another size: each backbone is built (seconds each)
            with err_console.status("") as status:
                for spec in specs:
                    status.update(f"building {spec.name} at {input_size} px to count its MACs")
                    rows.append(describe_backbone(spec, classes or 1000, alpha=alpha, input_size=input_size))
        else:
            rows = [describe_backbone(spec, classes or 1000, alpha=alpha, input_size=input_size) for spec in specs]
        if as_json:
            console.print_json(json.dumps(rows))
            return
        console.print(backbones_table(rows, wide=console.width >= _WIDE))
        for line in _notes(rows, alpha, input_size, classes, skipped):
            console.print(line, highlight=False)


def _count(n: int) -> str:
    """3 significant digits: ``3.54 M``, ``7.20 M``, ``386 M``, ``1.23 G``, ``585 K``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return str(n)


def _alphas(alphas: list[float]) -> str:
    if not alphas:
        return "-"
    return f"{alphas[0]}–{alphas[-1]}" if len(alphas) > 2 else ", ".join(map(str, alphas))


def _sizes(sizes: list[int]) -> str:
    if not sizes:
        return "none"
    return f"{sizes[0]}–{sizes[-1]}" if len(sizes) > 2 else ", ".join(map(str, sizes))


def backbones_table(rows: list[dict[str, Any]], *, wide: bool = False) -> Table:
    """The listing: one row per backbone, fitting 80 columns (``wide`` adds the fp32 file size)."""
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    t.add_column("backbone", no_wrap=True)
    t.add_column("input px", no_wrap=True)
    t.add_column("alphas", no_wrap=True)
    for col in ("params", "MACs", "int8 file", *(("fp32 file",) if wide else ())):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("ImageNet", no_wrap=True)
    for r in rows:
        t.add_row(
            r["name"], f"{r['input_size']} (≥{r['min_input_size']})", _alphas(r["alphas"]), _count(r["params"]), _count(r["macs"]),
            human_size(r["int8_bytes"]), *((human_size(r["float_bytes"]),) if wide else ()), _sizes(r["pretrained_sizes"]),
        )
    return t


def _notes(rows: list[dict[str, Any]], alpha: float | None, input_size: int | None, classes: int | None, skipped: list[str]) -> list[str]:
    at = [f"{input_size} px" if input_size is not None else "the default input size",
          f"alpha {alpha:g}" if alpha is not None else "the default alpha (1.0 where a backbone has alphas)",
          f"a {classes or 1000}-class head"]
    notes = [f"Figures at {at[0]}, {at[1]}, with {at[2]}; MACs per image. Pass --input-size, --alpha, --classes for yours."]
    notes.append("File sizes: the TFLite model (int8: full-integer; the float one is about 4x). ImageNet: sizes with weights.")
    targets = {tuple(r["targets"]) for r in rows}
    if len(targets) == 1:
        notes.append(f"Every backbone exports to {', '.join(next(iter(targets)))}.")
    else:
        notes += [f"{r['name']} exports to {', '.join(r['targets'])}." for r in rows]
    if skipped:
        notes.append(f"Without alpha {alpha:g}: {', '.join(skipped)}.")
    return notes
