"""Progress reporting: stages call a callback; the CLI turns it into rich progress bars."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Called as ``progress(task, completed, total, message)``; ``total`` 0 means unknown."""

    def __call__(self, task: str, completed: int, total: int, message: str = "") -> None: ...


def log_progress(task: str, completed: int, total: int, message: str = "") -> None:
    """Default callback: a log line per step, for notebooks and the Python API."""
    log.info("%s %d/%d %s", task, completed, total, message)


