"""The exercises stage's corpus rounds: one filtered-corpus shard mined per round (corpus_exercises.py),
after the teacher's rounds, until ``corpus.count`` exercises are verified; optionally the teacher
rewrites each mined exercise's docstring (docstring_rewrite.py). The kept ones stay candidates
(candidate.py) until then: their rows are made once, by ``Candidate.to_row``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from textbooklm.lazy_services import LazySandbox, LazyTeacher
from textbooklm.sandbox import Program
from textbooklm.store import Dataset
from textbooklm.synth.candidate import Candidate
from textbooklm.synth.config import ExercisesConfig
from textbooklm.synth.corpus_exercises import mine_candidates
from textbooklm.synth.docstring_rewrite import clean_reply, replace_docstring, rewrite_requests
from textbooklm.synth.exercise_verify import STAGE
from textbooklm.synth.rounds import TEACHER_ERROR, RoundStore, sample_id
from textbooklm.synth.seeds import derived_seed
from textbooklm.synth.separation import SeparationRun
from textbooklm.teacher import Request


def rewrite_docstrings(cands: list[Candidate], teacher: LazyTeacher, sandbox: LazySandbox,
                       cfg: ExercisesConfig, run_seed: int, k: int) -> None:
    """Ask the teacher for a new docstring of each kept mined candidate (docstring_rewrite.py); a usable one
    replaces the original when the exercise still passes its tests. Updates each candidate's row columns
    (prompt, text, id) and notes ``docstring_rewrite`` (the original prompt, or why it was kept)."""
    if not cands:
        return
    t = teacher.get()
    rows = [c.fields for c in cands]
    requests = [Request(messages=[{"role": "user", "content": p}], max_tokens=cfg.max_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p,
                        seed=derived_seed(STAGE, "docstring", run_seed, k, i) % 2**31)
                for i, p in enumerate(rewrite_requests(rows))]
    notes: list[dict[str, Any]] = []
    candidates: list[tuple[int, str]] = []
    for i, (r, req, res) in enumerate(zip(rows, requests, t.complete(requests), strict=True)):
        note: dict[str, Any] = {"request_key": t.key(req)}
        notes.append(note)
        if not res.ok:
            note["kept_original"] = f"{TEACHER_ERROR}: {res.error}"
            continue
        doc, why = clean_reply(res.text)
        new_prompt = replace_docstring(r["prompt"], r["completion"], r["entry_point"], doc) if doc else None
        if new_prompt is None:
            note["kept_original"] = why or "the docstring could not be replaced"
        else:
            candidates.append((i, new_prompt))
    programs = [Program(id=str(i), code=p + rows[i]["completion"], test=rows[i]["test"],
                        entry_point=rows[i]["entry_point"]) for i, p in candidates]
    for (i, new_prompt), v in zip(candidates, sandbox.run(programs), strict=True):
        r = rows[i]
        if v.passed:
            notes[i]["original_prompt"] = r["prompt"]
            r.update(prompt=new_prompt, text=new_prompt + r["completion"], id=sample_id(new_prompt + r["completion"]))
        else:
            notes[i]["kept_original"] = f"re-verification {v.status}: {v.error}"
    for c, note in zip(cands, notes, strict=True):
        c.notes["docstring_rewrite"] = note


def corpus_rounds(cfg: ExercisesConfig, corpus: Dataset | None, store: RoundStore, sandbox: LazySandbox,
                  run_seed: int, first: int, rounds: list[dict[str, Any]], teacher: LazyTeacher | None = None,
                  separation: SeparationRun | None = None) -> int:
    """Mine the filtered corpus one shard per round (rounds ``first``, ``first + 1``, ...) until
    ``corpus.count`` exercises are verified; returns the number of rounds in all. Marked rounds are
    read back, not re-run."""
    if corpus is None:
        raise ValueError("[exercises] source includes 'corpus', but the run has no filter stage: mining reads the "
                         "filtered corpus; add a [filter] section (and its corpus/judge/classify) or use "
                         "source = 'teacher'")
    mc = cfg.corpus
    kept = 0
    k = first
    for shard in corpus.shards():
        if kept >= mc.count:
            break
        result = store.done(k)
        if result is None:
            names = set(pq.read_schema(shard).names)
            if "text" not in names:
                raise ValueError(f"{shard}: the corpus to mine has no 'text' column (has {sorted(names)})")
            files = pq.read_table(shard, columns=[c for c in ("id", "text", "path") if c in names]).to_pylist()
            mined, rejected, result = mine_candidates(
                k, files, min_tests=cfg.min_tests, inputs_per_function=mc.inputs, per_call_s=mc.per_call_s,
                min_lines=mc.min_lines, max_lines=mc.max_lines, max_per_file=mc.max_per_file, sandbox=sandbox,
                seed=run_seed, stage=STAGE, separation=separation)
            if mc.rewrite_docstring and teacher is not None:
                rewrite_docstrings(mined, teacher, sandbox, cfg, run_seed, k)
            result["shard"] = shard.name
            store.write(k, [c.to_row() for c in mined], rejected, result)
        kept += result["kept"]
        rounds.append(result)
        k += 1
    return k


def corpus_totals(rounds: list[dict[str, Any]]) -> dict[str, int]:
    """Files, functions, candidates and tests over the corpus rounds (for the summary)."""
    tot: Counter[str] = Counter()
    for r in rounds:
        if r.get("source") == "corpus":
            tot.update(r["mining"])
            tot["tests"] += r["inputs"].get("tests", 0)
            tot["kept"] += r["kept"]
    return {k: tot[k] for k in ("files", "functions", "documented", "candidates", "tests", "kept")}
