"""Per-stage statistics in one shape: records in, kept, dropped (by reason), tokens, seconds.

``status``, ``run.json`` and the report's funnel all read this shape, so they cannot disagree about
what a stage kept. Counts come from what the stage wrote: its output Dataset (or, for the cleaning
stage, its cleaned copies; its own folder holds match rows, not kept records) and ``rejected/``,
unless the stage's summary states ``counts`` ({"in", "kept", "dropped", "in_means"}) itself, which
then win (and must add up): what "in" means is the stage's to define, once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from textbooklm import registry
from textbooklm.store import Dataset


def reason_counts(rejected: Dataset) -> dict[str, int]:
    """Rejected rows per ``reason`` (reads only that column)."""
    counts: Counter[str] = Counter()
    if not rejected.is_finished:
        return {}
    for shard in rejected.shards():
        if "reason" in pq.read_schema(shard).names:  # not the texts: they held a run's parent at 1.5x its size
            table = pq.ParquetFile(shard).read(columns=["reason"])
            counts.update(str(r) for r in table.column("reason").to_pylist())
    return dict(counts.most_common())


def stage_stats(name: str, folder: Path, summary: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """The stats of a finished stage folder (None where a count does not apply)."""
    folder = Path(folder)
    try:
        spec = registry.get(name)
    except KeyError:
        spec = None
    kept: int | None = None
    if spec is not None and not spec.records:
        pass  # a small table about an artefact: its row count is not records kept
    elif spec is not None and spec.cleans:
        copies = [Dataset(p) for p in sorted(folder.iterdir()) if p.is_dir() and p.name != "rejected"
                  and Dataset(p).is_finished] if folder.is_dir() else []
        kept = sum(c.num_rows for c in copies) if copies else None
    elif Dataset(folder).is_finished:
        kept = Dataset(folder).num_rows
    rejected = Dataset(folder / "rejected")
    dropped = rejected.num_rows if rejected.is_finished else None
    by_reason = reason_counts(rejected) if dropped else {}
    total = kept + dropped if kept is not None and dropped is not None else None
    tokens = summary.get("tokens") if isinstance(summary.get("tokens"), int) else None
    in_means = "records"
    counts = summary.get("counts")
    counters: dict[str, Any] = {}
    if isinstance(counts, dict) and all(isinstance(counts.get(k), int) for k in ("in", "kept", "dropped")):
        # The stage said what it decided about, in its own terms (decontam: the records it checked, not
        # the held-out exercises it passes through unchecked); in = kept + dropped always holds.
        if counts["in"] != counts["kept"] + counts["dropped"]:
            raise ValueError(f"{name}: its summary counts say in {counts['in']} != kept {counts['kept']} + "
                             f"dropped {counts['dropped']}")
        total, kept, dropped = counts["in"], counts["kept"], counts["dropped"]
        in_means = str(counts.get("in_means") or in_means)
        if isinstance(counts.get("dropped_by_reason"), dict):  # a ledger's counts (ledger.py): check them
            by_reason = dict(counts["dropped_by_reason"])
            counters = dict(counts.get("counters") or {})
            if rejected.is_finished and rejected.num_rows != dropped:
                raise ValueError(f"{name}: its ledger says {dropped} dropped but rejected/ holds "
                                 f"{rejected.num_rows} rows")
            if sum(by_reason.values()) != dropped:
                raise ValueError(f"{name}: its ledger's reasons add up to {sum(by_reason.values())}, not {dropped}")
            if tokens is None and isinstance(counters.get("tokens"), int):
                tokens = counters["tokens"]
    return {"in": total, "kept": kept, "dropped": dropped, "dropped_by_reason": by_reason, "tokens": tokens,
            "in_means": in_means,
            "counters": counters, "seconds": None if seconds is None else round(float(seconds), 3)}
