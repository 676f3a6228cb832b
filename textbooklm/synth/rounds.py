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
their texts), drops exact and near duplicates across rounds, writes ``OUT/part-k`` and records
round k as the stage ledger's shard ``part-k`` (``OUT/rejected/part-k`` and its tallies: ledger.py),
measuring the kept set's diversity on the way (distinct.py); it is recomputed from the round files
on every run, so it is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.ledger import StageLedger
from textbooklm.record import content_id, with_provenance
from textbooklm.store import atomic_write_json, divert_unwritable, shard_name, write_table
from textbooklm.synth.distinct import DatasetDiversity
from textbooklm.synth.near_dups import first_occurrences, near_duplicate_roots_streaming

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


class RoundStore:
    """The round files and markers under ``OUT/_work``."""

    def __init__(self, out: Path, schema: pa.Schema, rejected_schema: pa.Schema) -> None:
        self.out = Path(out)
        self.work = self.out / "_work"
        self.schema, self.rejected_schema = schema, rejected_schema

    @property
    def markers(self) -> Path:
        return self.work / "markers"

    @staticmethod
    def round_key(k: int) -> str:
        """Round k's marker name (an executor task checking round k has this key)."""
        return f"round-{k:05d}"

    def marker(self, k: int) -> Path:
        return self.markers / f"{self.round_key(k)}.json"

    def done(self, k: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.marker(k).read_text())
        except FileNotFoundError:
            return None

    def write(self, k: int, kept: list[dict[str, Any]], rejected: list[dict[str, Any]], result: dict[str, Any]) -> None:
        """Round k's files, then its marker (``result``) last."""
        atomic_write_json(self.marker(k), self.write_parts(k, kept, rejected, result))

    def write_parts(self, k: int, kept: list[dict[str, Any]], rejected: list[dict[str, Any]],
                    result: dict[str, Any]) -> dict[str, Any]:
        """Round k's candidate and rejected files, not its marker; returns the marker to write (``result``, its
        ``kept`` corrected for rows diverted as unwritable). An executor worker checking a round calls this
        and returns the marker, which the executor writes last (executor.py's contract)."""
        n_kept = len(kept)
        kept, rejected = divert_unwritable(kept, rejected)  # a teacher's "\\ud800" rejects a record, not the run
        if len(kept) != n_kept and "kept" in result:
            result["kept"] = len(kept)
        write_table(self.work / "rounds" / shard_name(k), pa.Table.from_pylist(kept, schema=self.schema))
        write_table(self.work / "rounds-rejected" / shard_name(k),
                    pa.Table.from_pylist(rejected, schema=self.rejected_schema))
        return result

    def read(self, k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kept = pq.read_table(self.work / "rounds" / shard_name(k)).to_pylist()
        rejected = pq.read_table(self.work / "rounds-rejected" / shard_name(k)).to_pylist()
        return kept, rejected

    def read_column(self, k: int, column: str) -> list[Any]:
        """One column of round ``k``'s candidates (the finish reads texts round by round)."""
        return pq.read_table(self.work / "rounds" / shard_name(k), columns=[column]).column(column).to_pylist()

    def finish(self, n_rounds: int, diversity: Any, ledger: StageLedger | None = None,
               text_column: str = "text") -> dict[str, Any]:
        """Cross-round exact + near dedup, then write OUT/part-k and the ledger's round k, round by round.

        Memory does not grow with the rounds' texts (near_dups.py): ids and LSH band keys per sample,
        then one round's rows at a time. ``diversity`` is the stage's DiversityConfig: its MinHash
        settings decide near duplicates (dropped when ``drop_near_duplicates``; counted either way),
        and the overall diversity of what is kept is measured on the way (distinct.py) and returned
        under ``"diversity"``. A dropped row goes through :func:`mark_duplicate`.

        Round k is the ledger's shard ``part-k`` (``ledger.py``): its verdicts are recorded only here,
        once the cross-round dedup has decided, so ``rejected/part-k`` and its tallies hold every row
        of the round (checks and dedup) and in = kept + dropped. Recomputed from the round files on
        every run, so a re-run after a kill overwrites the same keys. Returns kept / rejected / by
        reason from the ledger's totals.
        """
        d = diversity
        ledger = ledger if ledger is not None else StageLedger("synth", self.out, schema=self.rejected_schema)
        if Path(ledger.folder) != self.out:
            raise ValueError(f"the ledger writes {ledger.folder}, but the rounds finish into {self.out}")
        ledger.forget({shard_name(k) for k in range(n_rounds)})  # a re-planned stage's rounds beyond its count

        def texts_by_round():
            for k in range(n_rounds):
                yield [t or "" for t in self.read_column(k, text_column)]

        roots = near_duplicate_roots_streaming(texts_by_round, d.ngram, d.num_perm, d.bands, d.threshold)
        # Exact duplicates from 64-bit id hashes (16 bytes a sample, near_dups.py), not a dict of every id.
        first_of = first_occurrences(lambda: (self.read_column(k, "id") for k in range(n_rounds)))
        ids_by_index: dict[int, str] = {}  # only the cluster roots that a near duplicate names
        wanted_roots = set(np.unique(roots[roots != np.arange(len(roots))]).tolist())
        index = 0
        for k in range(n_rounds):
            for rid in self.read_column(k, "id"):
                if index in wanted_roots:
                    ids_by_index[index] = rid
                index += 1
        overall = DatasetDiversity(d.openings_words)
        candidates = near_found = 0
        index = 0
        for k in range(n_rounds):
            kept, rejected = self.read(k)
            part = ledger.shard(shard_name(k))
            for row in rejected:
                part.drop(row, row["reason"], row["detail"])
            keep_rows = []
            for row in kept:
                i, index = index, index + 1
                candidates += 1
                root = int(roots[i])
                if int(first_of[i]) != i:
                    part.drop(mark_duplicate(row, DUPLICATE, f"same text as {row['id']}"), DUPLICATE,
                              f"same text as {row['id']}")
                    continue
                if root != i:
                    near_found += 1
                    if d.drop_near_duplicates:
                        why = f"near duplicate of {ids_by_index[root]}"
                        part.drop(mark_duplicate(row, NEAR_DUPLICATE, why), NEAR_DUPLICATE, why)
                        continue
                keep_rows.append(row)
                overall.add(row.get(text_column) or "")
            write_table(self.out / shard_name(k), pa.Table.from_pylist(keep_rows, schema=self.schema))
            part.keep(len(keep_rows))
            part.close()
        totals = ledger.totals()
        return {"kept": totals["kept"], "rejected": totals["dropped"],
                "rejected_by_reason": totals["dropped_by_reason"], "diversity": overall.report(near_found, candidates)}


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
