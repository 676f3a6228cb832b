"""The corpus stage: read every source, reject bad files, drop exact and near duplicates.

Three steps, each resumable after an interruption:

1. read (sharded, parallel): read units, decode, apply the quality filters, compute the content id
   and the MinHash signature. Writes ``_work/read/part-N`` and ``_work/read-rejected/part-N``.
2. decide (sharded on the executor, :mod:`textbooklm.corpus.dedup_shards`): exact duplicates by
   content id, near duplicates by LSH buckets hash-partitioned over workers + connected components;
   the first record of a cluster (in source order) is kept. Writes ``_work/dedup/decisions/part-N``.
   :func:`decide` below is the single-process reference it is tested equal to.
3. write (sharded, parallel): the kept records -> ``part-N`` with the dedup decision in provenance;
   every rejected record (read failures, filters, duplicates) -> ``rejected/part-N``.

Output: ``OUT/`` (kept: id, text, path, source, n_bytes, provenance) and ``OUT/rejected/`` (the same
plus reason and detail; nothing read is ever lost).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.corpus.config import CorpusConfig, DedupConfig, FilterConfig, SourceConfig
from textbooklm.corpus.dedup_shards import decide_sharded
from textbooklm.corpus.filters import decode, quality_reason
from textbooklm.corpus.readers import RawItem, plan_units, read_unit
from textbooklm.executor import resolve_workers
from textbooklm.ledger import ShardLedger
from textbooklm.minhash import MinHasher, clusters, duplicate_pairs
from textbooklm.progress import summary_line
from textbooklm.record import content_id, with_provenance
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, finish_dataset, shard_name, write_table
from textbooklm.unicode_text import describe_surrogate, escape_path, escape_surrogates, first_surrogate

RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("path", pa.string()),
        ("source", pa.string()),
        ("n_bytes", pa.int64()),
        ("provenance", pa.string()),
    ]
)
READ_SCHEMA = RECORD_SCHEMA.append(pa.field("signature", pa.binary()))
REJECTED_SCHEMA = RECORD_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string()))
DECISION_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("row", pa.int64()),
        ("decision", pa.string()),  # keep | exact-duplicate | near-duplicate
        ("cluster", pa.string()),  # id of the record kept for this cluster
        ("cluster_size", pa.int64()),
        ("similarity", pa.float64()),  # estimated Jaccard to the kept record
        ("duplicate_of", pa.string()),  # path of the kept record
    ]
)


# -- planning ----------------------------------------------------------------------------------
def plan_tasks(cfg: CorpusConfig, work: Path) -> list[dict[str, Any]]:
    """Split every source's units into shards of ``files_per_shard`` units, in source order."""
    tasks: list[dict[str, Any]] = []
    for source in cfg.sources:
        units = plan_units(source)
        for start in range(0, len(units), cfg.files_per_shard):
            tasks.append(
                {
                    "key": shard_name(len(tasks)),
                    "source": source.model_dump(mode="json"),
                    "units": units[start : start + cfg.files_per_shard],
                    "filters": cfg.filters.model_dump(mode="json"),
                    "dedup": cfg.dedup.model_dump(mode="json"),
                    "work": str(work),
                }
            )
    return tasks


# -- step 1: read --------------------------------------------------------------------------------
def storable_path(path: str) -> tuple[str, dict[str, Any]]:
    """A path Parquet can store, plus provenance keys saying how it was escaped (none when valid UTF-8).

    A non-UTF-8 file name keeps each bad byte as ``\\xNN`` and its exact bytes in ``path_bytes_hex``.
    """
    escaped, raw_hex = escape_path(path)
    if raw_hex is None:
        return path, {}
    return escaped, {"path_escaped": "backslashreplace", "path_bytes_hex": raw_hex}


def unicode_problem(text: str) -> tuple[str, str] | None:
    """``("invalid-unicode", detail)`` for a text holding a lone surrogate (no UTF-8 writer takes it)."""
    if first_surrogate(text) is None:
        return None
    return "invalid-unicode", f"{describe_surrogate(text)}; stored here with surrogates escaped as \\udXXX"


def _rejected_row(item: RawItem, source: str, reason: str, detail: str, text: str | None,
                  path_prov: dict[str, Any] | None = None) -> dict[str, Any]:
    text = escape_surrogates(text) if text is not None else None
    basis = text if text is not None else f"{source}\x00{item.path}"
    return {
        "id": content_id(basis),
        "text": text,
        "path": item.path,
        "source": source,
        "n_bytes": item.n_bytes,
        "provenance": json.dumps({"corpus": {"reason": reason, **(path_prov or {})}}),
        "reason": reason,
        "detail": detail,
    }


def read_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: read, decode, filter and sign one shard of units."""
    source = SourceConfig.model_validate(task["source"])
    filters = FilterConfig.model_validate(task["filters"])
    dedup = DedupConfig.model_validate(task["dedup"])
    hasher = MinHasher(dedup.num_perm, dedup.ngram, dedup.seed) if dedup.near else None
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    read = 0
    label = escape_surrogates(source.label)
    for unit in task["units"]:
        for item in read_unit(unit, source, filters.max_bytes):
            read += 1
            item.path, path_prov = storable_path(item.path)
            item.detail = escape_surrogates(item.detail)
            if item.error:
                text = item.data if isinstance(item.data, str) else None
                rejected.append(_rejected_row(item, label, item.error, item.detail, text, path_prov))
                continue
            raw = None  # the text's UTF-8 bytes, when read as bytes: filters and signing reuse them
            if isinstance(item.data, bytes):  # strict UTF-8 decoding already refuses encoded surrogates
                text, reason, detail = decode(item.data)
                raw = item.data if reason is None else None
            else:  # a JSON record's text may hold "\ud800"
                text = item.data or ""
                reason, detail = unicode_problem(text) or (None, "")
            if reason is None:
                reason, detail = quality_reason(text or "", filters, raw)
            if reason is not None:
                rejected.append(_rejected_row(item, label, reason, detail, text, path_prov))
                continue
            kept.append(
                {
                    "id": content_id(text),
                    "text": text,
                    "path": item.path,
                    "source": label,
                    "n_bytes": item.n_bytes,
                    "provenance": json.dumps({"corpus": {"source": label, "path": item.path, **path_prov}}),
                    "signature": hasher.signature(text, raw).tobytes() if hasher else b"",
                }
            )
    work = Path(task["work"])
    write_table(work / "read" / task["key"], pa.Table.from_pylist(kept, schema=READ_SCHEMA))
    write_table(work / "read-rejected" / task["key"], pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    return {"read": read, "kept": len(kept), "rejected": dict(Counter(r["reason"] for r in rejected))}


# -- step 2: decide --------------------------------------------------------------------------------
def decide(tasks: list[dict[str, Any]], dedup: DedupConfig, work: Path) -> pa.Table:
    """Exact then near dedup over all read shards; the first record of a group (in order) is kept."""
    shards, rows, ids, paths, sigs = [], [], [], [], []
    for task in tasks:
        table = pq.read_table(work / "read" / task["key"], columns=["id", "path", "signature"])
        n = table.num_rows
        shards += [task["key"]] * n
        rows += range(n)
        ids += table.column("id").to_pylist()
        paths += table.column("path").to_pylist()
        sigs += table.column("signature").to_pylist()
    n = len(ids)
    decision = ["keep"] * n
    cluster = list(ids)
    size = [1] * n
    similarity = [1.0] * n
    dup_of: list[str | None] = [None] * n

    first: dict[str, int] = {}
    unique: list[int] = []
    for i, rid in enumerate(ids):
        j = first.setdefault(rid, i)
        if j != i and dedup.exact:
            decision[i], dup_of[i] = "exact-duplicate", paths[j]
            size[j] += 1
        else:
            unique.append(i)

    if dedup.near and len(unique) > 1:
        matrix = np.stack([np.frombuffer(sigs[i], dtype=np.uint32) for i in unique])
        pairs = duplicate_pairs(matrix, dedup.bands, dedup.threshold)
        roots = clusters(len(unique), pairs)
        members = Counter(roots.tolist())
        for local, root in enumerate(roots.tolist()):
            i, r = unique[local], unique[root]
            if members[root] > 1:
                cluster[i] = ids[r]
                size[i] = members[root]
            if local != root:
                decision[i], dup_of[i] = "near-duplicate", paths[r]
                similarity[i] = float(np.mean(matrix[local] == matrix[root]))
    table = pa.Table.from_pydict(
        {
            "shard": shards, "row": rows, "decision": decision, "cluster": cluster,
            "cluster_size": size, "similarity": similarity, "duplicate_of": dup_of,
        },
        schema=DECISION_SCHEMA,
    )
    write_table(work / "decisions.parquet", table)
    return table


# -- step 3: write ---------------------------------------------------------------------------------
def write_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: split one read shard into kept and rejected by the decisions."""
    work = Path(task["work"])
    out = Path(task["out"])
    read = pq.read_table(work / "read" / task["key"])
    decisions = pq.read_table(work / "dedup" / "decisions" / task["key"]).sort_by("row")
    ledger = ShardLedger(str(out), task["key"], REJECTED_SCHEMA)
    for row in pq.read_table(work / "read-rejected" / task["key"]).to_pylist():  # step 1's verdicts
        ledger.drop(row, row["reason"], row["detail"])
    kept = []
    for rec, dec in zip(read.drop_columns(["signature"]).to_pylist(), decisions.to_pylist(), strict=True):
        rec = with_provenance(rec, "corpus", cluster=dec["cluster"], cluster_size=dec["cluster_size"],
                              decision=dec["decision"])
        if dec["decision"] == "keep":
            kept.append(rec)
            continue
        rec = with_provenance(rec, "corpus", similarity=round(dec["similarity"], 4), duplicate_of=dec["duplicate_of"])
        detail = f"duplicate of {dec['duplicate_of']}"
        if dec["decision"] == "near-duplicate":
            detail += f" (estimated Jaccard {dec['similarity']:.2f})"
        ledger.drop(rec, dec["decision"], detail)
    ledger.keep(len(kept))
    ledger.count("kept_bytes", sum(r["n_bytes"] for r in kept))
    write_table(out / task["key"], pa.Table.from_pylist(kept, schema=RECORD_SCHEMA))
    return ledger.close()


# -- the stage -------------------------------------------------------------------------------------
def run(cfg: CorpusConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the corpus stage into ``out`` (resuming whatever an interrupted run finished)."""
    out = Path(out)
    work = out / "_work"
    tasks = plan_tasks(cfg, work)
    read_results = ctx.map(read_shard, tasks, work / "markers" / "read", description="corpus: read")

    # The decide step as sharded work on the same executor (same decisions as decide(), bounded memory).
    read_sizes = [(t["key"], int(read_results[t["key"]]["kept"])) for t in tasks]
    dedup = decide_sharded(read_sizes, cfg.dedup, work, ctx.map, min_partitions=resolve_workers(ctx.workers))

    write_tasks = [{"key": t["key"], "work": str(work), "out": str(out)} for t in tasks]
    ctx.map(write_shard, write_tasks, work / "markers" / "write", description="corpus: write")

    ledger = ctx.ledger("files read", REJECTED_SCHEMA)
    summary = _summary(ledger.totals(), read_results, dedup["near_clusters"])
    summary = ledger.finish(tail=summary.pop("tail"), **summary)
    ds = finish_dataset(out, stage="corpus", config_hash=ctx.config_hash, summary=summary)
    summary_line(summary["line"])
    return ds


def _summary(totals: dict[str, Any], read_results: dict, n_clusters: int) -> dict[str, Any]:
    """The corpus's own fields beside the ledger's counts (duplicates apart from the other reasons)."""
    read = sum(r["read"] for r in read_results.values())
    if read != totals["in"]:
        raise RuntimeError(f"corpus: {read} files read but the ledger decided about {totals['in']}")
    reasons = dict(totals["dropped_by_reason"])
    exact = reasons.pop("exact-duplicate", 0)
    near = reasons.pop("near-duplicate", 0)
    return {
        "tail": f"{exact:,} exact and {near:,} near duplicates in {n_clusters:,} clusters",
        "read": read, "kept": totals["kept"], "exact_duplicates": exact, "near_duplicates": near,
        "near_clusters": n_clusters, "rejected": sum(reasons.values()), "rejected_by_reason": reasons,
        "kept_bytes": totals["counters"].get("kept_bytes", 0),
    }
