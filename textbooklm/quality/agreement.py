"""How far two judges agree: Spearman rank correlation of their scores, Cohen's kappa of their labels.

Spearman asks "do they order files the same way?" (scale-free, so a 0-5 rubric compares with a
heuristic in [0, 1]); kappa asks "do they keep the same files?", corrected for the agreement two
judges would reach by chance with their own positive rates. Either is ``None`` (with a note) when
it is undefined: fewer than 3 shared records, or a judge that gives every record the same value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def agreement(scores_a: Sequence[float], scores_b: Sequence[float], labels_a: Sequence[int],
              labels_b: Sequence[int]) -> dict[str, Any]:
    """Agreement over the records both judges scored (inputs aligned, same length)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    n = len(scores_a)
    out: dict[str, Any] = {"n": n, "spearman": None, "spearman_p": None, "kappa": None,
                           "label_agreement": None, "notes": []}
    if n < 3:
        out["notes"].append(f"only {n} records scored by both judges")
        return out
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    la, lb = np.asarray(labels_a, int), np.asarray(labels_b, int)
    out["label_agreement"] = round(float(np.mean(la == lb)), 4)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        out["notes"].append("a judge gave every record the same score: Spearman undefined")
    else:
        res = spearmanr(a, b)
        out["spearman"], out["spearman_p"] = round(float(res.statistic), 4), float(res.pvalue)
    if len(set(la.tolist()) | set(lb.tolist())) < 2:
        out["notes"].append("both judges gave one label to every record: kappa undefined")
    else:
        out["kappa"] = round(float(cohen_kappa_score(la, lb)), 4)
    return out
