"""Quality classifiers on embeddings: train, measure, save and load without pickle.

Two heads, both giving a score in [0, 1] where higher means more educational:

* ``random_forest`` (phi-1's choice): scikit-learn's RandomForestClassifier on the binary label;
  score = P(educational), decision cut 0.5.
* ``ridge`` (FineWeb-Edu's linear regression head): ridge regression on the judge's normalised score;
  score = the prediction clipped to [0, 1], decision cut = the judge's threshold.

Saving: ``classifier.json`` (kind, embedder, cut, metrics, training facts) + ``classifier.npz`` (plain
arrays, loaded with ``allow_pickle=False``). The forest is stored as its trees' node arrays (children,
split feature, threshold, leaf P(educational)) and evaluated here in numpy, all trees at once, so a
saved classifier never needs unpickling or even scikit-learn. A test checks the numpy forest matches
scikit-learn's ``predict_proba``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textbooklm.store import atomic_write_bytes, atomic_write_json

FORMAT = "textbooklm.quality-classifier/1"


@dataclass
class ForestArrays:
    """All trees of a forest in flat arrays; ``roots[t]`` is tree t's first node."""

    left: np.ndarray  # int32, -1 at leaves
    right: np.ndarray
    feature: np.ndarray  # int32
    threshold: np.ndarray  # float64: go left when x[feature] <= threshold (as scikit-learn does)
    value: np.ndarray  # float64, P(educational) of the node's training records
    roots: np.ndarray  # int32
    depth: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean over trees of the leaf P(educational): scikit-learn's predict_proba[:, 1]."""
        x = np.asarray(x, dtype=np.float32)  # scikit-learn trees compare float32 inputs
        n = x.shape[0]
        if n == 0:
            return np.zeros(0)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            leaf = self.left[node] < 0
            if leaf.all():
                break
            go_left = x[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return self.value[node].mean(axis=1)


def forest_arrays(model: Any) -> ForestArrays:
    """Flatten a fitted scikit-learn RandomForestClassifier (binary) into :class:`ForestArrays`."""
    classes = list(model.classes_)
    pos = classes.index(1) if 1 in classes else None
    lefts, rights, feats, thrs, vals, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    for est in model.estimators_:
        t = est.tree_
        left = t.children_left.astype(np.int64)
        right = t.children_right.astype(np.int64)
        lefts.append(np.where(left >= 0, left + offset, -1))
        rights.append(np.where(right >= 0, right + offset, -1))
        feats.append(np.maximum(t.feature, 0))
        thrs.append(t.threshold)
        v = t.value[:, 0, :]
        frac = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)
        vals.append(frac[:, pos] if pos is not None else np.zeros(len(v)))
        roots.append(offset)
        offset += t.node_count
        depth = max(depth, int(t.max_depth))
    return ForestArrays(
        left=np.concatenate(lefts).astype(np.int32), right=np.concatenate(rights).astype(np.int32),
        feature=np.concatenate(feats).astype(np.int32), threshold=np.concatenate(thrs).astype(np.float64),
        value=np.concatenate(vals).astype(np.float64), roots=np.asarray(roots, np.int32), depth=depth + 1,
    )


def head_score(kind: str, x: np.ndarray, forest: ForestArrays | None, coef: np.ndarray | None,
               intercept: float) -> np.ndarray:
    """A fitted head's educational-value score in [0, 1] for embedding rows ``x``."""
    if kind == "random_forest":
        assert forest is not None
        return forest.predict(x)
    assert coef is not None
    return np.clip(np.asarray(x, np.float64) @ coef + intercept, 0.0, 1.0)


@dataclass
class QualityClassifier:
    """A trained head plus what it needs to score new text: its embedder spec and decision cut."""

    kind: str  # random_forest | ridge
    embedder: str
    max_chars: int
    cut: float
    precision: str = "fp32"  # the embedder's: auto | fp32 | bf16 (files from before it existed: fp32)
    forest: ForestArrays | None = None
    coef: np.ndarray | None = None
    intercept: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Educational-value score in [0, 1] for embedding rows ``x``."""
        return head_score(self.kind, x, self.forest, self.coef, self.intercept)

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """``classifier.npz`` (arrays) then ``classifier.json`` (written last: its presence = complete)."""
        import io

        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {}
        if self.forest is not None:
            f = self.forest
            arrays = {"left": f.left, "right": f.right, "feature": f.feature, "threshold": f.threshold,
                      "value": f.value, "roots": f.roots}
        if self.coef is not None:
            arrays["coef"] = self.coef
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(folder / "classifier.npz", buf.getvalue())
        meta = {"format": FORMAT, "kind": self.kind, "embedder": self.embedder, "max_chars": self.max_chars,
                "precision": self.precision, "cut": self.cut, "intercept": self.intercept,
                "depth": self.forest.depth if self.forest is not None else None, **self.info}
        atomic_write_json(folder / "classifier.json", meta)

    @classmethod
    def load(cls, folder: Path) -> QualityClassifier:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "classifier.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder}: no classifier.json (run the classify stage first)") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}/classifier.json: format {meta.get('format')!r}, expected {FORMAT!r}")
        with np.load(folder / "classifier.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        forest = None
        if meta["kind"] == "random_forest":
            forest = ForestArrays(arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"],
                                  arrays["value"], arrays["roots"], int(meta["depth"]))
        info = {k: v for k, v in meta.items()
                if k not in ("format", "kind", "embedder", "max_chars", "precision", "cut", "intercept", "depth")}
        return cls(kind=meta["kind"], embedder=meta["embedder"], max_chars=int(meta["max_chars"]),
                   precision=str(meta.get("precision", "fp32")), cut=float(meta["cut"]), forest=forest,
                   coef=arrays.get("coef"), intercept=float(meta["intercept"]), info=info)


# -- training ------------------------------------------------------------------------------------
def train_head(
    kind: str, x: np.ndarray, labels: np.ndarray, scores: np.ndarray, *, label_cut: float, seed: int,
    n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1, ridge_alpha: float = 1.0,
    class_weight: str | None = "balanced",
) -> tuple[ForestArrays | None, np.ndarray | None, float, float]:
    """Fit one head; returns (forest, coef, intercept, decision cut)."""
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                       min_samples_leaf=min_samples_leaf, random_state=seed, n_jobs=1,
                                       class_weight=class_weight)
        model.fit(x, labels)
        return forest_arrays(model), None, 0.0, 0.5
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=ridge_alpha)
        model.fit(x, scores)
        return None, np.asarray(model.coef_, np.float64), float(model.intercept_), label_cut
    raise ValueError(f"unknown classifier head {kind!r} (random_forest, ridge)")


def metrics(labels: np.ndarray, scores: np.ndarray, cut: float) -> dict[str, Any]:
    """Precision, recall, F1, ROC-AUC, accuracy and confusion matrix of ``scores`` at decision cut ``cut``."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    labels = np.asarray(labels, int)
    pred = (np.asarray(scores) >= cut).astype(int)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "positives": int(labels.sum()),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "f1": float(f1_score(labels, pred, zero_division=0)),
        "accuracy": float(np.mean(pred == labels)) if len(labels) else 0.0,
        "roc_auc": float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else None,
        # rows: true label 0, 1; columns: predicted 0, 1
        "confusion": confusion_matrix(labels, pred, labels=[0, 1]).tolist(),
        "cut": cut,
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def baselines(labels: np.ndarray) -> dict[str, dict[str, Any]]:
    """What a classifier must beat: predicting every record positive, and every record negative.

    Measured on the same labels as the classifier's out-of-fold metrics. With a third of the records
    positive, predict-positive already scores F1 2p / (1 + p) = 0.5 and predict-negative the best accuracy
    (1 - p): an F1 or an accuracy means something only next to these.
    """
    labels = np.asarray(labels, int)
    out = {}
    for name, constant in (("predict-positive", 1.0), ("predict-negative", 0.0)):
        m = metrics(labels, np.full(len(labels), constant), 0.5)
        m["roc_auc"] = 0.5
        out[name] = m
    return out


def pr_vs_threshold(labels: np.ndarray, scores: np.ndarray, steps: int = 21) -> list[dict[str, float]]:
    """Precision, recall and kept share at evenly spaced thresholds in [0, 1] (for the report)."""
    labels = np.asarray(labels, int)
    scores = np.asarray(scores, float)
    rows = []
    for t in np.linspace(0, 1, steps):
        pred = scores >= t
        tp = int((pred & (labels == 1)).sum())
        kept = int(pred.sum())
        rows.append({"threshold": round(float(t), 4),
                     "precision": round(tp / kept, 4) if kept else None,
                     "recall": round(tp / max(1, int(labels.sum())), 4),
                     "kept_share": round(kept / max(1, len(labels)), 4)})
    return rows
