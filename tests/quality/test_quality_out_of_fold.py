"""Out-of-fold scores: a labelled record's score never comes from a model that saw its label."""

from __future__ import annotations

import numpy as np
import pytest

from textbooklm.quality.out_of_fold import assign_folds, out_of_fold_scores


def blobs(n=120, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.35).astype(int)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, :2] += labels[:, None] * 3.0
    return x, labels, labels * 0.8 + 0.1


def test_folds_are_stratified_seeded_and_cover_every_record():
    _, labels, _ = blobs()
    fold = assign_folds(labels, 5, seed=3)
    assert set(fold.tolist()) == set(range(5))
    assert np.array_equal(fold, assign_folds(labels, 5, seed=3))
    assert not np.array_equal(fold, assign_folds(labels, 5, seed=4))
    per_fold = [labels[fold == k].sum() for k in range(5)]
    assert max(per_fold) - min(per_fold) <= 1  # each fold holds its share of the positives


def test_a_class_smaller_than_k_falls_back_to_plain_folds():
    labels = np.array([1, 1] + [0] * 20)
    fold = assign_folds(labels, 5, seed=0)
    assert set(fold.tolist()) == set(range(5)) and (fold >= 0).all()
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(np.array([1]), 5, seed=0)


@pytest.mark.parametrize("kind", ["random_forest", "ridge"])
def test_a_records_score_does_not_depend_on_its_own_label(kind):
    """Flip one record's label (and judge score): its out-of-fold score stays exactly the same, while the
    other folds' models, which did train on it, change. An in-sample score would follow the flip."""
    x, labels, judge = blobs()
    fold = assign_folds(labels, 5, seed=0)
    params = {"n_estimators": 25}
    before = out_of_fold_scores(kind, x, labels, judge, fold, label_cut=0.5, seed=0, **params)
    i = int(np.flatnonzero(labels == 1)[0])
    flipped, flipped_judge = labels.copy(), judge.copy()
    flipped[i], flipped_judge[i] = 0, 0.1
    after = out_of_fold_scores(kind, x, flipped, flipped_judge, fold, label_cut=0.5, seed=0, **params)
    assert after[i] == before[i]
    others = fold != fold[i]
    assert not np.array_equal(after[others], before[others])
    assert before[i] > 0.5  # its features say positive, and nothing told the scoring model otherwise
