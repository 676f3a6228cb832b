"""The classify stage: learn the judge's labels from embeddings, score every labelled record out of fold, save.

Steps:

1. embed every labelled record (``classify.embedder``; texts cut to ``max_chars``), cached in
   ``OUT/_work/embeddings.npy`` with the ids they belong to, so a re-run after a crash in training
   does not embed again;
2. folds: seeded, stratified k-fold (``folds``) over the labelled records
   (:mod:`textbooklm.quality.out_of_fold`);
3. each head in ``heads``: out-of-fold scores (fold models trained on the other folds) give its
   precision, recall, F1, accuracy, ROC-AUC and confusion matrix; the same head trained on every
   label is the model that scores unlabelled records. Next to them: the predict-positive and
   predict-negative baselines on the same labels, and the in-sample echo (how many labelled records
   the saved model hands their own label back: what scoring training records with it would show);
4. save the FIRST head, trained on every label, to ``OUT/model/`` (``classifier.json`` +
   ``classifier.npz``, no pickle) with its out-of-fold metrics; ``OUT/metrics.json`` has every head's.

Output dataset: one row per labelled record: ``split`` (``out-of-fold``), ``fold``, the judge's
``label`` and score, ``score`` (the saved head's out-of-fold score: the filter decides on it),
``in_sample_score`` (the saved model's, for contrast) and ``judge`` (the judge's provenance block, which
the filter carries into its records).

What one "in" is: a labelled record (the judge's output). Each is scored out of fold and kept (the
stage drops nothing today); the stage ledger (:mod:`textbooklm.ledger`) records that, so its summary's
``counts``, its line and its (empty) ``OUT/rejected/`` are derived like every other stage's.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from textbooklm.progress import progress_bar, summary_line
from textbooklm.quality.classifier import QualityClassifier, baselines, metrics, pr_vs_threshold, train_head
from textbooklm.quality.config import ClassifyConfig
from textbooklm.quality.out_of_fold import assign_folds, out_of_fold_scores
from textbooklm.record import provenance
from textbooklm.store import Dataset, atomic_write_bytes, atomic_write_json, finish_dataset, write_table

if TYPE_CHECKING:
    from textbooklm.stage_context import StageContext

OUT_OF_FOLD = "out-of-fold"  # the split of every labelled record: its score comes from a model that never saw it
PRED_SCHEMA = pa.schema([
    ("id", pa.string()), ("path", pa.string()), ("source", pa.string()), ("split", pa.string()),
    ("fold", pa.int32()), ("label", pa.int8()), ("judge_score", pa.float64()), ("score", pa.float64()),
    ("in_sample_score", pa.float64()), ("judge", pa.string()),
])
REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("source", pa.string()),
                             ("label", pa.int8()), ("judge_score", pa.float64())])
PART = "part-00000.parquet"  # one shard: the labelled sample is small
IN_MEANS = "labelled records scored out of fold"


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


def run(cfg: ClassifyConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the classify stage into ``out`` (see the module docstring)."""
    out = Path(out)
    work = out / "_work"
    judged = inputs["judge"]
    table = judged.to_table(columns=["id", "text", "path", "source", "label", "score", "provenance"])
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
    seed = ctx.run.seed
    fold = assign_folds(labels, cfg.folds, seed)
    judge_summary = judged.manifest.get("summary", {})
    label_cut = float(judge_summary.get("thresholds", {}).get(judge_summary.get("label_from", "heuristic"), 0.5))
    params = {"n_estimators": cfg.n_estimators, "max_depth": cfg.max_depth, "min_samples_leaf": cfg.min_samples_leaf,
              "ridge_alpha": cfg.ridge_alpha, "class_weight": None if cfg.class_weight == "none" else cfg.class_weight}

    heads: dict[str, dict[str, Any]] = {}
    saved: QualityClassifier | None = None
    saved_oof = np.zeros(0)
    for kind in cfg.heads:
        oof = out_of_fold_scores(kind, x, labels, judge_scores, fold, label_cut=label_cut, seed=seed, **params)
        forest, coef, intercept, cut = train_head(kind, x, labels, judge_scores, label_cut=label_cut, seed=seed,
                                                  **params)
        clf = QualityClassifier(kind=kind, embedder=cfg.embedder, max_chars=cfg.max_chars, cut=cut,
                                precision=cfg.precision, forest=forest, coef=coef, intercept=intercept)
        # "test": measured on records the scoring model did not train on (here: out of fold; the report and
        # benchmarks read that key); "in_sample": the saved model on its own training records, for contrast.
        heads[kind] = {"test": metrics(labels, oof, cut), "in_sample": metrics(labels, clf.score(x), cut)}
        if saved is None:
            saved, saved_oof = clf, oof
    assert saved is not None
    in_sample = saved.score(x)
    corpus_records = inputs["corpus"].num_rows
    report = {
        "saved_head": saved.kind, "embedder": cfg.embedder, "dim": int(x.shape[1]), "folds": int(fold.max()) + 1,
        "held_out_by": f"{int(fold.max()) + 1}-fold out-of-fold", "n_labelled": n,
        "corpus_records": corpus_records, "positive_rate": round(float(labels.mean()), 4),
        "heads": heads, "baselines": baselines(labels),
        # The number a score of the training records with the saved model would show: how often it hands
        # back the label it was trained on. Reported so nobody takes it for a measure.
        "in_sample_echo": {"n": n, "decision_equals_label": int(((in_sample >= saved.cut) == labels).sum())},
        "pr_vs_threshold": pr_vs_threshold(labels, saved_oof), "label_from": judge_summary.get("label_from"),
    }
    saved.info = {"metrics": heads[saved.kind]["test"], "baselines": report["baselines"],
                  "n_labelled": n, "folds": report["folds"], "config": cfg.model_dump(mode="json")}
    saved.save(out / "model")
    atomic_write_json(out / "metrics.json", report)
    judge_blocks = [json.dumps(provenance(r).get("judge", {})) for r in table.select(["provenance"]).to_pylist()]
    write_table(out / PART, pa.Table.from_pydict({
        "id": ids, "path": table.column("path").to_pylist(), "source": table.column("source").to_pylist(),
        "split": [OUT_OF_FOLD] * n, "fold": fold.tolist(), "label": labels.tolist(),
        "judge_score": judge_scores.tolist(), "score": [round(float(s), 6) for s in saved_oof],
        "in_sample_score": [round(float(s), 6) for s in in_sample], "judge": judge_blocks,
    }, schema=PRED_SCHEMA))
    ledger = ctx.ledger(IN_MEANS, REJECTED_SCHEMA)
    part = ledger.shard(PART)  # closed after the rows it counts are written: a re-run rewrites both
    part.keep(n)
    part.count("label_1", int(labels.sum()))
    part.close()
    ledger.forget({PART})
    fields = {**{k: report[k] for k in ("saved_head", "embedder", "folds", "n_labelled", "corpus_records",
                                       "positive_rate")},
              "out_of_fold": heads[saved.kind]["test"],
              "baseline_f1": {k: v["f1"] for k, v in report["baselines"].items()}}
    summary = ledger.finish(tail=_tail(cfg, saved, report, x.shape[1]), parents=(judged.path,), **fields)
    ds = finish_dataset(out, stage="classify", config_hash=ctx.config_hash, parents=[judged.path], summary=summary)
    summary_line(summary["line"])
    return ds


def _tail(cfg: ClassifyConfig, saved: QualityClassifier, report: dict[str, Any], dim: int) -> str:
    """The summary line's tail: out-of-fold metrics next to the two constant baselines and the in-sample echo."""
    heads, base = report["heads"], report["baselines"]
    m = heads[saved.kind]["test"]
    n, total = report["n_labelled"], report["corpus_records"]
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.2f}"
    pos, neg = base["predict-positive"], base["predict-negative"]
    echo = report["in_sample_echo"]
    others = "".join(f"; {k} out-of-fold F1 {v['test']['f1']:.2f}" for k, v in heads.items() if k != saved.kind)
    line = (f"{saved.kind} on {embedder_label(cfg.embedder, cfg.precision)} ({dim}-d), labels on {n} of "
            f"{total} corpus records ({report['positive_rate']:.0%} positive), {report['folds']}-fold out-of-fold: "
            f"precision {m['precision']:.2f}, recall {m['recall']:.2f}, F1 {m['f1']:.2f}, "
            f"accuracy {m['accuracy']:.2f}, ROC-AUC {auc}; baselines on the same labels: predict-positive "
            f"F1 {pos['f1']:.2f} (precision {pos['precision']:.2f}, recall 1.00, accuracy {pos['accuracy']:.2f}), "
            f"predict-negative F1 0.00 "
            f"(accuracy {neg['accuracy']:.2f}); in sample (the saved model on its own training labels, not a "
            f"measure) {echo['decision_equals_label']} of {n} get their label back" + others)
    if n >= total:
        line += ("; the labels cover every corpus record: the classifier can only lose information here "
                 "(the filter counts the decisions it changes)")
    return line
