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

The final step reads the rounds' candidates round by round (near_dups.py: memory does not grow with
their texts), drops exact and near duplicates across rounds (into ``rejected``), writes
``OUT/part-k`` and ``OUT/rejected/part-k`` and measures the kept set's diversity on the way
(distinct.py); it is recomputed from the round files on every run, so it is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.record import content_id, with_provenance
from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.sandbox import Result as SandboxResult
from textbooklm.store import atomic_write_json, divert_unwritable, shard_name, write_table
from textbooklm.synth.distinct import DatasetDiversity
from textbooklm.synth.near_dups import near_duplicate_roots_streaming
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
        # The rounds driver asks for round k+1 on its thread while round k's check may ask too
        # (extra solutions): one call at a time on the teacher's event loop.
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()

    def get(self) -> Teacher:
        """The teacher, built once. Not under the call lock once built: a check reading keys must not
        wait for the next round's requests that the driver's thread is sending."""
        teacher = self._teacher
        if teacher is not None:
            return teacher
        with self._build_lock:
            if self._teacher is None:
                self._teacher = build_teacher(self.cfg, self.cache_dir, stage=self.stage)
            return self._teacher

    def complete(self, requests: list[Any]) -> list[Any]:
        """``Teacher.complete``, one caller at a time (thread-safe)."""
        with self._lock:
            return self.get().complete(requests)

    def key(self, request: Any) -> str:
        """The request's cache key (``Teacher.key``)."""
        return self.get().key(request)

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

    def read_column(self, k: int, column: str) -> list[Any]:
        """One column of round ``k``'s candidates (the finish reads texts round by round)."""
        return pq.read_table(self.work / "rounds" / shard_name(k), columns=[column]).column(column).to_pylist()

    def finish(self, n_rounds: int, diversity: Any, text_column: str = "text") -> dict[str, Any]:
        """Cross-round exact + near dedup, then write OUT/part-k and OUT/rejected/part-k, round by round.

        Memory does not grow with the rounds' texts (near_dups.py): ids and LSH band keys per sample,
        then one round's rows at a time. ``diversity`` is the stage's DiversityConfig: its MinHash
        settings decide near duplicates (dropped when ``drop_near_duplicates``; counted either way),
        and the overall diversity of what is kept is measured on the way (distinct.py) and returned
        under ``"diversity"``. A dropped row goes through :func:`mark_duplicate`.
        """
        d = diversity

        def texts_by_round():
            for k in range(n_rounds):
                yield [t or "" for t in self.read_column(k, text_column)]

        roots = near_duplicate_roots_streaming(texts_by_round, d.ngram, d.num_perm, d.bands, d.threshold)
        first_by_id: dict[str, tuple[int, str]] = {}
        ids_by_index: dict[int, str] = {}  # only the cluster roots that a near duplicate names
        wanted_roots = {int(r) for i, r in enumerate(roots.tolist()) if r != i}
        index = 0
        for k in range(n_rounds):
            for rid in self.read_column(k, "id"):
                first_by_id.setdefault(rid, (index, rid))
                if index in wanted_roots:
                    ids_by_index[index] = rid
                index += 1
        counts: Counter[str] = Counter()
        overall = DatasetDiversity(d.openings_words)
        kept_total = candidates = near_found = 0
        index = 0
        for k in range(n_rounds):
            kept, rejected = self.read(k)
            keep_rows, rej_rows = [], list(rejected)
            for row in kept:
                i, index = index, index + 1
                candidates += 1
                first = first_by_id[row["id"]][0]
                root = int(roots[i])
                if first != i:
                    rej_rows.append(mark_duplicate(row, DUPLICATE, f"same text as {row['id']}"))
                    continue
                if root != i:
                    near_found += 1
                    if d.drop_near_duplicates:
                        rej_rows.append(mark_duplicate(row, NEAR_DUPLICATE, f"near duplicate of {ids_by_index[root]}"))
                        continue
                keep_rows.append(row)
                overall.add(row.get(text_column) or "")
            counts.update(r["reason"] for r in rej_rows)
            kept_total += len(keep_rows)
            write_table(self.out / shard_name(k), pa.Table.from_pylist(keep_rows, schema=self.schema))
            write_table(self.out / "rejected" / shard_name(k),
                        pa.Table.from_pylist(rej_rows, schema=self.rejected_schema))
        return {"kept": kept_total, "rejected": sum(counts.values()), "rejected_by_reason": dict(counts.most_common()),
                "diversity": overall.report(near_found, candidates)}


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
