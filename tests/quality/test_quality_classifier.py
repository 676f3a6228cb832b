"""Classifier heads: numpy forest parity with scikit-learn, save/load without pickle, beats the constant baselines."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from textbooklm.quality.classifier import (
    QualityClassifier,
    baselines,
    forest_arrays,
    metrics,
    pr_vs_threshold,
    train_head,
)


def separable(n=300, dim=16, seed=0):
    """Two Gaussian blobs, 30% positives: easy for a classifier, F1 0 for the majority-class constant."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, :3] += labels[:, None] * 2.5
    scores = np.clip(0.3 + 0.5 * labels + rng.normal(0, 0.1, n), 0, 1)
    return x, labels, scores


def test_numpy_forest_matches_sklearn():
    x, y, _ = separable()
    model = RandomForestClassifier(n_estimators=15, random_state=0).fit(x[:200], y[:200])
    ours = forest_arrays(model).predict(x[200:])
    assert np.allclose(ours, model.predict_proba(x[200:])[:, 1])


@pytest.mark.parametrize("kind", ["random_forest", "ridge"])
def test_head_beats_constant_baseline_and_round_trips(tmp_path, kind):
    x, y, s = separable()
    tr, te = np.arange(240), np.arange(240, 300)
    forest, coef, intercept, cut = train_head(kind, x[tr], y[tr], s[tr], label_cut=0.5, seed=0, n_estimators=30)
    clf = QualityClassifier(kind=kind, embedder="hashing", max_chars=100, cut=cut, forest=forest, coef=coef,
                            intercept=intercept, precision="bf16", info={"metrics": {"f1": 1.0}})
    m = metrics(y[te], clf.score(x[te]), cut)
    base = baselines(y[te])
    assert base["predict-negative"]["f1"] == 0.0
    assert m["f1"] > 0.8 and m["roc_auc"] > 0.9 and m["f1"] > base["predict-positive"]["f1"] + 0.3
    assert sum(map(sum, m["confusion"])) == len(te)
    clf.save(tmp_path / "model")
    loaded = QualityClassifier.load(tmp_path / "model")
    assert loaded.kind == kind and loaded.cut == cut and loaded.info["metrics"] == {"f1": 1.0}
    assert loaded.precision == "bf16"  # the filter embeds in the precision the classifier was trained on
    assert np.array_equal(loaded.score(x), clf.score(x))
    with np.load(tmp_path / "model" / "classifier.npz", allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)


def test_metrics_and_curve_by_hand():
    y = np.array([1, 1, 0, 0])
    m = metrics(y, np.array([0.9, 0.4, 0.6, 0.1]), 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["confusion"] == [[1, 1], [1, 1]] and m["roc_auc"] == 0.75
    rows = {r["threshold"]: r for r in pr_vs_threshold(y, np.array([0.9, 0.4, 0.6, 0.1]), steps=11)}
    assert rows[0.5] == {"threshold": 0.5, "precision": 0.5, "recall": 0.5, "kept_share": 0.5}
    assert rows[1.0]["precision"] is None and rows[0.0]["recall"] == 1.0


def test_baselines_by_hand():
    """Predict-positive: precision = positive rate, recall 1, F1 2p / (1 + p); predict-negative: F1 0,
    accuracy 1 - p (the best accuracy of the two when positives are rare)."""
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])  # p = 0.2
    base = baselines(y)
    pos, neg = base["predict-positive"], base["predict-negative"]
    assert (pos["precision"], pos["recall"], pos["accuracy"]) == (0.2, 1.0, 0.2)
    assert pos["f1"] == round(2 * 0.2 / 1.2, 4) and pos["confusion"] == [[0, 8], [0, 2]]
    assert (neg["precision"], neg["recall"], neg["f1"], neg["accuracy"]) == (0.0, 0.0, 0.0, 0.8)
    assert pos["n"] == neg["n"] == 10 and pos["roc_auc"] == neg["roc_auc"] == 0.5


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the classify stage first"):
        QualityClassifier.load(tmp_path)
    (tmp_path / "classifier.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        QualityClassifier.load(tmp_path)


def test_classifier_saved_before_precision_existed_loads_as_fp32(tmp_path):
    import json

    x, y, s = separable()
    forest, coef, intercept, cut = train_head("ridge", x, y, s, label_cut=0.5, seed=0)
    QualityClassifier(kind="ridge", embedder="hashing", max_chars=100, cut=cut, coef=coef,
                      intercept=intercept).save(tmp_path)
    meta = json.loads((tmp_path / "classifier.json").read_text())
    del meta["precision"]
    (tmp_path / "classifier.json").write_text(json.dumps(meta))
    assert QualityClassifier.load(tmp_path).precision == "fp32"
