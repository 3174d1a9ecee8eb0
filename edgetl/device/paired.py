"""Paired comparison of two classifiers on the same images: the exact McNemar test.

Two models scored on the same held-out images are not independent samples, so comparing their
top-1 with an unpaired test wastes the pairing. McNemar's test looks only at the discordant images
(one model right, the other wrong): under "no difference" each is equally likely to go either
way, so the count ``b`` of images only model A gets right is Binomial(b + c, 1/2). The exact
two-sided p-value is computed with integers (``math.comb``), no SciPy, so it runs on a board.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

#: Below this p-value the two models are reported as differing significantly.
ALPHA = 0.05


def binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` trials with success probability 1/2.

    The distribution is symmetric, so the two-sided p-value (the probability of an outcome at least
    as unlikely as ``k``) is twice the smaller tail, capped at 1; 1.0 when ``n`` is 0.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(comb(n, i) for i in range(low + 1))
    return min(1.0, 2 * tail / 2**n)  # big-integer division: exact to a float's precision for any n


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of two classifiers' per-image correctness on the same images.

    Args:
        correct_a, correct_b: booleans, one per image, True where that model's top-1 is right.

    Returns:
        ``{"a_only": b, "b_only": c, "p_value": p, "significant": p < 0.05}``: ``a_only`` images
        only A gets right, ``b_only`` only B; ``p_value`` the exact two-sided binomial test of ``b``
        in ``b + c`` trials at 1/2 (1.0 when the models never disagree).

    Raises:
        ValueError: the arrays differ in length or are not one-dimensional.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"need two 1-D arrays of the same length, got shapes {a.shape} and {b.shape}")
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(~a & b))
    p_value = binomial_two_sided_half(a_only, a_only + b_only)
    return {"a_only": a_only, "b_only": b_only, "p_value": p_value, "significant": bool(p_value < ALPHA)}
