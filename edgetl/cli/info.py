"""``edgetl backbones``: what can be fine-tuned (the version is the app's ``--version`` option)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from edgetl.cli.console import console
from edgetl.cli.errors import errors_as_exit, requires_training_stack


def backbones(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the registered backbones: input sizes, parameters and MACs (1000-class head, default size), targets."""
    with errors_as_exit():
        requires_training_stack("backbones")  # it builds each backbone to count parameters and MACs
        # the backbone registry (TensorFlow to count MACs): imported when the command runs, not for --help
        from edgetl.ml.backbones import describe_backbone
        from edgetl.ml.backbones.spec import BACKBONES

        rows = [describe_backbone(spec) for _, spec in BACKBONES.items()]
        if as_json:
            console.print_json(json.dumps(rows))
            return
        t = Table(title="registered backbones (parameters and MACs with a 1000-class head, at the default size)")
        t.add_column("name", no_wrap=True)
        for col in ("default size", "min size", "ImageNet sizes", "alphas", "params", "MACs", "QAT recipe", "targets"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                r["name"], str(r["default_input_size"]), str(r["min_input_size"]), ", ".join(map(str, r["pretrained_sizes"])) or "none (--weights none|PATH)",
                ", ".join(map(str, r["alphas"])) or "-", f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e6:.0f} M", r["qat_recipe"], ", ".join(r["targets"]),
            )
        console.print(t)
