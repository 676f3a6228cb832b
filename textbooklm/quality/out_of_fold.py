"""Out-of-fold scores: every labelled record scored by a model that never saw its label.

Why: a random forest grown to full depth reproduces its own training labels (on the demo 1,299 of
1,300), so scoring the labelled records with the model trained on them only hands the judge's label
back and calls it a prediction. k-fold cross-validation (Stone 1974; scikit-learn's
``cross_val_predict``) splits the labelled records into k folds; the model fitted on the other k-1
folds scores each fold. Each labelled record then has exactly one score from a model that did not train
on it: these scores give the classifier's metrics and the filter's decision on labelled records. The
saved model, fitted on every label, scores only records that have no label.

An out-of-fold model has seen (k-1)/k of the labels, so its metrics are a slightly pessimistic estimate
of the saved model's on new records.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from textbooklm.quality.classifier import head_score, train_head


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each record: seeded, stratified by label when each class fills every fold.

    k is ``folds``, or the number of records when there are fewer. With a class smaller than k the
    folds are a plain seeded shuffle (a fold may then hold none of that class).
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(labels, int)
    k = min(folds, len(labels))
    if k < 2:
        raise ValueError(f"out-of-fold scoring needs at least 2 labelled records, got {len(labels)}")
    counts = np.bincount(labels, minlength=2)
    if counts.min() >= k:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)))
    fold = np.full(len(labels), -1, dtype=int)
    for number, (_, held_out) in enumerate(splits):
        fold[held_out] = number
    return fold


def out_of_fold_scores(
    kind: str, x: np.ndarray, labels: np.ndarray, judge_scores: np.ndarray, fold: np.ndarray, *,
    label_cut: float, seed: int, **params: Any,
) -> np.ndarray:
    """Score of each record from the ``kind`` head fitted on every fold but its own (``params``: train_head's)."""
    scores = np.zeros(len(labels))
    for number in np.unique(fold):
        held_out = fold == number
        forest, coef, intercept, _ = train_head(
            kind, x[~held_out], labels[~held_out], judge_scores[~held_out], label_cut=label_cut, seed=seed, **params
        )
        scores[held_out] = head_score(kind, x[held_out], forest, coef, intercept)
    return scores
