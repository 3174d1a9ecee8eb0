"""How the CLI shows what went wrong: errors, interrupts and a missing training stack.

- :func:`errors_as_exit`: an :class:`EdgetlError` prints one red line on stderr and exits with its
  code (no traceback); Ctrl-C exits 130 and SIGTERM 143. Any other exception is a bug and keeps
  its traceback.
- :data:`PARAM_FLAGS`: the one table from library parameter names to CLI flags. Library messages
  name a parameter as ``name=value`` (what a Python caller passes); :func:`cli_message` shows it
  as ``--flag value``, so the CLI speaks in flags and the Python API in parameters.
- :func:`requires_training_stack`: the one check that TensorFlow and its companions are installed,
  called first by the commands that train or convert (``train``, ``qat``, ``export``, ``build``,
  ``demo``); a device install (``pip install edgetl``) gets one line naming the full install.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from edgetl.cli.console import err_console
from edgetl.core.errors import EdgetlError, MissingDependencyError
from edgetl.core.install import TRAIN_INSTALL, TRAINING_MODULES, missing_modules
from edgetl.core.text import display_safe

#: Library parameter name -> the CLI flag that sets it. A library message that writes
#: ``opset=99`` reads ``--opset 99`` on the command line.
PARAM_FLAGS: dict[str, str] = {
    "arena_margin": "--arena-margin",
    "class_weights": "--class-weights",
    "data": "--data",
    "fine_tune_lr": "--fine-tune-lr",
    "head_lr": "--lr",
    "min_images": "--min-images",
    "opset": "--opset",
    "patience": "--patience",
}

# A parameter starts the message or follows a space, "(" or "`": never part of a path or a dotted key.
_PARAM = re.compile(r"(?<![^\s(`])(" + "|".join(map(re.escape, sorted(PARAM_FLAGS, key=len, reverse=True))) + r")=")



def cli_message(exc: BaseException) -> str:
    """The message of ``exc`` with each ``param=`` of :data:`PARAM_FLAGS` written as its flag."""
    return _PARAM.sub(lambda m: PARAM_FLAGS[m.group(1)] + " ", str(exc))


def requires_training_stack(command: str) -> None:
    """Raise a one-line :class:`MissingDependencyError` (exit 2) when the training stack is not installed.

    Only looks the modules up (``importlib.util.find_spec``): nothing is imported.
    """
    missing = missing_modules(TRAINING_MODULES)
    if missing:
        raise MissingDependencyError(
            f"edgetl {command} needs the training stack ({', '.join(missing)} not installed); "
            f"this is a device install: install the full one with {TRAIN_INSTALL}"
        )


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """EdgetlError -> one line on stderr, non-zero exit, no traceback."""
    try:
        yield
    except EdgetlError as exc:
        err_console.print(f"[bold red]error:[/] {display_safe(cli_message(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        _stop_terminate_retry()
        how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        err_console.print(f"[bold red]{how}[/]: nothing half-written was left under a final name")
        raise typer.Exit(code) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that the same clean-up as for Ctrl-C runs (exit 143)."""


#: Seconds after SIGTERM before Terminated is raised again, while it has not ended the command.
TERMINATE_RETRY_S = 2.0


def _raise_terminated(signum: int, frame: object) -> None:
    import signal

    # Python ignores an exception raised while a finalizer or weakref callback runs ("Exception ignored
    # in ..."): if the signal lands there, SIGALRM raises it again until errors_as_exit or main() stop it.
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.setitimer(signal.ITIMER_REAL, TERMINATE_RETRY_S)
    raise Terminated()


def _stop_terminate_retry() -> None:
    import signal

    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.setitimer(signal.ITIMER_REAL, 0)


def _handle_sigterm() -> None:
    import signal

    with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread, or no such signals here
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGALRM, _raise_terminated)


def run_handling_sigterm(run: Callable[[], object]) -> None:
    """Run the CLI with SIGTERM raising :class:`Terminated`; one caught outside any command exits 143."""
    _handle_sigterm()
    try:
        run()
    except Terminated:  # before or after a command's own handling (argument parsing, imports)
        _stop_terminate_retry()
        err_console.print("[bold red]terminated (SIGTERM)[/]")
        sys.exit(143)
