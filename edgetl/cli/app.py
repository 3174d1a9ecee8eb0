"""The ``edgetl`` command line: the Typer app, its ``--version`` option and its commands.

Each command lives in the module of its group and does one thing: parse its flags, build a
configuration, make one call to :mod:`edgetl.pipeline.api` (or a device-side function), show the
result. Nothing heavy is imported at module level (TensorFlow loads only inside commands that train
or convert), so ``edgetl --help`` and every subcommand's ``--help`` are instant. Errors the user can
fix print one line (:mod:`edgetl.cli.errors`); anything else is a bug and keeps its traceback.

=====================  ==============================================
module                 commands
=====================  ==============================================
:mod:`.train`          ``train``, ``qat``, ``export``
:mod:`.device`         ``eval``, ``predict``, ``inspect``
:mod:`.build`          ``build``, ``demo``
:mod:`.info`           ``backbones``
:mod:`.doctor`         ``doctor``
:mod:`.bench`          ``bench``, ``compare``
:mod:`.package`        ``package``
:mod:`.data`           ``data check``
:mod:`.experiment`     ``experiment data-efficiency``, ``experiment unfreeze-depth``
:mod:`.select`         ``select``
=====================  ==============================================
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from edgetl import __version__
from edgetl.cli import bench, build, data, device, doctor, experiment, info, package, train
from edgetl.cli import select as select_cli
from edgetl.cli.console import console
from edgetl.cli.errors import run_handling_sigterm


def _no_value_type_for_flags() -> None:
    """Typer 0.2x prints a ``<bool>`` type column for boolean flags (and ``<int>`` for ``-v``-style counters),
    which take no value: show no type for options that take none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_edgetl_flags_untyped", False):
        return

    def display_type_rich(self, ctx):
        if self.metavar is None and (self.is_flag or self.count):
            return None
        return shown(self, ctx)

    display_type_rich._edgetl_flags_untyped = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_value_type_for_flags()

app = typer.Typer(
    name="edgetl",
    help="Fine-tune an image classifier on a folder of labelled photos, quantize it, export it for "
    "phones, boards and microcontrollers, and measure its accuracy and latency there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data.data_app, name="data")
app.add_typer(experiment.experiment_app, name="experiment")

# In this order in `edgetl --help`.
app.command("train")(train.train)
app.command("qat")(train.qat)
app.command("export")(train.export)
app.command("eval")(device.eval_cmd)
app.command("build")(build.build)
app.command("select")(select_cli.select_cmd)
app.command("demo")(build.demo)
app.command("backbones")(info.backbones)
app.command("bench")(bench.bench_cmd)
app.command("compare")(bench.compare)
app.command("predict")(device.predict)
app.command("inspect")(device.inspect_cmd)
app.command("package")(package.package_cmd)
app.command("doctor")(doctor.doctor)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"edgetl {__version__}")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run_handling_sigterm(lambda: app(args=argv if argv is not None else sys.argv[1:], prog_name="edgetl"))


if __name__ == "__main__":  # pragma: no cover
    main()
