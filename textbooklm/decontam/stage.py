"""The decontam stage: check every training dataset of the run against the benchmarks.

Inputs (all optional; whatever the run configures): ``filter`` (else ``corpus``), ``textbooks`` and
``exercises``. Each is split into tasks of ``rows_per_task`` rows, run by the executor (resumable):
a task scores its rows with every signal and writes, atomically,

* ``OUT/<input>/part-N``: the rows kept, same columns, the decision added to ``provenance``;
* ``OUT/rejected/part-N``: the rows removed, with the matched problem, the signal, the scores and the
  matched ``pair`` (training passage, problem text);
* ``_work/matches/part-N``: one row per sample that matched anything under any signal.

Then ``OUT/`` (the stage's own dataset) gathers the match rows, ``OUT/heldout.json`` holds the held-out
exercises checked against, ``OUT/pairs.json`` lists the evidence of
every removal (and of every AST match held back as too small), and ``OUT/report.json`` holds the pruning
table (``report.tau_table``, HumanEval and the other configured benchmarks) the run report reads, plus
the held-out exercises' figures. Training stages read ``OUT/<input>/``.

Held-out exercises (``heldout_exercises``): the ``exercises`` input's held-out side (split by source
file, :func:`textbooklm.record.is_heldout_exercise`) is one more benchmark. Every training dataset is
checked against it with the same signals, plus ``source``: the corpus file a held-out exercise was mined
from is removed whole. The held-out rows themselves stay in ``OUT/exercises`` (provenance
``decontam.split = "heldout"``, not checked: they are not training data), so finetuning's validation
split and ``eval`` find them there; the training side is marked ``split = "train"``.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.decontam.benchmarks import load_references
from textbooklm.decontam.config import DecontamConfig
from textbooklm.decontam.heldout import (
    EXERCISES,
    HeldOut,
    heldout_exercises,
    index_references,
    split_note,
)
from textbooklm.decontam.index import ContaminationIndex, Sample
from textbooklm.decontam.report import format_table, tau_table
from textbooklm.embeddings import load_embedder
from textbooklm.ledger import ShardLedger, StageLedger
from textbooklm.progress import summary_line
from textbooklm.record import content_id, with_provenance
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, atomic_write_json, finish_dataset, shard_name, write_table

REPORT_FILE = "report.json"
PAIRS_FILE = "pairs.json"
REASON_PREFIX = "contaminated-"  # a rejected row's reason: contaminated-<signal>
IN_MEANS = "training records checked"  # held-out exercises pass through unchecked: a counter, not an input

MATCH_SCHEMA = pa.schema([
    ("id", pa.string()), ("dataset", pa.string()), ("decision", pa.string()), ("signal", pa.string()),
    ("problem_id", pa.string()), ("ngram_problem", pa.string()), ("ngram_hits", pa.int64()),
    ("ngram_overlap", pa.float64()), ("embedding_problem", pa.string()), ("embedding_cosine", pa.float64()),
    ("ast_problem", pa.string()), ("ast_tau", pa.float64()), ("ast_function", pa.string()),
    ("n_functions", pa.int64()), ("matches", pa.string()), ("pair", pa.string()),
])
REJECTED_SCHEMA = pa.schema([
    ("id", pa.string()), ("dataset", pa.string()), ("text", pa.string()), ("provenance", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()), ("problem_id", pa.string()), ("signal", pa.string()),
    ("ngram_hits", pa.int64()), ("ast_tau", pa.float64()), ("embedding_cosine", pa.float64()),
    ("record", pa.string()), ("pair", pa.string()),
])


def select_inputs(inputs: dict[str, Dataset]) -> dict[str, Dataset]:
    """The training datasets to clean, as the pipeline gives them (registry order, one per dataset).

    Which names reach decontam is the run's rule (:meth:`textbooklm.run.Run.inputs_for`): with a
    filter, the filtered corpus comes as ``filter`` and the raw corpus is not given at all.
    """
    seen: set[Path] = set()
    chosen = {}
    for name, ds in inputs.items():
        if ds.path.resolve() not in seen:
            seen.add(ds.path.resolve())
            chosen[name] = ds
    return chosen


@lru_cache(maxsize=2)
def _index(cfg_json: str, heldout_path: str | None, heldout_hash: str | None) -> ContaminationIndex:
    """One index per worker process (building it embeds the benchmark once); the hash keys a changed file."""
    cfg = DecontamConfig.model_validate_json(cfg_json)
    held = HeldOut.read(Path(heldout_path)) if heldout_path else None
    refs, sources = index_references(cfg, held)
    return ContaminationIndex(refs, cfg, load_embedder(cfg.embedder), sources)


def sample_text(rec: dict[str, Any]) -> str:
    """What is compared: ``text``, else an exercise's prompt + completion, else ``code``."""
    if rec.get("text"):
        return str(rec["text"])
    if rec.get("prompt") is not None or rec.get("completion") is not None:
        return (rec.get("prompt") or "") + (rec.get("completion") or "")
    return str(rec.get("code") or "")


def sample_id(rec: dict[str, Any], text: str) -> str:
    return str(rec.get("id") or content_id(text))


def is_match(row: dict[str, Any]) -> bool:
    return row["decision"] != "keep" or bool(row["matches"])


def _decision_note(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("decision", "signal", "problem_id", "ngram_problem", "ngram_hits", "embedding_problem",
            "embedding_cosine", "ast_problem", "ast_tau", "held_back")
    return {k: row[k] for k in keys if row.get(k) is not None}


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: score one slice of one input, write kept / match shards; its ledger writes the rejected shard.

    Held-out exercises pass through unchecked (they are the benchmark, not training data): they are no
    input of the ledger, only its ``heldout_exercises`` counter.
    """
    cfg = DecontamConfig.model_validate_json(task["config"])
    index = _index(task["config"], task.get("heldout"), task.get("heldout_hash"))
    table = pq.read_table(task["shard"]).slice(task["start"], task["rows"])
    records = table.to_pylist()
    texts = [sample_text(r) for r in records]
    out, name = Path(task["out"]), task["dataset"]
    fraction = task.get("split_fraction")  # set for the exercises the held-out ones come from
    splits = [split_note(r, fraction) if fraction is not None else {} for r in records]
    to_check = [i for i, sp in enumerate(splits) if sp.get("split") != "heldout"]
    samples = [Sample(sample_id(records[i], texts[i]), texts[i]) for i in to_check]
    pairs_before = index.pairs_computed
    checked_rows = dict(zip(to_check, index.check(samples), strict=True))
    ledger = ShardLedger(str(out), task["key"], REJECTED_SCHEMA)
    kept, matches = [], []
    for i, (rec, text) in enumerate(zip(records, texts, strict=True)):
        if i not in checked_rows:  # a held-out exercise: the benchmark itself, not training data
            kept.append(with_provenance(rec, "decontam", decision="heldout", **splits[i]))
            ledger.count("heldout_exercises")
            continue
        row = checked_rows[i]
        row["dataset"] = name
        noted = with_provenance(rec, "decontam", **_decision_note(row), **splits[i])
        if row["decision"] == "keep":
            kept.append(noted)
            ledger.keep()
        else:
            score = {"ngram": f"{row['ngram_hits']} shared {cfg.ngram}-grams", "ast": f"AST tau {row['ast_tau']}",
                     "embedding": f"cosine {row['embedding_cosine']}",
                     "source": "the source file of this held-out exercise"}[row["signal"]]
            rest = {k: v for k, v in rec.items() if k not in ("id", "text", "provenance")}
            ledger.drop({
                "id": row["id"], "dataset": name, "text": text, "provenance": noted["provenance"],
                "problem_id": row["problem_id"], "signal": row["signal"], "ngram_hits": row["ngram_hits"],
                "ast_tau": row["ast_tau"], "embedding_cosine": row["embedding_cosine"],
                "record": json.dumps(rest, default=str), "pair": json.dumps(row["pair"]),
            }, f"{REASON_PREFIX}{row['signal']}", f"{row['problem_id']}: {score}")
            if str(row["problem_id"]).startswith("exercise/"):
                ledger.count("removed_for_heldout_exercises")
        if is_match(row) or row["pair"] is not None:
            matches.append({**row, "matches": json.dumps(row["matches"]),
                            "pair": json.dumps(row["pair"]) if row["pair"] is not None else None})
    ledger.count(f"checked {name}", len(to_check))
    ledger.count("matched", len(matches))
    ledger.count("ast_pairs", index.pairs_computed - pairs_before)
    schema = table.schema if "provenance" in table.schema.names else table.schema.append(
        pa.field("provenance", pa.string()))
    write_table(out / name / task["local_key"], pa.Table.from_pylist(kept, schema=schema))
    write_table(Path(task["work"]) / "matches" / task["key"],
                pa.Table.from_pylist([{k: m.get(k) for k in MATCH_SCHEMA.names} for m in matches], schema=MATCH_SCHEMA))
    removed = ledger.dropped
    tallies = ledger.close()  # last: rejected/<key>, then _ledger/<key>.json
    # The keys below are what the ablation's decontaminated copy (ablate/decontaminate.py) reads.
    return {**tallies, "dataset": name, "checked": len(records), "kept": len(kept), "matched": len(matches),
            "heldout": len(records) - len(to_check),
            "removed_by": dict(Counter(r["signal"] for r in removed)),
            "ast_pairs": index.pairs_computed - pairs_before}


def plan_tasks(cfg: DecontamConfig, datasets: dict[str, Dataset], out: Path, work: Path,
               held: HeldOut | None = None) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cfg_json = cfg.model_dump_json()
    held_info = {"heldout": str(held.path), "heldout_hash": held.digest} if held is not None else {}
    for name, ds in datasets.items():
        split = {"split_fraction": held.fraction} if held is not None and name == EXERCISES else {}
        local = 0
        for shard in ds.shards():
            n = pq.ParquetFile(shard).metadata.num_rows
            for start in range(0, n, cfg.rows_per_task):
                tasks.append({
                    "key": shard_name(len(tasks)), "local_key": shard_name(local), "dataset": name,
                    "shard": str(shard), "start": start, "rows": min(cfg.rows_per_task, n - start),
                    "config": cfg_json, "out": str(out), "work": str(work), **held_info, **split,
                })
                local += 1
    return tasks


def run(cfg: DecontamConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the stage into ``out`` (resuming whatever an interrupted run finished)."""
    out = Path(out)
    work = out / "_work"
    datasets = select_inputs(inputs)
    if not datasets:
        raise ValueError("decontam: no training data to check; configure corpus/filter, textbooks or exercises")
    held = heldout_exercises(cfg, datasets.get(EXERCISES), out) if cfg.heldout_exercises else None
    tasks = plan_tasks(cfg, datasets, out, work, held)
    ledger = ctx.ledger(IN_MEANS, REJECTED_SCHEMA)
    if ledger.folder.resolve() != out.resolve():  # the workers' shard ledgers write into out
        raise ValueError(f"decontam: asked to write into {out}, but this run's decontam folder is {ledger.folder}")
    ledger.forget({t["key"] for t in tasks})
    ctx.map(check_task, tasks, work / "markers", description="decontam: check")
    totals = ledger.totals()
    match_tables = [pq.read_table(work / "matches" / t["key"]) for t in tasks]
    matches = pa.concat_tables(match_tables) if match_tables else MATCH_SCHEMA.empty_table()
    for i in range(max(1, -(-matches.num_rows // 10_000))):
        write_table(out / shard_name(i), matches.slice(i * 10_000, 10_000))

    refs = load_references(cfg)
    bench_ids = {r.problem_id for r in refs}
    rows = [{**r, "matches": json.loads(r["matches"]), "pair": json.loads(r["pair"]) if r["pair"] else None}
            for r in matches.to_pylist()]
    checked = totals["in"]
    # The pruning table is about the configured benchmarks (phi-1's similar / non-similar HumanEval split).
    bench_rows = [{**r, "matches": [m for m in r["matches"] if m[0] in bench_ids]} for r in rows]
    report = tau_table(bench_rows, [r.problem_id for r in refs], n_samples=checked, taus=cfg.report_taus,
                       ngram_min_hits=cfg.ngram_min_hits, embedding_threshold=cfg.embedding_threshold,
                       ast_min_statements=cfg.ast_min_statements)
    report["config"] = cfg.model_dump(mode="json")
    report["datasets"] = {n: totals["counters"].get(f"checked {n}", 0) for n in datasets}
    pairs = [{"dataset": r["dataset"], "id": r["id"], **r["pair"]} for r in rows if r["pair"] is not None]
    report["pairs"] = {"file": PAIRS_FILE, "removed": sum(p["decision"] != "keep" for p in pairs),
                       "held_back": sum(p["decision"] == "keep" for p in pairs)}
    report["heldout_exercises"] = _heldout_report(held, rows)
    atomic_write_json(out / PAIRS_FILE, pairs)
    atomic_write_json(out / REPORT_FILE, report)

    parents = [str(ds.path) for ds in datasets.values()]
    summary = _summary(ledger, report, datasets, parents)
    for name, ds in datasets.items():
        finish_dataset(out / name, stage=f"decontam.{name}", config_hash=ctx.config_hash, parents=[ds.path],
                       summary={**summary, "line": f"decontam.{name}: cleaned copy of {ds.path}"})
    result = finish_dataset(out, stage="decontam", config_hash=ctx.config_hash, parents=parents, summary=summary)
    summary_line(summary["line"])
    for line in format_table(report):
        summary_line("  " + line)
    return result


def _heldout_report(held: HeldOut | None, rows: list[dict[str, Any]]) -> dict:
    """What treating the held-out exercises as a benchmark did: how many, from how many files, what went."""
    if held is None:
        return {"enabled": False}
    removed = [r for r in rows if r["decision"] != "keep" and str(r["problem_id"]).startswith("exercise/")]
    return {"enabled": True, "fraction": held.fraction, "n_problems": len(held.problems),
            "n_source_files": len(set(held.source_files)), "n_exercise_sources": held.n_sources,
            "n_train_sources": held.n_train_sources,
            "removed": len(removed), "removed_by_signal": dict(Counter(r["signal"] for r in removed)),
            "removed_by_dataset": dict(Counter(r["dataset"] for r in removed)),
            "problems_matched": sorted({r["problem_id"] for r in removed})}


def _summary(ledger: StageLedger, report: dict[str, Any], datasets: dict[str, Dataset], parents: list[str]) -> dict:
    """The ledger's counts and line (finishing ``rejected/``), with decontam's own fields and words beside them."""
    totals = ledger.totals()
    counters = totals["counters"]
    by_signal = {k.removeprefix(REASON_PREFIX): v for k, v in totals["dropped_by_reason"].items()}
    matched, heldout = counters.get("matched", 0), counters.get("heldout_exercises", 0)
    for_held = counters.get("removed_for_heldout_exercises", 0)
    per_input = ", ".join(f"{n} {report['datasets'][n]}" for n in datasets)
    taus = "/".join(f"{t['tau']:g}" for t in report["taus"])
    removed = "/".join(str(t["removed"]) for t in report["taus"])
    similar = "/".join(str(t["n_similar"]) for t in report["taus"])
    held = report.get("heldout_exercises", {})
    held_part = (f"; {heldout} held-out exercises passed through unchecked (from "
                 f"{held['n_exercise_sources'] - held['n_train_sources']} of {held['n_exercise_sources']} sources, "
                 f"kept out of training; as a benchmark of {held['n_problems']} problems they removed {for_held})"
                 if held.get("enabled") else "")
    tail = (f"checked per input: {per_input}; {matched} matched any signal; at tau {taus}: {removed} would be "
            f"removed, {similar} of {report['n_problems']} problems similar{held_part}; evidence in {PAIRS_FILE}")
    return ledger.finish(
        tail=tail, parents=tuple(parents), checked=totals["in"], kept=totals["kept"], removed=totals["dropped"],
        removed_by_signal=by_signal, matched=matched, heldout_exercises=heldout,
        removed_for_heldout_exercises=for_held, ast_pairs=counters.get("ast_pairs", 0))
