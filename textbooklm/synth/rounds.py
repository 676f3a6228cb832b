"""What both synthesis stages share: rounds of teacher requests that resume, and the final write.

A stage asks for its samples in rounds of ``per_round`` prompts. Round ``k``:

1. plans its prompts from the seed sampler, given what rounds ``< k`` kept (re-weighting);
2. sends them through the teacher, whose SQLite cache commits each reply as it arrives;
3. checks the replies (parse, sandbox) and writes ``_work/rounds/part-k`` (candidates) and
   ``_work/rounds-rejected/part-k`` atomically, then its marker ``_work/markers/round-k.json``
   (the executor's contract: the marker is written last).

Killed anywhere, a re-run skips marked rounds, re-plans the interrupted round identically (same
seed, same marked rounds before it), finds the replies that had arrived in the cache, and sends only
the rest. Nothing is sent twice, nothing is lost, nothing is duplicated.

The final step reads every round's candidates, drops exact and near duplicates across rounds (into
``rejected``), and writes ``OUT/part-k`` and ``OUT/rejected/part-k``; it is recomputed from the
round files on every run, so it is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.record import content_id, with_provenance
from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.sandbox import Result as SandboxResult
from textbooklm.store import atomic_write_json, divert_unwritable, shard_name, write_table
from textbooklm.teacher import Teacher, build_teacher

TEACHER_ERROR = "teacher-error"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near-duplicate"


def sample_id(text: str) -> str:
    """The record id of a model-written sample: the one content id, with every whitespace run collapsed."""
    return content_id(text, collapse_whitespace=True)


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def mark_duplicate(row: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    """A kept row turned into a rejected one, the dedup decision added to its provenance."""
    return {**with_provenance(row, "synth", dedup={"decision": reason, "detail": detail}),
            "reason": reason, "detail": detail}


class LazyTeacher:
    """Builds the stage's teacher on first use: a re-run whose rounds are all done never loads a model."""

    def __init__(self, name: str, ctx: Any, out: Path, stage: str) -> None:
        self.cfg = ctx.teacher_config(name)  # an unknown name is an error listing the configured ones
        # The run's request cache, outside the stage folder: a stage re-run never re-sends a request.
        self.name, self.cache_dir, self.stage = name, ctx.owner.teacher_cache_dir, stage
        self._teacher: Teacher | None = None

    def get(self) -> Teacher:
        if self._teacher is None:
            self._teacher = build_teacher(self.cfg, self.cache_dir, stage=self.stage)
        return self._teacher

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "backend": self.cfg.backend, "model": self.cfg.model}

    def summary(self) -> str:
        return self._teacher.summary() if self._teacher is not None else "teacher not needed (all rounds cached)"

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.close()


class LazySandbox:
    """One warm sandbox pool for all rounds of a stage, started only if something has to run."""

    def __init__(self, limits: Limits, workers: int) -> None:
        self.limits = limits
        self.workers = workers or None
        self._pool: SandboxPool | None = None

    def run(self, programs: list[Program]) -> list[SandboxResult]:
        if not programs:
            return []
        if self._pool is None:
            self._pool = SandboxPool(self.limits, workers=self.workers)
            self._pool.__enter__()
        return self._pool.run(programs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.__exit__(None, None, None)
            self._pool = None


class RoundStore:
    """The round files and markers under ``OUT/_work``."""

    def __init__(self, out: Path, schema: pa.Schema, rejected_schema: pa.Schema) -> None:
        self.out = Path(out)
        self.work = self.out / "_work"
        self.schema, self.rejected_schema = schema, rejected_schema

    def marker(self, k: int) -> Path:
        return self.work / "markers" / f"round-{k:05d}.json"

    def done(self, k: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.marker(k).read_text())
        except FileNotFoundError:
            return None

    def write(self, k: int, kept: list[dict[str, Any]], rejected: list[dict[str, Any]], result: dict[str, Any]) -> None:
        n_kept = len(kept)
        kept, rejected = divert_unwritable(kept, rejected)  # a teacher's "\\ud800" rejects a record, not the run
        if len(kept) != n_kept and "kept" in result:
            result["kept"] = len(kept)
        write_table(self.work / "rounds" / shard_name(k), pa.Table.from_pylist(kept, schema=self.schema))
        write_table(self.work / "rounds-rejected" / shard_name(k),
                    pa.Table.from_pylist(rejected, schema=self.rejected_schema))
        atomic_write_json(self.marker(k), result)

    def read(self, k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kept = pq.read_table(self.work / "rounds" / shard_name(k)).to_pylist()
        rejected = pq.read_table(self.work / "rounds-rejected" / shard_name(k)).to_pylist()
        return kept, rejected

    def finish(self, n_rounds: int, text_of: Callable[[dict[str, Any]], str],
               near_dup: Callable[[list[str]], list[int]]) -> dict[str, Any]:
        """Cross-round exact + near dedup, then write OUT/part-k and OUT/rejected/part-k.

        ``near_dup(texts)`` gives each text's cluster root; a dropped row goes through
        :func:`mark_duplicate`.
        """
        mark = mark_duplicate
        per_round = [self.read(k) for k in range(n_rounds)]
        flat = [(k, row) for k, (kept, _) in enumerate(per_round) for row in kept]
        texts = [text_of(r) for _, r in flat]
        roots = near_dup(texts)
        first_by_id: dict[str, int] = {}
        decisions: list[tuple[str, str] | None] = []
        for i, (_, row) in enumerate(flat):
            j = first_by_id.setdefault(row["id"], i)
            if j != i:
                decisions.append((DUPLICATE, f"same text as {flat[j][1]['id']}"))
            elif roots[i] != i:
                decisions.append((NEAR_DUPLICATE, f"near duplicate of {flat[roots[i]][1]['id']}"))
            else:
                decisions.append(None)
        counts: Counter[str] = Counter()
        i = 0
        kept_total = 0
        for k, (kept, rejected) in enumerate(per_round):
            keep_rows, rej_rows = [], list(rejected)
            for row in kept:
                d = decisions[i]
                i += 1
                if d is None:
                    keep_rows.append(row)
                else:
                    rej_rows.append(mark(row, *d))
            counts.update(r["reason"] for r in rej_rows)
            kept_total += len(keep_rows)
            write_table(self.out / shard_name(k), pa.Table.from_pylist(keep_rows, schema=self.schema))
            write_table(self.out / "rejected" / shard_name(k),
                        pa.Table.from_pylist(rej_rows, schema=self.rejected_schema))
        return {"kept": kept_total, "rejected": sum(counts.values()), "rejected_by_reason": dict(counts.most_common())}


def reasons_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def load_excerpts(dataset: Any, n: int, chars: int, seed: int) -> list[dict[str, str]]:
    """Up to ``n`` excerpts of a corpus-like dataset (id, text, path), chosen by a seeded hash of the id.

    Each excerpt starts at a ``def``/``class`` line when the file has one (the code a textbook can
    teach from), and is cut at a line boundary to at most ``chars`` characters.
    """
    if dataset is None or not dataset.shards():
        return []
    ids = dataset.column("id")
    ranked = sorted(ids, key=lambda i: short_hash(f"{seed}:{i}"))[:n]
    chosen = set(ranked)
    out = []
    for rec in dataset.iter_records(columns=["id", "text", "path"]):
        if rec["id"] not in chosen:
            continue
        text = rec["text"] or ""
        lines = text.splitlines()
        starts = [i for i, ln in enumerate(lines) if re.match(r"^(def|class) ", ln)]
        begin = starts[int(short_hash(rec["id"]), 16) % len(starts)] if starts else 0
        excerpt, size = [], 0
        for ln in lines[begin:]:
            if size + len(ln) + 1 > chars:
                break
            excerpt.append(ln)
            size += len(ln) + 1
        if excerpt:
            out.append({"id": rec["id"], "path": rec.get("path") or "", "text": "\n".join(excerpt)})
    out.sort(key=lambda e: short_hash(f"{seed}:{e['id']}"))
    return out
