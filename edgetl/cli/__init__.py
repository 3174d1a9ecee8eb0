"""The ``edgetl`` command line (Typer)."""

from edgetl.cli.app import app, main

__all__ = ["app", "main"]
