"""``edgetl compare``: read two ``bench.json`` files and compare their p50 latencies with a bootstrap interval.

Artifacts are paired by label (or the only artifact of each file) and thread count; the ratio
p50(B) / p50(A) gets a seeded bootstrap percentile confidence interval from the raw samples, and
a :class:`Comparison` says what the interval supports, against a practical-equivalence band
(``equivalence`` e, default 3%: ratios in ``[1/(1+e), 1+e]`` are noise-level differences):

- the whole interval inside the band: **equivalent** (within ±e);
- the whole interval beyond one edge of the band: B is **faster** / **slower**, by the ratio;
- otherwise (the interval crosses an edge of the band): **inconclusive**, worded "probably
  equivalent" or "probably N.NNx slower/faster" by where the point estimate lies; more runs narrow it.

Two runs of the same file typically differ by ~1% with a tight interval: without a band that
reads "B is 1.01x slower", which is true and useless.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.stats import BENCH_KIND, SCHEMA_VERSION
from edgetl.core.errors import ArtifactError, ConfigError


def load_bench(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``bench.json`` that ``edgetl bench`` wrote.

    Raises:
        ArtifactError: missing, not JSON, not an edgetl bench file, or an unsupported ``schema_version``.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"benchmark file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path} is not an edgetl bench file: not readable JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(doc, dict) or doc.get("kind") != BENCH_KIND or "schema_version" not in doc:
        raise ArtifactError(f"{path} is not an edgetl bench file (no \"kind\": \"{BENCH_KIND}\"); pass a bench.json that `edgetl bench` wrote")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {doc['schema_version']!r}; this edgetl reads schema_version {SCHEMA_VERSION}"
        )
    artifacts = doc.get("artifacts")
    if not isinstance(artifacts, list) or not all(
        isinstance(a, dict) and isinstance(a.get("label"), str) and isinstance(a.get("results"), list) for a in artifacts
    ):
        raise ArtifactError(f"{path} is not a complete edgetl bench file (its \"artifacts\" list is malformed)")
    return doc


def _bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = samples.size
    medians = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)  # bound the index matrix to ~32 MB
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        medians[start : start + count] = np.median(samples[rng.integers(0, n, size=(count, n))], axis=1)
    return medians


def bootstrap_ratio_ci(
    a_ms: Sequence[float], b_ms: Sequence[float], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """p50(B) / p50(A) and its bootstrap percentile confidence interval.

    Each sample set is resampled with replacement ``resamples`` times (seeded); the interval is
    the central ``confidence`` part of the resampled ratios.

    Returns:
        ``(ratio, low, high)``.
    """
    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_ratio_ci() needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(b, resamples, rng) / _bootstrap_medians(a, resamples, rng)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.median(b) / np.median(a)), float(low), float(high)


#: Default practical-equivalence margin of ``edgetl compare`` (``--equivalence 3%``).
DEFAULT_EQUIVALENCE = 0.03


def parse_equivalence(text: str) -> float:
    """``--equivalence``: ``3%`` or ``3`` (percent) -> 0.03.

    Raises:
        ConfigError: not a number, or not in [0%, 100%).
    """
    raw = str(text).strip()
    number = raw[:-1].strip() if raw.endswith("%") else raw
    try:
        value = float(number) / 100
    except ValueError:
        raise ConfigError(f"Received --equivalence {raw!r}; pass a percentage such as 3% (ratios within ±3% count as equivalent)") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"Received --equivalence {raw!r}; pass a percentage from 0% up to (not including) 100%, e.g. 3%")
    return value


def equivalence_band(equivalence: float) -> tuple[float, float]:
    """The ratios B/A that count as equivalent: ``[1/(1+e), 1+e]`` (symmetric in speed-up and slow-down)."""
    return 1.0 / (1.0 + equivalence), 1.0 + equivalence


def _percent(equivalence: float) -> str:
    return f"{100 * equivalence:g}%"


@dataclass(frozen=True)
class Comparison:
    """p50 of one artifact at one thread count in file B relative to file A.

    ``equivalence`` is the practical-equivalence margin e: the verdict is decided on the confidence
    interval against the band ``[1/(1+e), 1+e]`` (see the module docstring).
    """

    artifact_a: str
    artifact_b: str
    threads: int
    p50_a_ms: float
    p50_b_ms: float
    ratio: float  # p50 B / p50 A: below 1, B is faster
    ci_low: float
    ci_high: float
    runs_a: int
    runs_b: int
    equivalence: float = DEFAULT_EQUIVALENCE

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 1 (a difference, however small: see :attr:`status`)."""
        return not (self.ci_low <= 1.0 <= self.ci_high)

    @property
    def band(self) -> tuple[float, float]:
        return equivalence_band(self.equivalence)

    @property
    def status(self) -> str:
        """``equivalent``, ``faster``, ``slower`` or ``inconclusive``, from the interval against the band."""
        low, high = self.band
        if low <= self.ci_low and self.ci_high <= high:
            return "equivalent"
        if self.ci_low > high:
            return "slower"
        if self.ci_high < low:
            return "faster"
        return "inconclusive"

    def _by(self) -> str:
        return f"{1 / self.ratio:.2f}x faster" if self.ratio < 1 else f"{self.ratio:.2f}x slower"

    @property
    def verdict(self) -> str:
        """One short phrase; "inconclusive" means the interval crosses an edge of the band (more runs narrow it)."""
        band = f"±{_percent(self.equivalence)}"
        status = self.status
        if status == "equivalent":
            return f"equivalent (within {band})"
        if status in ("faster", "slower"):
            return f"B is {self._by()}"
        low, high = self.band
        if low <= self.ratio <= high:  # the interval crosses an edge of the band
            return "inconclusive (probably equivalent)"
        return f"inconclusive (B probably {self._by()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self), "equivalence_band": list(self.band), "significant": self.significant,
            "status": self.status, "verdict": self.verdict,
        }


def compare_benches(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    threads: int | None = None,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    names: tuple[str, str] = ("A", "B"),
    equivalence: float = DEFAULT_EQUIVALENCE,
) -> list[Comparison]:
    """Pair artifacts by label (or the only artifact of each file) and thread count; compare their p50.

    Args:
        equivalence: practical-equivalence margin e (0.03: B/A within [1/1.03, 1.03] is "equivalent").

    Raises:
        ConfigError: nothing to pair, ``threads`` is in neither file's pairs, or ``equivalence`` not in [0, 1).
        ArtifactError: a paired result holds no raw samples.
    """
    if not 0.0 <= equivalence < 1.0:
        raise ConfigError(f"equivalence={equivalence!r} must be in [0, 1) (0.03 is ±3%)")
    by_label_a = {e["label"]: e for e in a["artifacts"]}
    by_label_b = {e["label"]: e for e in b["artifacts"]}
    pairs = [(by_label_a[label], by_label_b[label]) for label in by_label_a if label in by_label_b]
    if not pairs and len(a["artifacts"]) == 1 and len(b["artifacts"]) == 1:
        pairs = [(a["artifacts"][0], b["artifacts"][0])]
    if not pairs:
        raise ConfigError(
            f"{names[0]} and {names[1]} share no artifact: {names[0]} has {', '.join(by_label_a) or 'none'}, "
            f"{names[1]} has {', '.join(by_label_b) or 'none'}"
        )
    comparisons = []
    available = set()
    for entry_a, entry_b in pairs:
        results_b = {int(r["threads"]): r for r in entry_b["results"]}
        for result_a in entry_a["results"]:
            count = int(result_a["threads"])
            if count not in results_b:
                continue
            available.add(count)
            if threads is not None and count != threads:
                continue
            result_b = results_b[count]
            samples_a, samples_b = result_a.get("samples_ms") or [], result_b.get("samples_ms") or []
            if not samples_a or not samples_b:
                side = names[0] if not samples_a else names[1]
                raise ArtifactError(f"{side} holds no raw latency samples for {entry_a['label']} at {count} thread(s)")
            ratio, low, high = bootstrap_ratio_ci(samples_a, samples_b, resamples=resamples, seed=seed, confidence=confidence)
            comparisons.append(Comparison(
                artifact_a=entry_a["label"], artifact_b=entry_b["label"], threads=count,
                p50_a_ms=float(np.median(samples_a)), p50_b_ms=float(np.median(samples_b)),
                ratio=ratio, ci_low=low, ci_high=high, runs_a=len(samples_a), runs_b=len(samples_b),
                equivalence=equivalence,
            ))
    if not comparisons:
        shown = ", ".join(map(str, sorted(available))) or "none"
        wanted = f" at {threads} thread(s)" if threads is not None else ""
        raise ConfigError(f"{names[0]} and {names[1]} have no measurement in common{wanted}; thread counts in both: {shown}")
    return comparisons
