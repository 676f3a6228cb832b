"""The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code").

With n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), computed as a product to stay
numerically stable for large n.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """Mean pass@k over problems, for every k that every problem has enough samples for."""
    pairs = list(counts)
    if not pairs:
        return {}
    out = {}
    for k in ks:
        if all(n >= k for n, _ in pairs):
            out[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in pairs]))
    return out


def pass_at_k_per_problem(counts: Iterable[tuple[int, int]], k: int) -> list[float]:
    """Each problem's unbiased pass@k estimate (the values whose mean is pass@k), in ``counts`` order."""
    return [pass_at_k(n, c, k) for n, c in counts]


def pass_at_k_stderr(counts: Iterable[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """lm-eval-harness's standard error of each mean pass@k (over problems), for the same k as ``mean_pass_at_k``."""
    from textbooklm.evals.uncertainty import mean_stderr

    pairs = list(counts)
    return {f"pass@{k}": mean_stderr(pass_at_k_per_problem(pairs, k))
            for k in ks if pairs and all(n >= k for n, _ in pairs)}
