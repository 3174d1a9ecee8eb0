"""Terminal output shared by every command: the two consoles, log setup, progress bars, percentages.

Standard output carries results (tables, JSON); standard error carries logs, progress, notes and
errors, so ``edgetl ... --json > out.json`` stays clean.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from rich.console import Console

from edgetl.core.native_output import NATIVE_LOGGER
from edgetl.core.text import display_safe

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: int) -> None:
    """Log to stderr through rich: warnings by default, ``-v`` info, ``-vv`` debug.

    What TensorFlow and LiteRT write from C++ (captured by :mod:`edgetl.core.native_output`) is
    logged at DEBUG on ``edgetl.native``: shown from ``-v`` on, hidden by default.
    """
    from rich.logging import RichHandler  # rich's logging module: only when a command runs

    _console_on_own_stderr()
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=err_console, show_path=False)
    handler.addFilter(_display_safe_record)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
    logging.getLogger(NATIVE_LOGGER).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if verbose == 0:  # TensorFlow's deprecation chatter is not the user's business
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def _console_on_own_stderr() -> None:
    """Point ``err_console`` at a duplicate of fd 2, so it keeps writing to the terminal while
    :func:`~edgetl.core.native_output.native_output_to_log` points fd 2 at a file (a progress bar
    refreshes from its own thread at any time).

    Only when ``sys.stderr`` is the process's fd 2: under typer's CliRunner or pytest's capture
    it is a Python object, and the console keeps writing to whatever ``sys.stderr`` is.
    """
    if err_console._file is not None:  # noqa: SLF001 - already done (or set by a caller)
        return
    try:
        if sys.stderr.fileno() != 2:
            return
        stream = os.fdopen(os.dup(2), "w", encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace", buffering=1)
    except (AttributeError, OSError, ValueError):  # no real fd behind sys.stderr
        return
    err_console.file = stream


def _display_safe_record(record: logging.LogRecord) -> bool:
    """Log messages carry file and class names: escape control and bidi characters before they reach the terminal."""
    try:
        record.msg, record.args = display_safe(record.getMessage(), markup=False), None
    except (TypeError, ValueError):  # a malformed log call: let the handler report it as usual
        pass
    return True


class RichProgress:
    """The library's progress callback drawn as rich progress bars, one per stage.

    The display starts at the first progress report, so an error the library raises before any
    work begins (a bad file, a bad option) prints as one line with no empty progress display.
    """

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[message]}"), console=err_console, transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.started = False

    def __call__(self, task: str, completed: int, total: int, message: str = "") -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total or None, message=message)
        self.progress.update(self.tasks[task], completed=completed, total=total or None, message=message)

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()


def pct(value: float | None) -> str:
    """``0.934`` -> ``"93.4%"``; ``None`` and NaN -> ``"n/a"``."""
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
