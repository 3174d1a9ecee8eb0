"""How ``edgetl bench`` measures: :class:`BenchOptions` and the parsers of its command-line values.

``--threads 1,2,4``, ``--duration 10s``, ``--shape input=1x224x224x3`` become typed values here,
and every option is range-checked (a typo such as ``--runs 10**12`` fails at once) with a
one-line :class:`~edgetl.core.errors.ConfigError` naming the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgetl.bench.runtimes import RUNTIMES
from edgetl.core.errors import ConfigError

DEFAULT_RUNS = 200
#: Upper bounds of the options, so that a typo (--runs 10**12) fails at once instead of running for ever.
MAX_RUNS = 1_000_000
MAX_WARMUP = 100_000
MAX_DURATION_S = 3600.0
MAX_THREADS = 1024
MAX_PROFILE_RUNS = 10_000


def parse_threads(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)`` (order kept, repeats dropped).

    Raises:
        ConfigError: anything but positive integers separated by commas.
    """
    counts: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 6 or not 1 <= int(part) <= MAX_THREADS:
            raise ConfigError(f"Received --threads {text!r}; pass integers from 1 to {MAX_THREADS} separated by commas, e.g. 1,2,4")
        if int(part) not in counts:
            counts.append(int(part))
    return tuple(counts)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*$", re.IGNORECASE)


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_duration(text: str) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"`` (a bare number is seconds) -> seconds.

    Raises:
        ConfigError: not a positive duration in one of those forms.
    """
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"Received --duration {text!r}; pass a positive duration such as 10s, 500ms or 2m")
    return seconds


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"input=1x224x224x3"`` -> ``("input", (1, 224, 224, 3))``; the name may itself hold ``=``.

    Raises:
        ConfigError: no name, or a dimension that is not a positive integer.
    """
    name, sep, dims = str(text).rpartition("=")
    parts = dims.lower().split("x")
    if not sep or not name or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"Received --shape {text!r}; pass NAME=DIMS with positive sizes joined by x, e.g. input=1x224x224x3")
    return name, tuple(int(p) for p in parts)


@dataclass(frozen=True)
class BenchOptions:
    """How ``edgetl bench`` measures (a dataclass, not pydantic: it must import on a device).

    Attributes:
        threads: thread counts; each is measured in its own process.
        warmup: untimed runs after the cold-start run.
        runs: timed runs (default 200 when ``duration_s`` is not set).
        duration_s: time runs for this long instead of a fixed count.
        batch: size of dynamic batch dimensions; None: 1.
        shapes: concrete shapes for inputs by name (for dynamic dimensions other than batch).
        runtime: ``onnxruntime`` or ``litert``; None: by file suffix.
        profile_runs: runs of the separate profiled session (0: no op profile).
        seed: seed of the synthetic input data.

    Raises:
        ConfigError: a value out of range, or both ``runs`` and ``duration_s``.
    """

    threads: tuple[int, ...] = (1,)
    warmup: int = 20
    runs: int | None = None
    duration_s: float | None = None
    batch: int | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    runtime: str | None = None
    profile_runs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runs is not None and self.duration_s is not None:
            raise ConfigError("Received both --runs and --duration; pass one of them")
        if not self.threads or any(not isinstance(t, int) or not 1 <= t <= MAX_THREADS for t in self.threads):
            raise ConfigError(f"Received threads={list(self.threads)}; pass integers from 1 to {MAX_THREADS}, e.g. 1,2,4")
        if not 0 <= self.warmup <= MAX_WARMUP:
            raise ConfigError(f"Received --warmup {self.warmup}; pass 0 to {MAX_WARMUP:,}")
        if self.runs is not None and not 1 <= self.runs <= MAX_RUNS:
            raise ConfigError(f"Received --runs {self.runs}; pass 1 to {MAX_RUNS:,} (or --duration for a time budget)")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise ConfigError(f"Received a duration of {self.duration_s} s; pass a positive duration of at most {MAX_DURATION_S:.0f} s (1 hour)")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"Received --batch {self.batch}; pass 1 or more")
        if not 0 <= self.profile_runs <= MAX_PROFILE_RUNS:
            raise ConfigError(f"Received profile_runs={self.profile_runs}; pass 0 to {MAX_PROFILE_RUNS:,}")
        if self.runtime is not None:
            RUNTIMES.get(self.runtime)
        object.__setattr__(self, "threads", tuple(self.threads))
        object.__setattr__(self, "shapes", {str(k): tuple(int(d) for d in v) for k, v in dict(self.shapes).items()})

    @property
    def timed_runs(self) -> int | None:
        """Runs to time; None in duration mode."""
        return None if self.duration_s is not None else (self.runs or DEFAULT_RUNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": list(self.threads),
            "warmup": self.warmup,
            "runs": self.timed_runs,
            "duration_s": self.duration_s,
            "batch": self.batch,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "runtime": self.runtime,
            "profile_runs": self.profile_runs,
            "seed": self.seed,
        }
