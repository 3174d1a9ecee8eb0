"""Run benchmark work in child processes, so that a runtime crash ends the child, not edgetl.

:func:`measure` is one (artifact, thread count) measurement in this process: the board runner's
(:func:`edgetl.bench.board_runner.measure`), its errors turned into edgetl's.
:func:`measure_in_subprocess` runs it in a fresh ``python -m edgetl.bench.worker`` process (honest
cold start and peak RSS), reading its progress lines from stdout and its outcome from a JSON file.
Errors edgetl raises in the child come back as the same :class:`~edgetl.core.errors.EdgetlError`
subclass (:func:`error_class`); a child killed by a signal becomes one
:class:`~edgetl.core.errors.ArtifactError` line. (Planning in a child: :func:`edgetl.bench.plan.plan_isolated`.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import edgetl
from edgetl.bench import board_runner as _runner
from edgetl.core import errors

if TYPE_CHECKING:  # annotations only: the worker child imports this module and stays as light as the runner
    from edgetl.bench.options import BenchOptions
    from edgetl.bench.plan import ArtifactPlan

_PROGRESS_PREFIX = _runner.PROGRESS_PREFIX


def error_class(name: str | None) -> type[errors.EdgetlError]:
    """The :class:`~edgetl.core.errors.EdgetlError` subclass a runner or worker named; EdgetlError when unknown."""
    cls = getattr(errors, str(name), errors.EdgetlError)
    return cls if isinstance(cls, type) and issubclass(cls, errors.EdgetlError) else errors.EdgetlError


# ----------------------------------------------------------------------------- one measurement
def measure(spec: dict[str, Any], report: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """One (artifact, threads) measurement in this process; meant for a fresh one (``edgetl.bench.worker``).

    The measurement itself is :func:`edgetl.bench.board_runner.measure`, the same code that
    ``edgetl bench --remote`` runs on a board; this wrapper only turns its errors into edgetl's.

    Args:
        spec: see :func:`measurement_spec`.
        report: ``report(done, total, message)``: runs done of ``runs``, or seconds of ``duration_s``.

    Returns:
        ``threads``, ``stats``, ``cold_start_ms``, ``session_ms``, ``first_run_ms``, ``peak_rss_mib``,
        ``runtime_version``, ``provider``, ``op_profile``, ``samples_ms``.

    Raises:
        EdgetlError: the subclass the runner names (ArtifactError, DataError, ConfigError, MissingDependencyError).
    """
    try:
        return _runner.measure(spec, report)
    except _runner.RunnerError as exc:
        raise error_class(exc.kind)(str(exc)) from None


# ----------------------------------------------------------------------------- in a fresh process
def measurement_spec(plan: ArtifactPlan, threads: int, options: BenchOptions) -> dict[str, Any]:
    """The runner's spec for one (artifact, threads) measurement: shapes, dtypes and settings from the plan."""
    return {
        "path": str(plan.path.resolve()),
        "runtime": plan.runtime.name,
        "threads": int(threads),
        "shapes": plan.shapes,
        "dtypes": [i["dtype"] for i in plan.inputs],
        "warmup": options.warmup,
        "runs": options.timed_runs,
        "duration_s": options.duration_s,
        "profile_runs": options.profile_runs,
        "seed": options.seed,
    }


def _worker_env() -> dict[str, str]:
    root = str(Path(edgetl.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def measure_in_subprocess(
    plan: ArtifactPlan, threads: int, options: BenchOptions, report: Callable[[int, int, str], None] | None = None
) -> dict[str, Any]:
    """Run :func:`measure` in a fresh ``python -m edgetl.bench.worker`` process and return its result.

    Raises:
        EdgetlError: the subclass the worker raised (same message).
        ArtifactError: the runtime crashed the worker (a signal), e.g. on a model it cannot handle.
        RuntimeError: the worker failed otherwise (a bug; its stderr is attached).
    """
    spec = measurement_spec(plan, threads, options)
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as tmp:
        spec_path, result_path, err_path = Path(tmp, "spec.json"), Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        spec["result_path"] = str(result_path)
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with open(err_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgetl.bench.worker", str(spec_path)],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, env=_worker_env(),
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:  # progress lines; anything else a native library prints is dropped
                    if report is not None and line.startswith(_PROGRESS_PREFIX):
                        done, total, *message = line[len(_PROGRESS_PREFIX) :].split(maxsplit=2)
                        report(int(done), int(total), " ".join(message))
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if result_path.is_file():
            outcome = json.loads(result_path.read_text(encoding="utf-8"))
            if outcome.get("ok"):
                return outcome["result"]
            raise error_class(outcome.get("error"))(outcome.get("message", "the benchmark worker failed"))
        stderr_tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise errors.ArtifactError(
            f"{plan.runtime.label} crashed ({name}) while benchmarking {plan.path} with {threads} thread(s); "
            "the model may be corrupt or use something the runtime cannot run"
        )
    raise RuntimeError(f"benchmark worker for {plan.path} exited with code {code}:\n{stderr_tail}")
