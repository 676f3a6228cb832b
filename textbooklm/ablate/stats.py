"""Seeds to error bars, and each step of the recipe to a plain verdict.

Why Welch's t-test: two arms' seeds are independent samples with possibly different spread, and
with 3 seeds a difference must be large against that spread before it is called real. A step is
"outside the noise" when p < ``ALPHA``; then it is *better* or *worse* by the metric's own sense
(lower loss, higher pass rate), and compared with what the papers report for that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from textbooklm.stats import ALPHA, effect_of, shown_p

__all__ = ["ALPHA", "Cell", "Comparison", "compare", "welch_p"]


@dataclass
class Cell:
    """One arm's final values of one metric over its seeds."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test; 1.0 for identical constant samples, 0.0 for distinct ones."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    diff = float(np.mean(b) - np.mean(a))
    if va == 0 and vb == 0:
        return 1.0 if diff == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


@dataclass
class Comparison:
    """One step of the recipe (previous arm -> this arm) on one metric."""

    step: str  # e.g. "A -> B"
    metric: str
    diff: float  # mean(this) - mean(previous)
    p: float
    effect: str  # better / worse / within the noise / no difference (every value equal)
    paper: str  # better / worse / none
    verdict: str  # one sentence

    def row(self) -> dict[str, object]:
        return {"step": self.step, "metric": self.metric, "diff": self.diff, "p": self.p, "effect": self.effect,
                "paper": self.paper, "verdict": self.verdict}


def compare(step: str, metric: str, prev: Cell, this: Cell, higher_is_better: bool, paper: str) -> Comparison:
    diff = this.mean - prev.mean
    p = welch_p(prev.values, this.values)
    identical = diff == 0 and all(c.n < 2 or c.std == 0 for c in (prev, this))
    effect = effect_of(diff, p, higher_is_better, identical)
    if paper == "none":
        agrees = "the papers report no direction for this step"
    elif effect in ("within the noise", "no difference"):
        agrees = f"the papers report {paper} HumanEval pass@1 here; this run cannot tell"
    elif effect == paper:
        agrees = f"the same direction as the papers' HumanEval pass@1 ({paper})"
    else:
        agrees = f"OPPOSITE to the papers' HumanEval pass@1 ({paper})"
    verdict = f"{step}, {metric}: {diff:+.4g} (p={shown_p(p)}): {effect}; {agrees}"
    return Comparison(step, metric, diff, p, effect, paper, verdict)
