"""``edgetl compare``: read two ``bench.json`` files and compare their p50 latencies with a bootstrap interval.

Artifacts are paired by label (or the only artifact of each file) and thread count; the ratio
p50(B) / p50(A) gets a seeded bootstrap percentile confidence interval from the raw samples, and
a :class:`Comparison` says whether the difference is significant.
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


@dataclass(frozen=True)
class Comparison:
    """p50 of one artifact at one thread count in file B relative to file A."""

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

    @property
    def significant(self) -> bool:
        return not (self.ci_low <= 1.0 <= self.ci_high)

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "no significant difference"
        if self.ratio < 1:
            return f"B is {1 / self.ratio:.2f}x faster"
        return f"B is {self.ratio:.2f}x slower"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant, "verdict": self.verdict}


def compare_benches(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    threads: int | None = None,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    names: tuple[str, str] = ("A", "B"),
) -> list[Comparison]:
    """Pair artifacts by label (or the only artifact of each file) and thread count; compare their p50.

    Raises:
        ConfigError: nothing to pair, or ``threads`` is in neither file's pairs.
        ArtifactError: a paired result holds no raw samples.
    """
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
            ))
    if not comparisons:
        shown = ", ".join(map(str, sorted(available))) or "none"
        wanted = f" at {threads} thread(s)" if threads is not None else ""
        raise ConfigError(f"{names[0]} and {names[1]} have no measurement in common{wanted}; thread counts in both: {shown}")
    return comparisons
