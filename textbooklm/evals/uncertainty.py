"""Error bars for evaluation figures, and the paired test between two models on the same problems.

Why these three:

* **pass@k standard error** is lm-eval-harness's ``mean_stderr``: the sample standard deviation
  (ddof=1) of the per-problem pass@k estimates over the square root of the number of problems. It
  is what a reader of an lm-eval table expects after the "±".
* **NLL intervals by bootstrap over problems**: NLL per token is a ratio (nats summed over tokens
  summed), whose spread comes from which problems were drawn; resampling problems (documents) with
  replacement and recomputing the ratio gives a percentile interval without a normality guess.
* **Paired comparison**: two models measured on the *same* problems differ problem by problem, and
  most of the spread between problems (some are simply harder) cancels in the difference. The
  interval is a paired bootstrap (the same resampled problems for both models); the p-value is a
  paired permutation test (each problem's two results swapped between the models at random), exact
  in the limit of many permutations and valid for ratios and for 0/1 outcomes alike. The verdict is
  worded by :func:`textbooklm.stats.effect_of`, as the ablation's verdicts are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from textbooklm.stats import effect_of, shown_p

RESAMPLES = 2000
LEVEL = 0.95


def mean_stderr(values: Sequence[float]) -> float:
    """lm-eval-harness's standard error of a mean: sample std (ddof=1) / sqrt(n); NaN below 2 values."""
    if len(values) < 2:
        return math.nan
    return float(np.std(np.asarray(values, dtype=float), ddof=1) / math.sqrt(len(values)))


def _resample_index(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Sum of ``num`` over sum of ``den`` (NLL per token: nats over tokens), NaN when there is nothing."""
    total = float(np.sum(den))
    return float(np.sum(num)) / total if total > 0 else math.nan


def bootstrap_ratio_interval(num: Sequence[float], den: Sequence[float], resamples: int = RESAMPLES,
                             seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``sum(num) / sum(den)`` over problems resampled with replacement."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if len(a) < 2:
        return (math.nan, math.nan)
    idx = _resample_index(len(a), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = a[idx].sum(1) / b[idx].sum(1)
    lo, hi = np.nanquantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class PairedComparison:
    """Model ``before`` -> model ``after`` on one metric, problem by problem."""

    step: str  # "pretrain -> finetune"
    metric: str
    n: int  # problems (or documents) both models were measured on
    unit: str  # what n counts
    before: float
    after: float
    diff: float  # after - before
    interval: tuple[float, float]  # paired-bootstrap percentile interval of diff
    p: float  # paired permutation test, two-sided
    effect: str  # better / worse / within the noise / no difference
    verdict: str

    def row(self) -> dict[str, object]:
        """JSON-ready: NaN (no test could be made) becomes null."""
        def clean(x: object) -> object:
            return None if isinstance(x, float) and math.isnan(x) else x

        return {**{k: clean(v) for k, v in asdict(self).items()}, "interval": [clean(x) for x in self.interval]}


def paired_comparison(step: str, metric: str, before: tuple[Sequence[float], Sequence[float]],
                      after: tuple[Sequence[float], Sequence[float]], higher_is_better: bool,
                      unit: str = "problems", resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> PairedComparison:
    """Compare two models' ``(numerators, denominators)`` per problem, in the same problem order.

    For a mean over problems (pass@1) pass denominators of 1; for NLL per token, nats and tokens.
    """
    na, da = (np.asarray(x, dtype=float) for x in before)
    nb, db = (np.asarray(x, dtype=float) for x in after)
    if not (len(na) == len(da) == len(nb) == len(db)):
        raise ValueError(f"{metric}: paired comparison needs the same problems for both models "
                         f"({len(na)} vs {len(nb)})")
    n = len(na)
    value_a, value_b = ratio(na, da), ratio(nb, db)
    diff = value_b - value_a
    identical = bool(np.array_equal(na, nb) and np.array_equal(da, db))
    if n < 2 or identical:
        interval, p = (math.nan, math.nan), (1.0 if identical else math.nan)
    else:
        idx = _resample_index(n, resamples, seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = nb[idx].sum(1) / db[idx].sum(1) - na[idx].sum(1) / da[idx].sum(1)
        lo, hi = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2])
        interval = (float(lo), float(hi))
        swap = np.random.default_rng(seed + 1).random((resamples, n)) < 0.5
        pa_num, pa_den = np.where(swap, nb, na), np.where(swap, db, da)
        pb_num, pb_den = np.where(swap, na, nb), np.where(swap, da, db)
        with np.errstate(invalid="ignore", divide="ignore"):
            null = pb_num.sum(1) / pb_den.sum(1) - pa_num.sum(1) / pa_den.sum(1)
        # The observed assignment counts as one of the permutations, so p is never 0.
        p = float((np.sum(np.abs(null) >= abs(diff) - 1e-12) + 1) / (resamples + 1))
    effect = effect_of(diff, p, higher_is_better, identical)
    shown_interval = ("" if math.isnan(interval[0])
                      else f" [{level:.0%} CI {interval[0]:+.4g}, {interval[1]:+.4g}]")
    verdict = (f"{step}, {metric}: {value_a:.4g} -> {value_b:.4g}, {diff:+.4g}{shown_interval} "
               f"(paired over {n} {unit}, p={shown_p(p)}): {effect}")
    return PairedComparison(step, metric, n, unit, value_a, value_b, diff, interval, p, effect, verdict)
