"""The filter stage: score every corpus record with the saved classifier, keep the educational ones.

Steps, each resumable:

1. score (sharded through the executor, one marker per corpus shard): embed the shard in batches and
   score it -> ``OUT/_work/scores/part-N`` (id, score). Records the classify stage embedded already
   reuse its vectors (``reuse_embeddings``). A run killed mid-way re-scores only the shards without
   a marker.
2. decide: the cut is ``filter.threshold``, else the score at which the ``top_fraction`` best records
   are kept, else the classifier's own decision cut.
3. write (sharded): kept records -> ``OUT/part-N`` with ``{"filter": {"score", "threshold"}}`` added to
   provenance; the others -> ``OUT/rejected/part-N`` with reason ``low-educational-value`` and score.

Report data in ``OUT/``: ``score_histogram.{json,png}`` (scores of the whole corpus, kept and dropped)
and ``precision_recall.{json,png}`` (held-out precision/recall of the classifier against threshold,
with the share of the corpus each threshold keeps). Tokens are approximated as bytes / 4 (labelled so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.executor import resolve_workers
from textbooklm.progress import summary_line
from textbooklm.quality.classifier import QualityClassifier, pr_vs_threshold
from textbooklm.quality.classify_stage import EMBEDDINGS_FILE, embedder_label
from textbooklm.quality.config import QualityFilterConfig
from textbooklm.record import with_provenance
from textbooklm.store import Dataset, atomic_write_json, finish_dataset, write_table

SCORE_SCHEMA = pa.schema([("id", pa.string()), ("score", pa.float64()), ("n_bytes", pa.int64())])
BYTES_PER_TOKEN = 4  # rough code-token size; the summary labels token counts as approximate


def score_texts(clf: QualityClassifier, texts: list[str], batch_size: int) -> np.ndarray:
    """Embed in batches and score: the path every record of the corpus takes."""
    from textbooklm.quality.classify_stage import embed_texts

    if not texts:
        return np.zeros(0)
    return clf.score(embed_texts(clf.embedder, texts, clf.max_chars, batch_size, precision=clf.precision))


_LOADED: dict[str, Any] = {}


def _classifier(model_dir: str) -> QualityClassifier:
    """One load per worker process, reused by every shard it scores."""
    if model_dir not in _LOADED:
        _LOADED[model_dir] = QualityClassifier.load(Path(model_dir))
    return _LOADED[model_dir]


def _known_vectors(classify_dir: str) -> tuple[dict[str, int], np.ndarray | None]:
    """The classify stage's vectors by record id (memory-mapped; loaded once per worker)."""
    key = "vectors:" + classify_dir
    if key not in _LOADED:
        folder = Path(classify_dir)
        path = folder / EMBEDDINGS_FILE
        if not path.exists():
            _LOADED[key] = ({}, None)
        else:
            ids = Dataset(folder).column("id")
            _LOADED[key] = ({rid: i for i, rid in enumerate(ids)}, np.load(path, mmap_mode="r", allow_pickle=False))
    return _LOADED[key]


def score_known(clf: QualityClassifier, ids: list[str], texts: list[str], batch_size: int,
                classify_dir: str | None) -> tuple[np.ndarray, int]:
    """Scores for a shard, reusing the classify stage's vector of any record it embedded already
    (same embedder and cut, by construction). Returns (scores, records embedded here)."""
    index, vectors = _known_vectors(classify_dir) if classify_dir else ({}, None)
    todo = [i for i, rid in enumerate(ids) if rid not in index] if vectors is not None else list(range(len(ids)))
    scores = np.zeros(len(ids))
    if todo:
        scores[todo] = score_texts(clf, [texts[i] for i in todo], batch_size)
    known = [i for i in range(len(ids)) if vectors is not None and ids[i] in index]
    if known:
        scores[known] = clf.score(np.asarray(vectors[[index[ids[i]] for i in known]]))
    return scores, len(todo)


def score_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: score one corpus shard."""
    clf = _classifier(task["model"])
    if task.get("threads") and not clf.embedder.startswith(("hashing", "static")):  # the torch embedders
        import torch

        torch.set_num_threads(int(task["threads"]))  # workers share the cores instead of fighting for them
    table = pq.read_table(task["shard"], columns=["id", "text", "n_bytes"])
    ids = table.column("id").to_pylist()
    texts = [t or "" for t in table.column("text").to_pylist()]
    scores, embedded = score_known(clf, ids, texts, int(task["batch_size"]), task.get("classify"))
    write_table(Path(task["out"]), pa.Table.from_pydict(
        {"id": ids, "score": scores.astype(float).tolist(), "n_bytes": table.column("n_bytes").to_pylist()},
        schema=SCORE_SCHEMA))
    return {"scored": table.num_rows, "embedded": embedded}


def write_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: split one corpus shard into kept and rejected by the cut."""
    table = pq.read_table(task["shard"])
    scores = pq.read_table(task["scores"]).column("score").to_pylist()
    cut = float(task["cut"])
    tied = set(task.get("tied") or ())
    kept, dropped = [], []
    for rec, score in zip(table.to_pylist(), scores, strict=True):
        rec = with_provenance(rec, "filter", score=round(score, 6), threshold=round(cut, 6))
        keep = score > cut or (score == cut and (rec["id"] in tied if task.get("strict") else True))
        if keep:
            kept.append(rec)
        else:
            detail = f"score {score:.3f} < {cut:.3f}" if score < cut else f"score {score:.3f}: tied at the cut"
            dropped.append({**rec, "reason": "low-educational-value", "detail": detail, "score": score})
    schema = table.schema
    rej_schema = schema.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string())) \
        .append(pa.field("score", pa.float64()))
    write_table(Path(task["out"]), pa.Table.from_pylist(kept, schema=schema))
    write_table(Path(task["rejected"]), pa.Table.from_pylist(dropped, schema=rej_schema))
    return {"kept": len(kept), "kept_bytes": sum(r["n_bytes"] or 0 for r in kept), "dropped": len(dropped),
            "dropped_bytes": sum(r["n_bytes"] or 0 for r in dropped)}


def decide_cut(cfg: QualityFilterConfig, ids: list[str], scores: np.ndarray, default: float) -> tuple[float, list[str]]:
    """The score a record needs to be kept, and the ids kept AT that score (``top_fraction`` only).

    With ``top_fraction`` exactly round(fraction * N) records are kept: everything above the k-th
    score, then records tied at it in id order (ids are content hashes: an arbitrary but stable order).
    """
    if cfg.threshold is not None:
        return cfg.threshold, []
    if cfg.top_fraction is not None and len(scores):
        k = max(1, int(round(cfg.top_fraction * len(scores))))
        cut = float(np.sort(scores)[::-1][k - 1])
        above = int((scores > cut).sum())
        tied = sorted(i for i, s in zip(ids, scores.tolist(), strict=True) if s == cut)
        return cut, tied[: k - above]
    return default, []


def run(cfg: QualityFilterConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    """Run the filter stage into ``out`` (see the module docstring)."""
    out = Path(out)
    work = out / "_work"
    corpus, classify = inputs["corpus"], inputs["classify"]
    model_dir = classify.path / "model"
    clf = QualityClassifier.load(model_dir)  # fail here, clearly, before any worker starts
    run_cfg = ctx.run
    shards = corpus.shards()
    workers = min(resolve_workers(run_cfg.workers), max(1, len(shards)))
    threads = max(1, (os.cpu_count() or 1) // workers) if run_cfg.executor == "local" else 0
    tasks = [{"key": p.name, "shard": str(p), "model": str(model_dir), "batch_size": cfg.batch_size,
              "threads": threads, "classify": str(classify.path) if cfg.reuse_embeddings else None,
              "out": str(work / "scores" / p.name)} for p in shards]
    scored = ctx.map(score_shard, tasks, work / "markers" / "score", description="filter: score")
    embedded = sum(r.get("embedded", 0) for r in scored.values())

    score_tables = [pq.read_table(work / "scores" / p.name) for p in shards]
    scores = np.concatenate([t.column("score").to_numpy() for t in score_tables]) if shards else np.zeros(0)
    ids = [i for t in score_tables for i in t.column("id").to_pylist()]
    cut, tied = decide_cut(cfg, ids, scores, clf.cut)
    strict = cfg.top_fraction is not None
    write_tasks = [{"key": p.name, "shard": str(p), "scores": str(work / "scores" / p.name), "cut": cut,
                    "strict": strict, "tied": tied, "out": str(out / p.name),
                    "rejected": str(out / "rejected" / p.name)} for p in shards]
    # The cut is part of each task, so a marker from a different cut can never be reused (the pipeline
    # wipes the folder when the config changes; this guards the CLI re-run with another threshold too).
    marker_dir = work / "markers" / f"write-{cut:.6f}"
    results = ctx.map(write_shard, write_tasks, marker_dir, description="filter: write")

    report = _report_data(out, scores, cut, classify)
    summary = _summary(results, cut, cfg, clf, report)
    summary["embedded_here"] = embedded
    summary["embedder"] = embedder_label(clf.embedder, clf.precision)
    summary["line"] += f"; {embedded} embedded here ({summary['embedder']}), the rest reused from classify"
    finish_dataset(out / "rejected", stage="filter.rejected", config_hash=ctx.config_hash, summary=summary)
    ds = finish_dataset(out, stage="filter", config_hash=ctx.config_hash, parents=[corpus.path, classify.path],
                        summary=summary)
    summary_line(summary["line"])
    return ds


def _summary(results, cut, cfg, clf, report) -> dict[str, Any]:
    kept = sum(r["kept"] for r in results.values())
    dropped = sum(r["dropped"] for r in results.values())
    kept_b = sum(r["kept_bytes"] for r in results.values())
    total_b = kept_b + sum(r["dropped_bytes"] for r in results.values())
    how = (f"threshold {cut:.3f}" if cfg.top_fraction is None
           else f"top {cfg.top_fraction:.0%} (score >= {cut:.3f})")
    line = (f"filter: kept {kept} of {kept + dropped} records ({how}, {clf.kind}); "
            f"~{_tokens(kept_b)} of ~{_tokens(total_b)} tokens "
            f"(bytes/4) kept ({kept_b / max(1, total_b):.0%}); {dropped} dropped as low-educational-value")
    return {"line": line, "kept": kept, "dropped": dropped, "threshold": cut, "kept_bytes": kept_b,
            "total_bytes": total_b, "approx_tokens_kept": kept_b // BYTES_PER_TOKEN,
            "approx_tokens_total": total_b // BYTES_PER_TOKEN, "head": clf.kind,
            "held_out_f1": clf.info.get("metrics", {}).get("f1"), "plots": report}


def _tokens(n_bytes: int) -> str:
    n = n_bytes / BYTES_PER_TOKEN
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _report_data(out: Path, scores: np.ndarray, cut: float, classify: Dataset) -> dict[str, str]:
    """Histogram of corpus scores and held-out precision/recall vs threshold, as JSON and PNG."""
    edges = np.linspace(0, 1, 21)
    kept_h, _ = np.histogram(scores[scores >= cut], bins=edges)
    drop_h, _ = np.histogram(scores[scores < cut], bins=edges)
    hist = {"edges": edges.round(4).tolist(), "kept": kept_h.tolist(), "dropped": drop_h.tolist(), "threshold": cut,
            "n": int(len(scores))}
    atomic_write_json(out / "score_histogram.json", hist)
    held = classify.to_table(columns=["split", "label", "score"]).to_pylist()
    test = [r for r in held if r["split"] == "test"]
    curve = pr_vs_threshold(np.array([r["label"] for r in test], int), np.array([r["score"] for r in test], float))
    for row in curve:  # what each threshold would keep of the whole corpus
        row["corpus_kept_share"] = round(float(np.mean(scores >= row["threshold"])), 4) if len(scores) else 0.0
    atomic_write_json(out / "precision_recall.json", {"held_out_n": len(test), "threshold": cut, "rows": curve})
    _plot(out, hist, curve, cut)
    return {"histogram": "score_histogram.png", "precision_recall": "precision_recall.png"}


def _plot(out: Path, hist: dict[str, Any], curve: list[dict[str, Any]], cut: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(hist["edges"])
    width = edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(edges[:-1], hist["dropped"], width=width, align="edge", color="#bbbbbb", label="dropped")
    ax.bar(edges[:-1], hist["kept"], width=width, align="edge", bottom=hist["dropped"], color="#2a7ab9", label="kept")
    ax.axvline(cut, color="black", linestyle="--", linewidth=1, label=f"threshold {cut:.2f}")
    ax.set_xlabel("classifier score (educational value)")
    ax.set_ylabel("records")
    ax.set_title(f"Quality scores of {hist['n']} corpus records")
    ax.legend()
    fig.tight_layout()
    _save(fig, out / "score_histogram.png")
    plt.close(fig)

    t = [r["threshold"] for r in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(t, [np.nan if r["precision"] is None else r["precision"] for r in curve], label="precision (held out)")
    ax.plot(t, [r["recall"] for r in curve], label="recall (held out)")
    ax.plot(t, [r["corpus_kept_share"] for r in curve], label="share of corpus kept", linestyle=":")
    ax.axvline(cut, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.legend()
    fig.tight_layout()
    _save(fig, out / "precision_recall.png")
    plt.close(fig)


def _save(fig: Any, path: Path) -> None:
    import io

    from textbooklm.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
