"""The judge stage: score the educational value of corpus records with one or two judges.

Steps, each resumable:

1. sample: seeded and stratified by source (:mod:`textbooklm.quality.sampling`); the LLM's sample
   is drawn from the heuristic's, so the two can be compared record by record.
2. heuristic (sharded through the executor, one marker per corpus shard): features + score.
3. llm: one batch through the teacher; its SQLite cache lives in ``OUT/_work/teacher/``, so a
   re-run or resumed run re-sends nothing.
4. write: the records judged by ``label_from`` -> ``OUT/part-N`` with columns ``score`` (that judge's,
   normalised to [0, 1]), ``label`` (score >= its threshold), ``heuristic_score``, ``llm_score`` and
   each judge's verdict in ``provenance["judge"]``. Records the label judge could not score (an
   unparseable reply, a failed request) go to ``OUT/rejected/`` with reason ``unjudged``.

What one "in" is: a file in the label judge's sample (``label_from``), so ``in = labelled + unjudged``;
the stage ledger (:mod:`textbooklm.ledger`) records each verdict per corpus shard, and the rejected rows,
the summary's ``counts`` and its line derive from it. Files only the other judge scored are not in.

The output is a labelled sample for the classifier, not a filtered corpus: records not sampled are
simply not judged (the corpus stage's output stays complete). ``OUT/agreement.json`` holds the
judges' agreement when both ran.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.ledger import StageLedger
from textbooklm.progress import summary_line
from textbooklm.quality import heuristic
from textbooklm.quality.agreement import agreement
from textbooklm.quality.config import JudgeConfig
from textbooklm.quality.sampling import stratified_sample
from textbooklm.record import with_provenance
from textbooklm.store import Dataset, atomic_write_json, finish_dataset, write_table

if TYPE_CHECKING:
    from textbooklm.stage_context import StageContext

BASE_FIELDS = [
    ("id", pa.string()), ("text", pa.string()), ("path", pa.string()), ("source", pa.string()),
    ("n_bytes", pa.int64()), ("provenance", pa.string()),
]
JUDGED_SCHEMA = pa.schema(
    BASE_FIELDS + [("score", pa.float64()), ("label", pa.int8()), ("heuristic_score", pa.float64()),
                   ("llm_score", pa.float64())]
)
REJECTED_SCHEMA = pa.schema(BASE_FIELDS + [("reason", pa.string()), ("detail", pa.string())])
HEURISTIC_SCHEMA = pa.schema([("row", pa.int64()), ("score", pa.float64()), ("features", pa.string())])


def heuristic_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: heuristic score of the chosen rows of one corpus shard."""
    rows = task["rows"]
    texts = pq.read_table(task["shard"], columns=["text"]).column("text").to_pylist()
    out = []
    for r in rows:
        score, feats = heuristic.judge(texts[r] or "")
        out.append({"row": r, "score": score, "features": json.dumps(feats)})
    write_table(Path(task["out"]), pa.Table.from_pylist(out, schema=HEURISTIC_SCHEMA))
    return {"scored": len(out)}


def _teacher_for(cfg: JudgeConfig, ctx: StageContext, out: Path):
    """The judge's teacher, with the run's request cache (a re-run of this stage re-sends nothing)."""
    return ctx.teacher(cfg.teacher, stage="judge")


def run(cfg: JudgeConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the judge stage into ``out`` (see the module docstring)."""
    out = Path(out)
    work = out / "_work"
    corpus = inputs["corpus"]
    shards = corpus.shards()
    index = corpus.to_table(columns=["id", "source"])
    ids, sources = index.column("id").to_pylist(), index.column("source").to_pylist()
    where: list[tuple[int, int]] = []  # global row -> (shard, row in shard)
    for s, path in enumerate(shards):
        where += [(s, r) for r in range(pq.ParquetFile(path).metadata.num_rows)]
    seed = ctx.run.seed

    # 1. samples
    heur_rows = stratified_sample(ids, sources, cfg.heuristic.sample, seed) if "heuristic" in cfg.judges else []
    pool = heur_rows if heur_rows else list(range(len(ids)))
    llm_rows: list[int] = []
    if "llm" in cfg.judges:
        picked = stratified_sample([ids[i] for i in pool], [sources[i] for i in pool], cfg.llm.sample, seed)
        llm_rows = [pool[i] for i in picked]

    # 2. heuristic
    heur: dict[int, tuple[float, dict[str, Any]]] = {}
    if heur_rows:
        heur = _run_heuristic(heur_rows, where, shards, work, ctx)

    # 3. llm
    llm: dict[int, dict[str, Any]] = {}
    template = None
    teacher_line = ""
    if llm_rows:
        from textbooklm.quality.llm_judge import judge_records
        from textbooklm.quality.prompts import load_template

        template = load_template(cfg.llm)
        teacher = _teacher_for(cfg, ctx, out)
        try:
            texts = _texts(llm_rows, where, shards)
            for i, verdict in zip(llm_rows, judge_records(teacher, texts, cfg.llm, template), strict=True):
                llm[i] = verdict
            teacher_line = teacher.summary()
        finally:
            teacher.close()
        if teacher_line:
            summary_line(teacher_line)

    # 4. write
    thresholds = {"heuristic": cfg.heuristic.threshold, "llm": cfg.llm.resolved_threshold()}
    llm_meta = {}
    if template is not None:
        llm_meta = {"teacher": cfg.teacher, "model": ctx.teacher_config(cfg.teacher).model,
                    "prompt": template.name, "prompt_sha": template.sha, "scale": template.scale}
    label_rows = heur_rows if cfg.label_from == "heuristic" else llm_rows
    ledger = ctx.ledger(f"files sampled for {cfg.label_from} labels", REJECTED_SCHEMA)
    _write(ledger, shards, where, label_rows, heur, llm, cfg, thresholds, llm_meta)

    agree = None
    both = [i for i in llm_rows if i in heur and llm[i]["score"] is not None]
    if "heuristic" in cfg.judges and "llm" in cfg.judges:
        agree = agreement(
            [heur[i][0] for i in both], [llm[i]["score"] for i in both],
            [int(heur[i][0] >= thresholds["heuristic"]) for i in both],
            [int(llm[i]["score"] >= thresholds["llm"]) for i in both],
        )
        atomic_write_json(out / "agreement.json", agree)
    summary = _summary(cfg, heur, llm, ledger.totals(), len(ids), agree, thresholds, llm_meta, teacher_line)
    summary = ledger.finish(tail=summary.pop("tail"), parents=(corpus.path,), **summary)
    ds = finish_dataset(out, stage="judge", config_hash=ctx.config_hash, parents=[corpus.path], summary=summary)
    summary_line(summary["line"])
    return ds


def _run_heuristic(rows: list[int], where, shards, work: Path, ctx: StageContext) -> dict[int, tuple[float, dict]]:
    by_shard: dict[int, list[int]] = {}
    for g in rows:
        s, r = where[g]
        by_shard.setdefault(s, []).append(r)
    tasks = [{"key": shards[s].name, "shard": str(shards[s]), "rows": rs,
              "out": str(work / "heuristic" / shards[s].name)} for s, rs in sorted(by_shard.items())]
    ctx.map(heuristic_shard, tasks, work / "markers" / "heuristic", description="judge: heuristic")
    offset = {}
    for g, (s, r) in enumerate(where):
        offset[(s, r)] = g
    result: dict[int, tuple[float, dict]] = {}
    for s in by_shard:
        for rec in pq.read_table(work / "heuristic" / shards[s].name).to_pylist():
            result[offset[(s, rec["row"])]] = (rec["score"], json.loads(rec["features"]))
    return result


def _texts(rows: list[int], where, shards) -> list[str]:
    cache: dict[int, list[str]] = {}
    texts = []
    for g in rows:
        s, r = where[g]
        if s not in cache:
            cache[s] = pq.read_table(shards[s], columns=["text"]).column("text").to_pylist()
        texts.append(cache[s][r] or "")
    return texts


def _write(ledger: StageLedger, shards, where, label_rows: list[int], heur, llm, cfg: JudgeConfig,
           thresholds: dict[str, float], llm_meta: dict[str, Any]) -> None:
    """Per corpus shard: labelled records -> ``OUT/part-N``; the label judge's verdicts -> its ledger shard.

    Every shard is written (empty where none of its records was sampled) and its ledger closed after its
    records, so a run killed here and re-run rewrites each shard once: nothing is counted twice.
    """
    per_shard: dict[int, list[int]] = {s: [] for s in range(len(shards))}
    for g in sorted(label_rows):
        per_shard[where[g][0]].append(g)
    for s, path in enumerate(shards):
        table = pq.read_table(path).to_pylist() if per_shard[s] else []
        part = ledger.shard(path.name)
        kept = []
        for g in per_shard[s]:
            rec = dict(table[where[g][1]])
            verdict: dict[str, Any] = {"label_from": cfg.label_from}
            h_score = heur[g][0] if g in heur else None
            l_score = llm[g]["score"] if g in llm else None
            if g in heur:
                verdict["heuristic"] = {"score": h_score, "threshold": thresholds["heuristic"], "features": heur[g][1]}
            if g in llm:
                verdict["llm"] = {**llm_meta, **llm[g], "threshold": thresholds["llm"]}
            score = h_score if cfg.label_from == "heuristic" else l_score
            if score is None:
                reason = (llm.get(g) or {}).get("reason") or "unscored"
                part.drop(with_provenance(rec, "judge", **verdict), "unjudged", f"{cfg.label_from} judge: {reason}")
                continue
            label = int(score >= thresholds[cfg.label_from])
            verdict.update(score=score, label=label)
            part.count("positives", label)
            kept.append({**with_provenance(rec, "judge", **verdict), "score": score, "label": label,
                         "heuristic_score": h_score, "llm_score": l_score})
        write_table(ledger.folder / path.name, pa.Table.from_pylist(kept, schema=JUDGED_SCHEMA))
        part.keep(len(kept))
        part.close()
    ledger.forget({p.name for p in shards})  # a shard of an earlier corpus is not part of this run


def _summary(cfg, heur, llm, counts: dict[str, Any], corpus_records: int, agree, thresholds, llm_meta,
             teacher_line) -> dict[str, Any]:
    """The judge's own fields and the line's tail, beside the ledger's counts (labelled = its kept)."""
    parts = []
    labelled, positives = counts["kept"], int(counts["counters"].get("positives", 0))
    info: dict[str, Any] = {"label_from": cfg.label_from, "thresholds": thresholds, "labelled": labelled,
                            "positives": positives, "corpus_records": corpus_records, "unjudged": {}}
    if heur:
        hs = np.array([v[0] for v in heur.values()])
        pos = int((hs >= thresholds["heuristic"]).sum())
        parts.append(f"heuristic scored {len(hs)} (mean {hs.mean():.2f}, {pos} educational at >= "
                     f"{thresholds['heuristic']:g})")
        info["heuristic"] = {"n": len(hs), "mean": float(hs.mean()), "positives": pos}
    if llm:
        scored = [v["score"] for v in llm.values() if v["score"] is not None]
        fails = Counter(v["reason"].split(":", 1)[0] for v in llm.values() if v["score"] is None)
        how = Counter(v["how"] for v in llm.values())
        # which way each score was read: label logprobs, or a generated reply (and why)
        paths = Counter(v.get("path", v["how"]) for v in llm.values())
        capped = {v["top_logprobs"] for v in llm.values() if "top_logprobs" in v}
        pos = sum(1 for s in scored if s >= thresholds["llm"])
        fail_text = ", ".join(f"{k} {n}" for k, n in fails.most_common())
        first_error = next((v["reason"] for v in llm.values() if v["score"] is None
                            and str(v["reason"]).startswith("request-failed")), None)
        path_text = ", ".join(f"{k} {n}" for k, n in paths.most_common())
        if capped:
            path_text += f"; the server capped top_logprobs at {min(capped)}"
        parts.append(
            f"llm judge ({llm_meta.get('prompt')} prompt, {llm_meta.get('model')}) scored {len(scored)} of "
            f"{len(llm)} ({pos} educational at >= {thresholds['llm']:g}; {sum(fails.values())} unscored"
            + (f": {fail_text}" if fail_text else "") + (f"; first: {first_error}" if first_error else "")
            + f"; paths: {path_text})"
        )
        info["llm"] = {"n": len(llm), "scored": len(scored), "positives": pos, "failures": dict(fails),
                       "how": dict(how), "paths": dict(paths),
                       "mean": float(np.mean(scored)) if scored else None, **llm_meta}
        info["teacher"] = teacher_line
        if cfg.label_from == "llm":  # why the label judge's unjudged files were dropped
            info["unjudged"] = dict(fails)
    if agree is not None:
        info["agreement"] = agree
        sp = "n/a" if agree["spearman"] is None else f"{agree['spearman']:.2f}"
        ka = "n/a" if agree["kappa"] is None else f"{agree['kappa']:.2f}"
        parts.append(f"agreement on {agree['n']}: Spearman {sp}, kappa {ka}")
    rest = (f"the classifier decides the other {corpus_records - labelled}" if labelled < corpus_records
            else "every record: a classifier can only lose information on them")
    parts.append(f"{positives} of the {labelled} labels positive; labelled {labelled} of {corpus_records} corpus "
                 f"records ({labelled / max(1, corpus_records):.0%}); {rest}")
    info["tail"] = "; ".join(parts)
    return info
