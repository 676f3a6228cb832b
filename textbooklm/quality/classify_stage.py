"""The classify stage: learn the judge's labels from embeddings, measure on a held-out split, save.

Steps:

1. embed every judged record (``classify.embedder``; texts cut to ``max_chars``), cached in
   ``OUT/_work/embeddings.npy`` with the ids they belong to, so a re-run after a crash in training
   does not embed again;
2. split: stratified, seeded held-out share ``test_fraction``;
3. train each head in ``heads``; held-out precision, recall, F1, ROC-AUC and confusion matrix for
   each, plus a constant (majority-class) baseline;
4. save the FIRST head to ``OUT/model/`` (``classifier.json`` + ``classifier.npz``, no pickle) with its
   metrics; ``OUT/metrics.json`` has every head's; ``OUT/embeddings.npy`` the judged records' vectors
   (row-aligned with the output), which the filter reuses rather than embedding those records twice.

Output dataset: one row per judged record with its split, judge label and score, and the saved
head's predicted score (the filter's report draws precision/recall against threshold from the
held-out rows).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from textbooklm.progress import progress_bar, summary_line
from textbooklm.quality.classifier import (
    QualityClassifier,
    constant_baseline,
    metrics,
    pr_vs_threshold,
    train_head,
)
from textbooklm.quality.config import ClassifyConfig
from textbooklm.store import Dataset, atomic_write_bytes, atomic_write_json, finish_dataset, write_table

EMBEDDINGS_FILE = "embeddings.npy"  # float32 [rows of part-00000, dim]
PRED_SCHEMA = pa.schema([
    ("id", pa.string()), ("path", pa.string()), ("source", pa.string()), ("split", pa.string()),
    ("label", pa.int8()), ("judge_score", pa.float64()), ("score", pa.float64()),
])


def embed_texts(
    spec: str, texts: list[str], max_chars: int, batch_size: int, progress: str | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Embeddings of the heads of ``texts`` (the same cut and precision at training and at filtering time).

    With ``progress`` (a bar label), embeds in chunks of 16 batches so the bar moves.
    """
    from textbooklm.embeddings import load_embedder

    embedder = load_embedder(spec, precision)
    heads = [t[:max_chars] for t in texts]
    if progress is None:
        return embedder.embed(heads, batch_size=batch_size)
    step = batch_size * 16
    parts = []
    with progress_bar(progress, total=len(heads)) as advance:
        for start in range(0, len(heads), step):
            parts.append(embedder.embed(heads[start : start + step], batch_size=batch_size))
            advance(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


def embedder_label(spec: str, precision: str) -> str:
    """``minilm bf16`` for a sentence-transformers embedder (precision resolved here), else the spec."""
    from textbooklm.embeddings import resolve_precision, uses_precision

    return f"{spec} {resolve_precision(precision)}" if uses_precision(spec) else spec


def _embeddings(cfg: ClassifyConfig, ids: list[str], texts: list[str], work: Path) -> np.ndarray:
    cache_x, cache_ids = work / "embeddings.npy", work / "embeddings.ids.json"
    if cache_x.exists() and cache_ids.exists() and json.loads(cache_ids.read_text()) == ids:
        return np.load(cache_x, allow_pickle=False)
    x = embed_texts(cfg.embedder, texts, cfg.max_chars, cfg.batch_size, progress=f"classify: embed ({cfg.embedder})",
                    precision=cfg.precision)
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    atomic_write_bytes(cache_x, buf.getvalue())
    atomic_write_json(cache_ids, ids)
    return x


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices; falls back to a plain shuffle when a class is too small."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    counts = np.bincount(labels, minlength=2)
    stratify = labels if counts.min() >= 2 else None
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def run(cfg: ClassifyConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    """Run the classify stage into ``out`` (see the module docstring)."""
    out = Path(out)
    work = out / "_work"
    judged = inputs["judge"]
    table = judged.to_table(columns=["id", "text", "path", "source", "label", "score"])
    n = table.num_rows
    if n < 10:
        raise ValueError(f"classify: only {n} judged records in {judged.path}; need at least 10 to train and test")
    labels = np.asarray(table.column("label").to_pylist(), dtype=int)
    if labels.min() == labels.max():
        raise ValueError(
            f"classify: every judged record in {judged.path} has label {labels[0]}; change the judge's threshold"
        )
    judge_scores = np.asarray(table.column("score").to_pylist(), dtype=float)
    ids = table.column("id").to_pylist()
    x = _embeddings(cfg, ids, table.column("text").to_pylist(), work)
    train, test = split_indices(labels, cfg.test_fraction, ctx.run.seed)
    judge_summary = judged.manifest.get("summary", {})
    label_cut = float(judge_summary.get("thresholds", {}).get(judge_summary.get("label_from", "heuristic"), 0.5))

    heads: dict[str, dict[str, Any]] = {}
    saved: QualityClassifier | None = None
    for kind in cfg.heads:
        forest, coef, intercept, cut = train_head(
            kind, x[train], labels[train], judge_scores[train], label_cut=label_cut, seed=ctx.run.seed,
            n_estimators=cfg.n_estimators, max_depth=cfg.max_depth, min_samples_leaf=cfg.min_samples_leaf,
            ridge_alpha=cfg.ridge_alpha, class_weight=None if cfg.class_weight == "none" else cfg.class_weight,
        )
        clf = QualityClassifier(kind=kind, embedder=cfg.embedder, max_chars=cfg.max_chars, cut=cut,
                                precision=cfg.precision,
                                forest=forest, coef=coef, intercept=intercept)
        test_scores = clf.score(x[test])
        heads[kind] = {"test": metrics(labels[test], test_scores, cut),
                       "train": metrics(labels[train], clf.score(x[train]), cut)}
        if saved is None:
            saved = clf
    assert saved is not None
    baseline = constant_baseline(labels[train], labels[test])
    all_scores = saved.score(x)
    report = {
        "saved_head": saved.kind, "embedder": cfg.embedder, "dim": int(x.shape[1]), "n_train": len(train),
        "n_test": len(test), "positive_rate": round(float(labels.mean()), 4), "heads": heads,
        "constant_baseline": baseline, "pr_vs_threshold": pr_vs_threshold(labels[test], all_scores[test]),
        "label_from": judge_summary.get("label_from"),
    }
    saved.info = {"metrics": heads[saved.kind]["test"], "n_train": len(train), "n_test": len(test),
                  "config": cfg.model_dump(mode="json")}
    saved.save(out / "model")
    atomic_write_json(out / "metrics.json", report)

    # The vectors, row-aligned with part-00000: the filter reuses them instead of embedding these
    # records again (with every record judged, as in the demo, it then embeds nothing twice).
    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out / EMBEDDINGS_FILE, buf.getvalue())
    split = np.array(["train"] * n, dtype=object)
    split[test] = "test"
    write_table(out / "part-00000.parquet", pa.Table.from_pydict({
        "id": ids, "path": table.column("path").to_pylist(), "source": table.column("source").to_pylist(),
        "split": split.tolist(), "label": labels.tolist(), "judge_score": judge_scores.tolist(),
        "score": [round(float(s), 6) for s in all_scores],
    }, schema=PRED_SCHEMA))
    m = heads[saved.kind]["test"]
    others = ", ".join(f"{k} F1 {v['test']['f1']:.2f}" for k, v in heads.items() if k != saved.kind)
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.2f}"
    line = (f"classify: {saved.kind} on {embedder_label(cfg.embedder, cfg.precision)} ({x.shape[1]}-d), "
            f"{len(train)} train / {len(test)} held out "
            f"({labels.mean():.0%} positive): precision {m['precision']:.2f}, recall {m['recall']:.2f}, "
            f"F1 {m['f1']:.2f}, ROC-AUC {auc}; constant baseline F1 {baseline['f1']:.2f}"
            + (f"; {others}" if others else ""))
    summary = {"line": line, **{k: report[k] for k in ("saved_head", "embedder", "n_train", "n_test", "positive_rate")},
               "test": m, "baseline_f1": baseline["f1"]}
    ds = finish_dataset(out, stage="classify", config_hash=ctx.config_hash, parents=[judged.path], summary=summary)
    summary_line(line)
    return ds
