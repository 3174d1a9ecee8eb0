"""Terminal output shared by every command: the two consoles, log setup, progress bars, percentages.

Standard output carries results (tables, JSON); standard error carries logs, progress, notes and
errors, so ``edgetl ... --json > out.json`` stays clean.
"""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console

from edgetl.core.text import display_safe

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: int) -> None:
    """Log to stderr through rich: warnings by default, ``-v`` info, ``-vv`` debug."""
    from rich.logging import RichHandler  # rich's logging module: only when a command runs

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=err_console, show_path=False)
    handler.addFilter(_display_safe_record)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
    if verbose == 0:  # TensorFlow's deprecation chatter is not the user's business
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


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
