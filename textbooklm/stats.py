"""The one wording of a comparison's outcome, shared by ``ablate`` (seeds) and ``evals`` (paired problems).

Why one place: a reader who learns what "within the noise" means in the ablation table must read the
same words, decided by the same threshold, in the evaluation table. A difference is *better* or
*worse* (by the metric's own sense: lower loss, higher pass rate) only when its test says p < ``ALPHA``;
"no difference" means every value was equal, so there was nothing to test.
"""

from __future__ import annotations

import math

ALPHA = 0.05


def effect_of(diff: float, p: float, higher_is_better: bool, identical: bool = False) -> str:
    """``no difference`` | ``within the noise`` | ``better`` | ``worse`` for a difference ``diff`` (this - previous)."""
    if identical:
        return "no difference"
    if math.isnan(p) or p >= ALPHA:
        return "within the noise"
    return "better" if (diff > 0) == higher_is_better else "worse"


def shown_p(p: float) -> str:
    """A p-value as printed in verdicts (``n/a`` when no test could be made)."""
    return "n/a" if math.isnan(p) else f"{p:.3g}"
