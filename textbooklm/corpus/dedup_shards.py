"""The corpus stage's dedup decision as sharded work on the executor (datatrove's MinHash stages 2-3).

The single-process decide (:func:`textbooklm.corpus.stage.decide`) holds every signature of the corpus
in one process (20M files x 128 permutations x 4 bytes = 10 GB before its LSH tables). Here no worker
holds more than one read shard or one hash partition, and the parent holds only the duplicate edges:

1. ``ids`` (per read shard): each record's (content id, global index, path) goes to id partition
   ``crc32(id) % P``.
2. ``exact`` (per id partition): records sharing an id; the first in source order is kept, the others
   are exact duplicates of it. Written sorted by global index.
3. ``bands`` (per read shard): every record that is not an exact duplicate emits, per LSH band, its
   band key (the same key as :func:`textbooklm.minhash.candidate_pairs`) with its index and signature,
   to bucket partition ``key % P``.
4. ``pairs`` (per bucket partition): the records of each (band, key) bucket become candidate pairs
   exactly as the single-process banding makes them (every pair; a star to the first member above
   ``max_bucket``); a pair is a duplicate edge when its signatures agree on at least ``threshold``.
5. ``components`` (parent, second pass): connected components of all edges; root = the component's
   first record in source order, with its id, path and signature (each read shard read at most once).
   Memory grows with the number of near duplicates, not the corpus.
6. ``decisions`` (per read shard): the shard's rows with their exact/near decision, cluster, size and
   estimated Jaccard to the kept record; it reads only its own shard and the index ranges it needs.

Every map step is resumable through the executor's shard markers; step 5 writes one file atomically.
``P`` (partitions) grows with the corpus so a partition stays near ``rows_per_partition`` band rows:
memory per worker stays flat as the corpus grows (below that, it grows to that bound). The decisions
equal the single-process decide's (tested on the stdlib).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from textbooklm.corpus.config import DedupConfig
from textbooklm.minhash import band_keys
from textbooklm.store import write_table

# Same columns as stage.DECISION_SCHEMA (kept here too so this module does not import the stage).
DECISION_SCHEMA = pa.schema(
    [
        ("shard", pa.string()), ("row", pa.int64()), ("decision", pa.string()), ("cluster", pa.string()),
        ("cluster_size", pa.int64()), ("similarity", pa.float64()), ("duplicate_of", pa.string()),
    ]
)
IDS_SCHEMA = pa.schema([("id", pa.string()), ("gidx", pa.int64()), ("path", pa.string())])
EXACT_SCHEMA = pa.schema(
    [("gidx", pa.int64()), ("first", pa.int64()), ("size", pa.int64()), ("first_path", pa.string())]
)
BANDS_SCHEMA = pa.schema([("band", pa.int32()), ("key", pa.uint64()), ("gidx", pa.int64()),
                          ("signature", pa.binary())])
EDGES_SCHEMA = pa.schema([("i", pa.int64()), ("j", pa.int64())])
COMPONENTS_SCHEMA = pa.schema([("gidx", pa.int64()), ("root", pa.int64()), ("size", pa.int64()),
                               ("root_id", pa.string()), ("root_path", pa.string()), ("root_signature", pa.binary())])
ROW_GROUP = 65_536  # rows per row group of the files read by global-index range (statistics skip the rest)
ROWS_PER_PARTITION = 2_000_000  # band rows a pairs worker sorts (~36 bytes each: ~70 MB plus the candidates)
MAX_BUCKET = 2000  # as candidate_pairs: larger buckets are linked as a star

MapFn = Callable[..., dict[str, dict[str, Any]]]


def partitions_for(n_records: int, bands: int, rows_per_partition: int = ROWS_PER_PARTITION) -> int:
    """Hash partitions for a corpus of ``n_records``: enough that one holds ~``rows_per_partition`` band rows."""
    return max(1, math.ceil(n_records * bands / rows_per_partition))


def _part_name(p: int) -> str:
    return f"p-{p:05d}"


def _shard_range(task: dict[str, Any]) -> tuple[int, int]:
    return int(task["offset"]), int(task["offset"]) + int(task["n"])


def write_sorted(path: Path, table: pa.Table) -> None:
    """Atomic write in row groups of ``ROW_GROUP`` rows: a reader filtering on a sorted column reads only
    the row groups it needs."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_partitioned(path: Path, table: pa.Table, part: np.ndarray, partitions: int) -> None:
    """One file per source shard, one row group per partition (column ``part``), written atomically.

    A partition's worker then reads its row group from each file (statistics skip the others): the
    shuffle makes one file per source shard, not one per (shard, partition) pair.
    """
    import os
    import tempfile

    table = table.append_column("part", pa.array(part.astype(np.int32), pa.int32()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        order = np.argsort(part, kind="stable")
        table = table.take(pa.array(order))
        bounds = np.searchsorted(part[order], np.arange(partitions + 1))
        with pq.ParquetWriter(tmp, table.schema, compression="zstd") as writer:
            for p in range(partitions):
                if bounds[p + 1] > bounds[p]:
                    writer.write_table(table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])))
            if table.num_rows == 0:
                writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_partition(folder: Path, keys: list[str], p: int, schema: pa.Schema) -> pa.Table:
    """Partition ``p``'s rows from every source shard's file under ``folder``."""
    tables = [pq.read_table(folder / key, filters=[("part", "==", p)]).drop_columns(["part"]) for key in keys]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


# -- 1. ids ----------------------------------------------------------------------------------------
def ids_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: route this read shard's (id, global index, path) rows to their id partitions."""
    dedup = Path(task["dedup_dir"])
    table = pq.read_table(Path(task["work"]) / "read" / task["key"], columns=["id", "path"])
    lo, _ = _shard_range(task)
    ids = table.column("id").to_pylist()
    part = np.fromiter((zlib.crc32(i.encode()) % task["partitions"] for i in ids), dtype=np.int64, count=len(ids))
    full = pa.table({"id": table.column("id"), "gidx": pa.array(np.arange(lo, lo + len(ids)), pa.int64()),
                     "path": table.column("path")}, schema=IDS_SCHEMA)
    write_partitioned(dedup / "ids" / task["key"], full, part, task["partitions"])
    return {"records": len(ids)}


# -- 2. exact --------------------------------------------------------------------------------------
def exact_partition(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: exact-duplicate groups of one id partition (first in source order is kept).

    Grouped in Arrow (sort, compare neighbours), so no Python object per record is made; only the
    members of duplicate groups are written.
    """
    dedup = Path(task["dedup_dir"])
    table = read_partition(dedup / "ids", task["shards"], task["index"], IDS_SCHEMA)
    table = table.sort_by([("id", "ascending"), ("gidx", "ascending")])
    n = table.num_rows
    out = EXACT_SCHEMA.empty_table()
    groups = duplicates = 0
    if n > 1:
        ids = table.column("id")
        same = pc.equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, ~same])
        sizes = np.diff(np.r_[starts, n])
        group = np.repeat(np.arange(len(starts)), sizes)
        rows = np.flatnonzero(np.repeat(sizes > 1, sizes))
        gidx = table.column("gidx").to_numpy()
        first_row = starts[group[rows]]
        out = pa.table({"gidx": gidx[rows], "first": gidx[first_row], "size": sizes[group[rows]],
                        "first_path": table.column("path").take(pa.array(first_row))}, schema=EXACT_SCHEMA)
        groups = int((sizes > 1).sum())
        duplicates = len(rows) - groups
    write_sorted(dedup / "exact" / f"{task['part']}.parquet", out.sort_by("gidx"))
    return {"groups": groups, "duplicates": duplicates}


def _exact_rows(dedup: Path, partitions: int, lo: int, hi: int) -> pa.Table:
    """The exact-group rows of records lo <= gidx < hi (row-group statistics skip the rest)."""
    flt = [("gidx", ">=", lo), ("gidx", "<", hi)]
    tables = [pq.read_table(dedup / "exact" / f"{_part_name(p)}.parquet", filters=flt) for p in range(partitions)]
    return pa.concat_tables(tables).sort_by("gidx")


# -- 3. bands --------------------------------------------------------------------------------------
def bands_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: band keys of this shard's records (exact duplicates left out) to their bucket partitions."""
    dedup = Path(task["dedup_dir"])
    lo, hi = _shard_range(task)
    table = pq.read_table(Path(task["work"]) / "read" / task["key"], columns=["signature"])
    keep = np.ones(table.num_rows, dtype=bool)
    if task["exact"]:  # near dedup runs on the first record of each exact group only
        exact = _exact_rows(dedup, task["partitions"], lo, hi)
        dup = exact.filter(pc.not_equal(exact.column("gidx"), exact.column("first"))).column("gidx").to_numpy()
        keep[dup - lo] = False
    rows = np.flatnonzero(keep)
    sig_bytes = table.column("signature").to_pylist()
    written = 0
    if len(rows):
        sigs = np.stack([np.frombuffer(sig_bytes[r], dtype=np.uint32) for r in rows])
        keys = band_keys(sigs, task["bands"])  # [n, bands] uint64
        n, bands = keys.shape
        band = np.tile(np.arange(bands, dtype=np.int32), n)
        flat = keys.reshape(-1)
        gidx = np.repeat(rows + lo, bands)
        sig_col = np.repeat(np.asarray([sig_bytes[r] for r in rows], dtype=object), bands)
        part = (flat % np.uint64(task["partitions"])).astype(np.int64)
        table = pa.table({"band": band, "key": flat, "gidx": gidx, "signature": pa.array(sig_col, pa.binary())},
                         schema=BANDS_SCHEMA)
        written = len(flat)
    else:
        table, part = BANDS_SCHEMA.empty_table(), np.zeros(0, np.int64)
    write_partitioned(dedup / "bands" / task["key"], table, part, task["partitions"])
    return {"signed": len(rows), "band_rows": written}


# -- 4. pairs --------------------------------------------------------------------------------------
def pairs_partition(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: candidate pairs of every bucket in one partition, kept where the signatures agree enough.

    Buckets are found on the light columns (band, key, index: 20 bytes a row); signatures are then read
    only for the records in a bucket of two or more, so a worker holds ~36 bytes per band row plus the
    candidates' signatures, not every signature of its partition.
    """
    folder = Path(task["dedup_dir"]) / "bands"
    p = task["index"]
    light = [pq.read_table(folder / key, columns=["band", "key", "gidx"], filters=[("part", "==", p)])
             for key in task["shards"]]
    counts = np.asarray([t.num_rows for t in light], dtype=np.int64)
    n = int(counts.sum())
    found: list[np.ndarray] = []
    if n > 1:
        band = np.concatenate([t.column("band").to_numpy() for t in light])
        key = np.concatenate([t.column("key").to_numpy() for t in light])
        gidx = np.concatenate([t.column("gidx").to_numpy() for t in light])
        src = np.repeat(np.arange(len(light)), counts)
        local = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        del light
        order = np.lexsort((gidx, key, band))
        band, key, gidx, src, local = band[order], key[order], gidx[order], src[order], local[order]
        starts = np.flatnonzero(np.r_[True, (band[1:] != band[:-1]) | (key[1:] != key[:-1])])
        sizes = np.diff(np.r_[starts, n])
        multi = sizes > 1
        if multi.any():
            need = np.repeat(multi, sizes)
            wanted, first = np.unique(gidx[need], return_index=True)  # one row per candidate record
            rows_src, rows_local = src[need][first], local[need][first]
            sigs: np.ndarray | None = None
            for f in np.unique(rows_src):
                table = pq.read_table(folder / task["shards"][int(f)], columns=["signature"],
                                      filters=[("part", "==", p)])
                pick = np.flatnonzero(rows_src == f)
                got = table.column("signature").take(pa.array(rows_local[pick])).to_pylist()
                block = np.stack([np.frombuffer(b, dtype=np.uint32) for b in got])
                if sigs is None:
                    sigs = np.zeros((len(wanted), block.shape[1]), dtype=np.uint32)
                sigs[pick] = block
            assert sigs is not None
            for s, size in zip(starts[multi], sizes[multi], strict=True):
                members = gidx[s : s + size]  # sorted by gidx within the bucket
                rows = sigs[np.searchsorted(wanted, members)]
                if size > task["max_bucket"]:
                    ii, jj = np.zeros(size - 1, dtype=np.int64), np.arange(1, size)
                else:
                    ii, jj = np.triu_indices(size, k=1)
                ok = (rows[ii] == rows[jj]).mean(axis=1) >= task["threshold"]
                found.append(np.stack([members[ii[ok]], members[jj[ok]]], axis=1))
    edges = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
    write_table(Path(task["dedup_dir"]) / "edges" / f"{task['part']}.parquet",
                pa.table({"i": edges[:, 0].astype(np.int64), "j": edges[:, 1].astype(np.int64)}, schema=EDGES_SCHEMA))
    return {"band_rows": n, "edges": len(edges)}


# -- 5. components ---------------------------------------------------------------------------------
def component_roots(nodes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """For each of the sorted ``nodes``, the smallest node of its connected component (edges ``i``-``j``).

    Min-label propagation with pointer jumping, all in numpy: every round each edge pulls both ends to
    the smaller label, then labels jump to their label's label. The number of rounds grows with the log
    of a component's diameter, and nothing but a few int64 arrays the size of the edge list is held
    (scipy's csgraph held a sparse matrix and cost 23 MB of imports in the parent).
    """
    a, b = np.searchsorted(nodes, i), np.searchsorted(nodes, j)
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        while True:  # pointer jumping: label = label[label] until it is a fixed point
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, before):
            return nodes[label]


def components(dedup: Path, partitions: int, work: Path, tasks: list[dict[str, Any]]) -> int:
    """Connected components of every duplicate edge; root = smallest global index; with each root's id,
    path and signature (read here, each read shard at most once, so no decisions worker has to read
    other shards). Written atomically, sorted by global index, one row group at a time; returns the
    number of clusters.

    Memory: int64 arrays over the edges, plus one row per cluster root (its id, path and signature);
    no Python object per record, and the output rows are made and written ``ROW_GROUP`` at a time.
    """
    import os
    import tempfile

    path = dedup / "components.parquet"
    if path.exists():
        return len(np.unique(pq.ParquetFile(path).read(columns=["root"]).column("root").to_numpy()))
    i_parts, j_parts = [], []
    for p in range(partitions):
        # ParquetFile.read, not read_table: read_table loads pyarrow's dataset engine (~40 MB in the parent)
        edges = pq.ParquetFile(dedup / "edges" / f"{_part_name(p)}.parquet").read()
        i_parts.append(edges.column("i").to_numpy())
        j_parts.append(edges.column("j").to_numpy())
    i, j = np.concatenate(i_parts), np.concatenate(j_parts)
    del i_parts, j_parts
    nodes = np.unique(np.r_[i, j])
    roots = component_roots(nodes, i, j) if len(nodes) else nodes
    del i, j
    unique_roots, size_of_root = np.unique(roots, return_counts=True)
    info = _lookup(work, tasks, unique_roots)  # rows in the order of unique_roots
    where = np.searchsorted(unique_roots, roots)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp, COMPONENTS_SCHEMA, compression="zstd") as writer:
            for start in range(0, max(len(nodes), 1), ROW_GROUP):
                rows = where[start : start + ROW_GROUP]
                root_info = info.take(pa.array(rows, pa.int64()))
                writer.write_table(pa.table(
                    {"gidx": nodes[start : start + ROW_GROUP], "root": roots[start : start + ROW_GROUP],
                     "size": size_of_root[rows], "root_id": root_info.column("id"),
                     "root_path": root_info.column("path"), "root_signature": root_info.column("signature")},
                    schema=COMPONENTS_SCHEMA))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(unique_roots)


# -- 6. decisions ----------------------------------------------------------------------------------
def _lookup(work: Path, tasks: list[dict[str, Any]], wanted: np.ndarray) -> pa.Table:
    """(id, path, signature) of records ``wanted`` (sorted global indices), read from their own read shards,
    as one Arrow table in the order of ``wanted``."""
    offsets = np.asarray([t["offset"] for t in tasks])
    which = np.searchsorted(offsets, wanted, side="right") - 1
    parts = [pa.table({"id": pa.array([], pa.string()), "path": pa.array([], pa.string()),
                       "signature": pa.array([], pa.binary())})]
    for t in np.unique(which):  # wanted is sorted, so shards come in order and rows within them too
        task = tasks[int(t)]
        rows = (wanted[which == t] - task["offset"]).astype(np.int64)
        table = pq.ParquetFile(work / "read" / task["key"]).read(columns=["id", "path", "signature"])
        parts.append(table.take(pa.array(rows)))
    return pa.concat_tables(parts)


def decisions_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: the dedup decision of every row of one read shard (same rules as the single-process decide)."""
    dedup = Path(task["dedup_dir"])
    work = Path(task["work"])
    lo, hi = _shard_range(task)
    read = pq.read_table(work / "read" / task["key"], columns=["id", "path", "signature"])
    ids = read.column("id").to_pylist()
    n = len(ids)
    decision, cluster, size = ["keep"] * n, list(ids), [1] * n
    similarity, dup_of = [1.0] * n, [None] * n
    exact = _exact_rows(dedup, task["partitions"], lo, hi).to_pylist()
    if task["exact"]:
        for r in exact:
            k = r["gidx"] - lo
            if r["gidx"] != r["first"]:
                decision[k], dup_of[k] = "exact-duplicate", r["first_path"]
            else:
                size[k] = r["size"]
    comps = pq.read_table(dedup / "components.parquet", filters=[("gidx", ">=", lo), ("gidx", "<", hi)])
    comp = comps.to_pylist()
    if comp:
        sig_bytes = read.column("signature").to_pylist()
        for c in comp:
            k = c["gidx"] - lo
            root_id, root_path, root_sig = c["root_id"], c["root_path"], c["root_signature"]
            cluster[k], size[k] = root_id, c["size"]
            if c["gidx"] != c["root"]:
                decision[k], dup_of[k] = "near-duplicate", root_path
                a = np.frombuffer(sig_bytes[k], dtype=np.uint32)
                similarity[k] = float(np.mean(a == np.frombuffer(root_sig, dtype=np.uint32)))
    table = pa.table({"shard": [task["key"]] * n, "row": list(range(n)), "decision": decision, "cluster": cluster,
                      "cluster_size": size, "similarity": similarity, "duplicate_of": dup_of}, schema=DECISION_SCHEMA)
    write_table(dedup / "decisions" / task["key"], table)
    return {"rows": n, "exact": decision.count("exact-duplicate"), "near": decision.count("near-duplicate")}


# -- the whole decide ------------------------------------------------------------------------------
def decide_sharded(
    shards: list[tuple[str, int]], dedup: DedupConfig, work: Path, map_fn: MapFn,
    rows_per_partition: int = ROWS_PER_PARTITION, max_bucket: int = MAX_BUCKET, min_partitions: int = 1,
) -> dict[str, Any]:
    """Run steps 1-6 over read shards ``[(key, records)]`` in source order; ``map_fn(fn, tasks, markers,
    description=...)`` is the executor's map (resumable through its markers). Decisions land in
    ``work/dedup/decisions/<key>``; returns counts (and the near-duplicate cluster count).

    ``min_partitions`` (the stage passes its worker count): at least that many partitions, so the
    exact and pairs steps run in parallel on the workers even on a small corpus (the executor runs a
    lone task in the calling process, which would put a partition's memory in the parent)."""
    dedup_dir = work / "dedup"
    total = sum(n for _, n in shards)
    parts = max(partitions_for(total, dedup.bands, rows_per_partition), min_partitions)
    tasks, offset = [], 0
    for key, n in shards:
        tasks.append({"key": key, "offset": offset, "n": n, "work": str(work), "dedup_dir": str(dedup_dir),
                      "partitions": parts, "bands": dedup.bands, "exact": dedup.exact})
        offset += n
    keys = [k for k, _ in shards]
    part_tasks = [{"key": _part_name(p), "part": _part_name(p), "index": p, "shards": keys, "dedup_dir": str(dedup_dir),
                   "threshold": dedup.threshold, "max_bucket": max_bucket} for p in range(parts)]
    markers = work / "markers"
    map_fn(ids_shard, tasks, markers / "dedup-ids", description="corpus: dedup ids")
    exact = map_fn(exact_partition, part_tasks, markers / "dedup-exact", description="corpus: dedup exact")
    if dedup.near:
        map_fn(bands_shard, tasks, markers / "dedup-bands", description="corpus: dedup bands")
        pairs = map_fn(pairs_partition, part_tasks, markers / "dedup-pairs", description="corpus: dedup pairs")
    else:
        pairs = {}
        for p in range(parts):
            write_table(dedup_dir / "edges" / f"{_part_name(p)}.parquet", EDGES_SCHEMA.empty_table())
    n_clusters = components(dedup_dir, parts, work, tasks)
    done = map_fn(decisions_shard, tasks, markers / "dedup-decisions", description="corpus: dedup decide")
    return {
        "partitions": parts, "records": total,
        "exact_duplicates": sum(r["duplicates"] for r in exact.values()) if dedup.exact else 0,
        "near_duplicates": sum(r["near"] for r in done.values()),
        "near_clusters": n_clusters, "edges": sum(r["edges"] for r in pairs.values()),
    }
