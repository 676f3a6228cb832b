"""The filter stage: score every corpus record, keep the educational ones.

Steps, each resumable:

1. score (sharded through the executor, one marker per corpus shard): a record the judge labelled takes
   its out-of-fold score from the classify stage (the fold model that never saw its label; see
   :mod:`textbooklm.quality.score_origin`); every other record is embedded here in batches and scored by
   the saved model (trained on every label) -> ``OUT/_work/scores/part-N`` (id, score). A run killed
   mid-way re-scores only the shards without a marker.
2. decide: the cut is ``filter.threshold``, else the score at which the ``top_fraction`` best records
   are kept, else the classifier's own decision cut.
3. write (sharded): kept records -> ``OUT/part-N``; the others -> ``OUT/rejected/part-N`` with reason
   ``low-educational-value`` and score. Both carry in provenance the judge's block (labelled records),
   ``classify`` (split: out-of-fold or unlabelled, fold, label, where the score came from) and
   ``filter`` (score, threshold).

What one "in" is: a corpus record scored (every record is), so ``in = kept + dropped`` over the whole
corpus. Each write task records its shard's verdicts in a :class:`textbooklm.ledger.ShardLedger` (with
counters for bytes and labelled/unlabelled decisions); the rejected rows, the summary's ``counts`` and
its line derive from the stage ledger.

The summary counts, for labelled records, the decisions that differ from the judge's label, next to the
classifier's out-of-fold F1 and the predict-positive / predict-negative baselines; when the labels cover
every record it says that the classifier can only lose information there.

Report data in ``OUT/``: ``score_histogram.{json,png}`` (scores of the whole corpus, kept and dropped)
and ``precision_recall.{json,png}`` (out-of-fold precision/recall of the classifier against threshold,
with the share of the corpus each threshold keeps). Tokens are approximated as bytes / 4 (labelled so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.executor import resolve_workers
from textbooklm.ledger import ShardLedger
from textbooklm.progress import summary_line
from textbooklm.quality.classifier import QualityClassifier, pr_vs_threshold
from textbooklm.quality.classify_stage import embedder_label
from textbooklm.quality.config import QualityFilterConfig
from textbooklm.quality.score_origin import LabelledScores, load_labelled_scores
from textbooklm.record import with_provenance
from textbooklm.store import MANIFEST, Dataset, atomic_write_json, finish_dataset, write_table

if TYPE_CHECKING:
    from textbooklm.stage_context import StageContext

SCORE_SCHEMA = pa.schema([("id", pa.string()), ("score", pa.float64()), ("n_bytes", pa.int64())])
BYTES_PER_TOKEN = 4  # rough code-token size; the summary labels token counts as approximate
IN_MEANS = "records scored"
DROP_REASON = "low-educational-value"
# Ledger counters of each write shard: bytes kept and dropped, and decisions on labelled / unlabelled records.
TALLIES = ("kept_bytes", "dropped_bytes", "labelled_kept", "labelled_dropped", "kept_label_0", "dropped_label_1",
           "unlabelled_kept", "unlabelled_dropped")


def score_texts(clf: QualityClassifier, texts: list[str], batch_size: int) -> np.ndarray:
    """Embed in batches and score: the path every record of the corpus takes."""
    from textbooklm.quality.classify_stage import embed_texts

    if not texts:
        return np.zeros(0)
    return clf.score(embed_texts(clf.embedder, texts, clf.max_chars, batch_size, precision=clf.precision))


_LOADED: dict[str, Any] = {}


def _version(path: Path) -> str:
    """Path plus modification time: a classify stage re-run in the same folder is loaded afresh, even by a
    process (in-process executor, a test) that loaded the earlier one."""
    try:
        return f"{path}@{path.stat().st_mtime_ns}"
    except FileNotFoundError:
        return str(path)


def _classifier(model_dir: str) -> QualityClassifier:
    """One load per worker process, reused by every shard it scores."""
    key = _version(Path(model_dir) / "classifier.json")
    if key not in _LOADED:
        _LOADED[key] = QualityClassifier.load(Path(model_dir))
    return _LOADED[key]


def _labelled(classify_dir: str) -> LabelledScores:
    """The classify stage's labelled records (out-of-fold scores, folds, judge blocks); once per worker."""
    key = "labelled:" + _version(Path(classify_dir) / MANIFEST)
    if key not in _LOADED:
        _LOADED[key] = load_labelled_scores(Path(classify_dir))
    return _LOADED[key]


def score_records(clf: QualityClassifier, ids: list[str], texts: list[str], batch_size: int,
                  labelled: LabelledScores) -> tuple[np.ndarray, int]:
    """Scores for a shard: labelled records out of fold (from classify), the rest embedded here and scored
    by the saved model. Returns (scores, records embedded here)."""
    todo = [i for i, rid in enumerate(ids) if rid not in labelled.by_id]
    scores = np.array([labelled.by_id[rid].score if rid in labelled.by_id else 0.0 for rid in ids], dtype=float)
    if todo:
        scores[todo] = score_texts(clf, [texts[i] for i in todo], batch_size)
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
    scores, embedded = score_records(clf, ids, texts, int(task["batch_size"]), _labelled(task["classify"]))
    write_table(Path(task["out"]), pa.Table.from_pydict(
        {"id": ids, "score": scores.astype(float).tolist(), "n_bytes": table.column("n_bytes").to_pylist()},
        schema=SCORE_SCHEMA))
    return {"scored": table.num_rows, "embedded": embedded}


def write_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: split one corpus shard into kept and rejected by the cut; provenance says why each went where.

    The shard's verdicts go to its ledger (``OUT/rejected/<key>`` and ``OUT/_ledger/<key>.json``), closed
    after the kept records are written: a shard killed before its marker re-runs and overwrites all three.
    """
    table = pq.read_table(task["shard"])
    scores = pq.read_table(task["scores"]).column("score").to_pylist()
    labelled = _labelled(task["classify"])
    cut = float(task["cut"])
    tied = set(task.get("tied") or ())
    rej_schema = table.schema.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string())) \
        .append(pa.field("score", pa.float64()))
    ledger = ShardLedger(task["stage_dir"], task["key"], rej_schema)
    for name in TALLIES:  # every counter present, zero or not: the summary reads them all
        ledger.count(name, 0)
    kept = []
    for rec, score in zip(table.to_pylist(), scores, strict=True):
        judge = labelled.judge_block(rec["id"])
        if judge is not None:
            rec = with_provenance(rec, "judge", **judge)
        block = labelled.classify_block(rec["id"])
        rec = with_provenance(rec, "classify", **block)
        rec = with_provenance(rec, "filter", score=round(score, 6), threshold=round(cut, 6))
        keep = score > cut or (score == cut and (rec["id"] in tied if task.get("strict") else True))
        side = "unlabelled" if "label" not in block else "labelled"
        ledger.count(f"{side}_{'kept' if keep else 'dropped'}")
        if side == "labelled" and keep != bool(block["label"]):
            ledger.count("kept_label_0" if keep else "dropped_label_1")
        ledger.count("kept_bytes" if keep else "dropped_bytes", rec["n_bytes"] or 0)
        if keep:
            kept.append(rec)
        else:
            detail = f"score {score:.3f} < {cut:.3f}" if score < cut else f"score {score:.3f}: tied at the cut"
            ledger.drop({**rec, "score": score}, DROP_REASON, detail)
    write_table(Path(task["out"]), pa.Table.from_pylist(kept, schema=table.schema))
    ledger.keep(len(kept))
    return ledger.close()


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


def run(cfg: QualityFilterConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the filter stage into ``out`` (see the module docstring)."""
    out = Path(out)
    work = out / "_work"
    corpus, classify = inputs["corpus"], inputs["classify"]
    model_dir = classify.path / "model"
    clf = QualityClassifier.load(model_dir)  # fail here, clearly, before any worker starts
    load_labelled_scores(classify.path)  # and here for a classify output from before out-of-fold scoring
    run_cfg = ctx.run
    shards = corpus.shards()
    workers = min(resolve_workers(run_cfg.workers), max(1, len(shards)))
    threads = max(1, (os.cpu_count() or 1) // workers) if run_cfg.executor == "local" else 0
    tasks = [{"key": p.name, "shard": str(p), "model": str(model_dir), "batch_size": cfg.batch_size,
              "threads": threads, "classify": str(classify.path),
              "out": str(work / "scores" / p.name)} for p in shards]
    scored = ctx.map(score_shard, tasks, work / "markers" / "score", description="filter: score")
    embedded = sum(r.get("embedded", 0) for r in scored.values())

    score_tables = [pq.read_table(work / "scores" / p.name) for p in shards]
    scores = np.concatenate([t.column("score").to_numpy() for t in score_tables]) if shards else np.zeros(0)
    ids = [i for t in score_tables for i in t.column("id").to_pylist()]
    cut, tied = decide_cut(cfg, ids, scores, clf.cut)
    strict = cfg.top_fraction is not None
    ledger = ctx.ledger(IN_MEANS)  # each worker builds its shard's ledger (the schema is its shard's)
    write_tasks = [{"key": p.name, "shard": str(p), "scores": str(work / "scores" / p.name), "cut": cut,
                    "strict": strict, "tied": tied, "classify": str(classify.path), "out": str(out / p.name),
                    "stage_dir": str(ledger.folder)} for p in shards]
    # The cut is part of each task, so a marker from a different cut can never be reused (the pipeline
    # wipes the folder when the config changes; this guards the CLI re-run with another threshold too:
    # each shard then re-runs and overwrites its ledger under the same key).
    marker_dir = work / "markers" / f"write-{cut:.6f}"
    ctx.map(write_shard, write_tasks, marker_dir, description="filter: write")
    ledger.forget({p.name for p in shards})

    report = _report_data(out, scores, cut, classify)
    fields = _summary(ledger.totals(), cut, cfg, clf, report)
    fields["embedded_here"] = embedded
    fields["embedder"] = embedder_label(clf.embedder, clf.precision)
    tail = fields.pop("tail") + f"; {embedded} unlabelled records embedded here ({fields['embedder']})"
    summary = ledger.finish(tail=tail, parents=(corpus.path, classify.path), **fields)
    ds = finish_dataset(out, stage="filter", config_hash=ctx.config_hash, parents=[corpus.path, classify.path],
                        summary=summary)
    summary_line(summary["line"])
    return ds


def _summary(counts: dict[str, Any], cut: float, cfg: QualityFilterConfig, clf: QualityClassifier,
             report: dict[str, str]) -> dict[str, Any]:
    """The filter's own fields and the line's tail (``tail``), beside the ledger's counts."""
    total = {k: counts["counters"].get(k, 0) for k in TALLIES}
    kept_b = total["kept_bytes"]
    total_b = kept_b + total["dropped_bytes"]
    how = (f"threshold {cut:.3f}" if cfg.top_fraction is None
           else f"top {cfg.top_fraction:.0%} (score >= {cut:.3f})")
    tail = (f"{how} on the {clf.kind} score; ~{_tokens(kept_b)} of ~{_tokens(total_b)} tokens "
            f"(bytes/4) kept ({kept_b / max(1, total_b):.0%})")
    labels = _against_labels(total, counts["in"], clf)
    tail += labels.pop("line")
    return {"tail": tail, "threshold": cut, "kept_bytes": kept_b,
            "total_bytes": total_b, "approx_tokens_kept": kept_b // BYTES_PER_TOKEN,
            "approx_tokens_total": total_b // BYTES_PER_TOKEN, "head": clf.kind,
            "held_out_f1": clf.info.get("metrics", {}).get("f1"), **labels, "plots": report}


def _against_labels(total: dict[str, int], n: int, clf: QualityClassifier) -> dict[str, Any]:
    """What the classifier changed relative to the judge's labels, and the baselines it must beat.

    Labelled records are decided on out-of-fold scores, so a decision that differs from the label is the
    classifier's own opinion, not noise from a model that saw the label. When the judge labelled every
    record, the labels alone already decide the filter: the classifier can only lose information there.
    """
    n_lab = total.get("labelled_kept", 0) + total.get("labelled_dropped", 0)
    n_unl = total.get("unlabelled_kept", 0) + total.get("unlabelled_dropped", 0)
    kept0, dropped1 = total.get("kept_label_0", 0), total.get("dropped_label_1", 0)
    positives = total.get("labelled_kept", 0) - kept0 + dropped1
    oof, base = clf.info.get("metrics", {}), clf.info.get("baselines", {})
    out: dict[str, Any] = {
        "labelled": {"n": n_lab, "kept": total.get("labelled_kept", 0), "label_1": positives,
                     "decisions_differing_from_label": kept0 + dropped1, "kept_label_0": kept0,
                     "dropped_label_1": dropped1, "scored": "out-of-fold"},
        "unlabelled": {"n": n_unl, "kept": total.get("unlabelled_kept", 0), "scored": "saved model (every label)"},
        "labels_cover_every_record": bool(n and n_lab == n),
        "out_of_fold_f1": oof.get("f1"),
        "baseline_f1": {k: v.get("f1") for k, v in base.items()},
    }
    line = ""
    if n_lab:
        line += (f"; {n_lab} labelled records decided on out-of-fold scores: {kept0 + dropped1} differ from the "
                 f"judge's label ({kept0} kept though labelled 0, {dropped1} dropped though labelled 1)")
    if n_unl:
        line += f"; {n_unl} unlabelled records scored by the saved model ({out['unlabelled']['kept']} kept)"
    if oof.get("f1") is not None and base:
        line += (f"; classifier out-of-fold F1 {oof['f1']:.2f} vs predict-positive "
                 f"{base.get('predict-positive', {}).get('f1', float('nan')):.2f}, predict-negative "
                 f"{base.get('predict-negative', {}).get('f1', float('nan')):.2f}")
    if out["labels_cover_every_record"]:
        line += (f"; the judge labelled every record, so the classifier can only lose information here: it "
                 f"changed {kept0 + dropped1} of {n_lab} decisions from the labels (the labels alone keep "
                 f"{positives}); label a sample to let it decide the rest")
    out["line"] = line
    return out


def _tokens(n_bytes: int) -> str:
    n = n_bytes / BYTES_PER_TOKEN
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _report_data(out: Path, scores: np.ndarray, cut: float, classify: Dataset) -> dict[str, str]:
    """Histogram of corpus scores and out-of-fold precision/recall vs threshold, as JSON and PNG."""
    edges = np.linspace(0, 1, 21)
    kept_h, _ = np.histogram(scores[scores >= cut], bins=edges)
    drop_h, _ = np.histogram(scores[scores < cut], bins=edges)
    hist = {"edges": edges.round(4).tolist(), "kept": kept_h.tolist(), "dropped": drop_h.tolist(), "threshold": cut,
            "n": int(len(scores))}
    atomic_write_json(out / "score_histogram.json", hist)
    held = classify.to_table(columns=["label", "score"])  # every labelled record, scored out of fold
    curve = pr_vs_threshold(np.asarray(held.column("label").to_pylist(), int),
                            np.asarray(held.column("score").to_pylist(), float))
    for row in curve:  # what each threshold would keep of the whole corpus
        row["corpus_kept_share"] = round(float(np.mean(scores >= row["threshold"])), 4) if len(scores) else 0.0
    atomic_write_json(out / "precision_recall.json", {"held_out_n": held.num_rows, "held_out_by": "out-of-fold",
                                                      "threshold": cut, "rows": curve})
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
    ax.plot(t, [np.nan if r["precision"] is None else r["precision"] for r in curve], label="precision (out of fold)")
    ax.plot(t, [r["recall"] for r in curve], label="recall (out of fold)")
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
