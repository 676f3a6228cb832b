"""Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness computes it.

For each question every (context, continuation) pair is scored by the model; the prediction is the
continuation with the highest total log-probability (``acc``) or the highest log-probability per
character of the continuation (``acc_norm``, which removes the bias toward short answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from textbooklm.evals.choice_tasks import ChoiceItem


class Scored(Protocol):
    @property
    def total(self) -> float: ...


class Scorer(Protocol):
    """Anything that scores continuations: textbooklm.model.generate.CheckpointGenerator, HFScorer."""

    def loglikelihood(self, pairs: list[tuple[str, str]], batch_size: int = 8) -> Sequence[Scored]: ...


def evaluate_choices(scorer: Scorer, items: list[ChoiceItem], batch_size: int = 8) -> dict[str, Any]:
    """Accuracy and length-normalized accuracy over ``items``, plus the per-item predictions."""
    pairs = [(c, k) for item in items for c, k in zip(item.contexts, item.continuations, strict=True)]
    scores = scorer.loglikelihood(pairs, batch_size=batch_size) if pairs else []
    pos = 0
    correct = correct_norm = 0
    predictions = []
    for item in items:
        n = len(item.continuations)
        lls = np.array([s.total for s in scores[pos : pos + n]])
        pos += n
        lengths = np.array([max(1, len(k)) for k in item.continuations])
        pred, pred_norm = int(lls.argmax()), int((lls / lengths).argmax())
        correct += pred == item.label
        correct_norm += pred_norm == item.label
        predictions.append({"id": item.id, "label": item.label, "pred": pred, "pred_norm": pred_norm,
                            "loglikelihoods": [round(float(x), 4) for x in lls]})
    n_items = max(1, len(items))
    return {
        "n": len(items),
        "acc": correct / n_items,
        "acc_norm": correct_norm / n_items,
        "predictions": predictions,
    }
