"""The exact McNemar test (edgetl.device.paired) against SciPy's exact binomial test and known values."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.device.paired import binomial_two_sided_half, mcnemar_exact


def _pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(a), np.array(b)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 5), (2, 5), (3, 10), (5, 10), (0, 20), (7, 30), (15, 30), (40, 100), (1, 200), (600, 1300)])
def test_binomial_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    assert binomial_two_sided_half(k, n) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-300)


def test_known_values():
    # 1 vs 9 discordant pairs: 2 * (1 + 10) / 1024 = 0.021484375 (textbook exact McNemar)
    result = mcnemar_exact(*_pairs(50, 1, 9, 5))
    assert result == {"a_only": 1, "b_only": 9, "p_value": pytest.approx(22 / 1024), "significant": True}
    assert mcnemar_exact(*_pairs(10, 3, 3, 1))["p_value"] == 1.0  # balanced disagreement: no evidence
    assert mcnemar_exact(*_pairs(10, 0, 0, 4)) == {"a_only": 0, "b_only": 0, "p_value": 1.0, "significant": False}
    assert mcnemar_exact(*_pairs(0, 0, 5, 0))["p_value"] == pytest.approx(2 / 32)  # 0.0625: not significant at 5 discordant
    assert mcnemar_exact(*_pairs(0, 0, 6, 0))["significant"] is True  # 2/64 = 0.03125


def test_symmetric_and_rejects_mismatched_shapes():
    a, b = _pairs(3, 4, 11, 2)
    forward, backward = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (forward["a_only"], forward["b_only"]) == (backward["b_only"], backward["a_only"])
    assert forward["p_value"] == backward["p_value"]
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))
