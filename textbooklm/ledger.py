"""One ledger of what a stage decided: kept, or dropped with a reason, plus named counters.

Why one: before it, every stage built its rejected rows, its summary line and its counts by hand,
and ``status``, ``run.json`` and the report re-derived them, so the same stage could say "1,700 in"
in one place and "469 asked" in another. Now a stage records verdicts, and everything else derives:

* ``RUN/<stage>/rejected/`` holds every dropped row with its ``reason`` and ``detail``;
* the summary's ``counts`` ({in, kept, dropped, in_means, dropped_by_reason, counters}) and its
  one-line ``line`` come from :meth:`StageLedger.finish`;
* ``stage_stats`` (hence ``status``, ``run.json`` and the report's funnel) reads those counts and
  checks them against the rejected dataset's rows.

``in`` is always ``kept + dropped``; what one "in" is (a file, a record checked, a request asked)
is said once per stage as ``in_means``.

Work is sharded: a stage hands each worker a :class:`ShardLedger` (a small picklable value, so it
crosses to a process pool or a Ray node), the worker records its shard's verdicts and
:meth:`ShardLedger.close` writes ``rejected/<key>`` and then ``_ledger/<key>.json``. A shard re-run
after a kill overwrites both under the same key, so a resumed stage counts nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from textbooklm.store import atomic_write_json, finish_dataset, write_table

LEDGER_DIR = "_ledger"
REJECTED_DIR = "rejected"


def _with_verdict_fields(schema: pa.Schema) -> pa.Schema:
    """``schema`` with ``reason`` and ``detail`` (string) at the end, where it lacks them."""
    for name in ("reason", "detail"):
        if schema.get_field_index(name) < 0:
            schema = schema.append(pa.field(name, pa.string()))
    return schema


@dataclass
class ShardLedger:
    """The verdicts of one shard of a stage's work, recorded wherever that shard runs.

    ``schema`` is the rejected rows' Arrow schema (``reason`` and ``detail`` are added if missing);
    without one, rows are written with an inferred schema.
    """

    stage_dir: str
    key: str
    schema: pa.Schema | None = None
    kept: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int | float] = field(default_factory=dict)

    def keep(self, n: int = 1) -> None:
        """``n`` inputs were kept."""
        self.kept += int(n)

    def drop(self, row: dict[str, Any], reason: str, detail: str = "") -> None:
        """One input was dropped: ``row`` is kept in ``rejected/`` with why."""
        if not reason:
            raise ValueError(f"{self.stage_dir}: a dropped row needs a reason (shard {self.key})")
        self.dropped.append({**row, "reason": reason, "detail": detail or ""})

    def count(self, name: str, n: int | float = 1) -> None:
        """Add ``n`` to a named counter (tokens, bytes, requests...): summed over shards."""
        self.counters[name] = self.counters.get(name, 0) + n

    @property
    def n_in(self) -> int:
        return self.kept + len(self.dropped)

    def tallies(self) -> dict[str, Any]:
        reasons = Counter(str(r["reason"]) for r in self.dropped)
        return {"key": self.key, "kept": self.kept, "dropped": len(self.dropped),
                "dropped_by_reason": dict(reasons.most_common()), "counters": dict(self.counters)}

    def close(self) -> dict[str, Any]:
        """Write this shard's rejected rows, then its tallies (last: their presence means both are there)."""
        folder = Path(self.stage_dir)
        schema = _with_verdict_fields(self.schema) if self.schema is not None else None
        if schema is not None:
            table = pa.Table.from_pylist(self.dropped, schema=schema)
        else:
            table = pa.Table.from_pylist(self.dropped) if self.dropped else pa.table(
                {"reason": pa.array([], pa.string()), "detail": pa.array([], pa.string())})
        write_table(folder / REJECTED_DIR / self.key, table)
        tallies = self.tallies()
        atomic_write_json(folder / LEDGER_DIR / f"{self.key}.json", tallies)
        return tallies


def sum_tallies(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add shard tallies: kept, dropped, dropped by reason (most first), counters."""
    reasons: Counter[str] = Counter()
    counters: dict[str, int | float] = {}
    kept = dropped = 0
    for p in parts:
        kept += int(p.get("kept", 0))
        dropped += int(p.get("dropped", 0))
        reasons.update({str(k): int(v) for k, v in (p.get("dropped_by_reason") or {}).items()})
        for k, v in (p.get("counters") or {}).items():
            counters[k] = counters.get(k, 0) + v
    return {"kept": kept, "dropped": dropped, "dropped_by_reason": dict(reasons.most_common()),
            "counters": counters}


@dataclass
class StageLedger:
    """The ledger of one stage run (``ctx.ledger(...)``): hands out shard ledgers, sums them, finishes.

    ``in_means`` says what one input of this stage is ("files read", "records checked"...), once.
    """

    stage: str
    folder: Path
    in_means: str = "records"
    schema: pa.Schema | None = None
    config_hash: str = ""

    def shard(self, key: str) -> ShardLedger:
        """A fresh shard ledger (a re-run shard starts from nothing and overwrites its files)."""
        return ShardLedger(str(self.folder), key, self.schema)

    def parts(self) -> list[dict[str, Any]]:
        """Every closed shard's tallies, in key order."""
        folder = self.folder / LEDGER_DIR
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def forget(self, keys_to_keep: set[str]) -> None:
        """Remove the tallies and rejected shards of keys no longer part of the work (a re-plan)."""
        for p in sorted((self.folder / LEDGER_DIR).glob("*.json")) if (self.folder / LEDGER_DIR).is_dir() else []:
            if p.stem not in keys_to_keep:
                p.unlink()
                (self.folder / REJECTED_DIR / p.stem).unlink(missing_ok=True)

    def totals(self) -> dict[str, Any]:
        """in / kept / dropped / by reason / counters over all closed shards."""
        t = sum_tallies(self.parts())
        return {"in": t["kept"] + t["dropped"], **t, "in_means": self.in_means}

    def finish(self, *, tail: str = "", parents: tuple[str | Path, ...] = (), **summary: Any) -> dict[str, Any]:
        """Finish ``rejected/`` and return the stage summary: ``counts``, ``line`` and ``summary``'s fields.

        The line reads ``stage: IN in_means -> KEPT kept, DROPPED dropped (reason n, ...)`` and then
        ``tail`` (the stage's own few words: clusters found, tokens written...); a stage that decided
        about no input this time (pretrain reads a pack and drops nothing) reads ``stage: tail``, since
        "0 in -> 0 kept" would say nothing. The caller writes the
        summary into its dataset's manifest (``finish_dataset(..., summary=...)``), which the pipeline
        records; it also prints the line.
        """
        counts = self.totals()
        reasons = counts["dropped_by_reason"]
        why = f" ({', '.join(f'{k} {v:,}' for k, v in reasons.items())})" if reasons else ""
        line = (f"{self.stage}: {counts['in']:,} {self.in_means} -> {counts['kept']:,} kept, "
                f"{counts['dropped']:,} dropped{why}")
        if tail:
            line = f"{self.stage}: {tail}" if counts["in"] == 0 else f"{line}; {tail}"
        out = {**summary, "counts": counts, "line": line}
        finish_dataset(self.folder / REJECTED_DIR, stage=f"{self.stage}.rejected", config_hash=self.config_hash,
                       parents=parents, summary=out)
        return out
