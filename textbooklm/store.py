"""Dataset: a folder of Parquet shards plus ``manifest.json``. The only way stages talk.

Layout of a dataset folder::

    part-00000.parquet      shards, read in name order
    part-00001.parquet
    manifest.json           schema, row counts per shard, config hash, parents, stage summary

Why Parquet shards: any tool reads them (pyarrow, ``datasets``, pandas, duckdb), shards are the
unit of parallel work and of resume, and columns are typed.

Why atomic writes: every shard and the manifest are written to a temporary name in the same folder
and renamed into place, so a reader (or a re-run after ``kill -9``) never sees half a file. A
dataset without ``manifest.json`` is unfinished; its finished shards are still valid and are kept
by the executor's resume logic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.unicode_text import escape_surrogates, find_unwritable

MANIFEST = "manifest.json"
SHARD_GLOB = "part-*.parquet"


def shard_name(index: int) -> str:
    """File name of shard ``index`` (zero-padded so name order is shard order)."""
    return f"part-{index:05d}.parquet"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename (atomic on POSIX file systems)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON counterpart of :func:`atomic_write_bytes` (sorted keys, indented, for diffs)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Build a folder with ``write(tmp)`` next to ``target``, then rename it into place (model caches).

    Readers never see half a folder; when another process published ``target`` first (it holds
    ``model.safetensors``), its copy is kept and ours is dropped.
    """
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_table(path: Path, table: pa.Table) -> None:
    """Write one Parquet shard atomically (temp name in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class InvalidTextError(ValueError):
    """A record holds a string Parquet cannot store (a lone surrogate); names the record and column."""


def unwritable_text(record: dict[str, Any]) -> str | None:
    """Why ``record`` cannot be written (``column 'text': lone surrogate U+D800 at character 21``), or None.

    Checks top-level string fields, where stages keep their text; nested values are JSON strings.
    """
    found = find_unwritable(record)
    return None if found is None else f"column {found[0]!r}: {found[1]}"


def divert_unwritable(
    kept: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]], reason: str = "invalid-unicode"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Move kept records holding a lone surrogate to ``rejected`` (``reason``, the column and character in
    ``detail``), every string escaped (``\\ud800``) so it can be stored; escape rejected ones in place.

    For a stage whose rejected schema is its kept schema plus ``reason`` and ``detail``: text from a
    teacher's JSON reply or a program's output can hold ``\\ud800`` escapes, and one such record must
    not stop a shard.
    """
    def escaped(record: dict[str, Any]) -> dict[str, Any]:
        return {k: escape_surrogates(v) if isinstance(v, str) else v for k, v in record.items()}

    good: list[dict[str, Any]] = []
    out = [escaped(r) if unwritable_text(r) else r for r in rejected]
    for record in kept:
        why = unwritable_text(record)
        if why is None:
            good.append(record)
        else:
            out.append({**escaped(record), "reason": reason, "detail": f"{why} (stored escaped as \\udXXX)"})
    return good, out


def records_to_table(records: Sequence[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Build a table from row dicts; with ``schema`` an empty list still gives typed columns.

    A string with a lone surrogate raises :class:`InvalidTextError` naming the record (index and
    ``id``) and the column, instead of pyarrow's bare ``UnicodeEncodeError``.
    """
    rows = list(records)
    try:
        return pa.Table.from_pylist(rows, schema=schema) if schema is not None else pa.Table.from_pylist(rows)
    except UnicodeEncodeError:
        for i, record in enumerate(rows):
            reason = unwritable_text(record)
            if reason is not None:
                rid = f" (id {escape_surrogates(str(record['id']))!r})" if "id" in record else ""
                raise InvalidTextError(f"record {i}{rid}: {reason}; Parquet stores only valid UTF-8") from None
        raise


class Dataset:
    """A finished (or in-progress) dataset folder. Cheap to construct; reads lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r})"

    # -- state -----------------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        """True once ``manifest.json`` exists (it is written last)."""
        return (self.path / MANIFEST).is_file()

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest; raises a clear error for an unfinished dataset."""
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: not a finished dataset (no {MANIFEST})") from None

    def shards(self) -> list[Path]:
        """Shard files in order. Temp files (dot-prefixed) are never listed."""
        return sorted(self.path.glob(SHARD_GLOB))

    @property
    def num_rows(self) -> int:
        if self.is_finished:
            return int(self.manifest["num_rows"])
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards())

    # -- reading ---------------------------------------------------------------------------
    def schema(self) -> pa.Schema | None:
        shards = self.shards()
        return pq.read_schema(shards[0]) if shards else None

    def to_table(self, columns: list[str] | None = None) -> pa.Table:
        """All shards as one table (fine for the sizes a single stage step holds in memory)."""
        tables = [pq.read_table(p, columns=columns) for p in self.shards()]
        if not tables:
            return pa.table({c: pa.array([], pa.string()) for c in columns or []})
        return pa.concat_tables(tables, promote_options="default")

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
        for p in self.shards():
            yield from pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=columns)

    def iter_records(self, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        for batch in self.iter_batches(columns=columns):
            yield from batch.to_pylist()

    def column(self, name: str) -> list[Any]:
        return self.to_table(columns=[name]).column(name).to_pylist()


def finish_dataset(
    path: str | Path,
    *,
    stage: str,
    config_hash: str,
    parents: Iterable[str | Path] = (),
    summary: dict[str, Any] | None = None,
) -> Dataset:
    """Write ``manifest.json`` for the shards now in ``path``: the step that makes a dataset finished.

    Row counts and the schema are read from the shards' Parquet footers, so the manifest can never
    disagree with the data.
    """
    ds = Dataset(path)
    ds.path.mkdir(parents=True, exist_ok=True)
    shards = ds.shards()
    counts = {p.name: pq.ParquetFile(p).metadata.num_rows for p in shards}
    schema = pq.read_schema(shards[0]) if shards else None
    manifest = {
        "format": "textbooklm.dataset/1",
        "stage": stage,
        "config_hash": config_hash,
        "parents": [str(Path(p)) for p in parents],
        "num_rows": sum(counts.values()),
        "shards": counts,
        "schema": {f.name: str(f.type) for f in schema} if schema is not None else {},
        "summary": summary or {},
    }
    atomic_write_json(ds.path / MANIFEST, manifest)
    return ds


def write_dataset(
    path: str | Path,
    records: Sequence[dict[str, Any]] | pa.Table,
    *,
    stage: str,
    config_hash: str = "",
    parents: Iterable[str | Path] = (),
    summary: dict[str, Any] | None = None,
    schema: pa.Schema | None = None,
    rows_per_shard: int = 10_000,
) -> Dataset:
    """Write a whole small dataset in one go, replacing the shards and manifest of a previous one at
    ``path`` (other files there, such as a stage's artefacts, are left alone)."""
    path = Path(path)
    for old in [*Dataset(path).shards(), path / MANIFEST]:
        old.unlink(missing_ok=True)
    table = records if isinstance(records, pa.Table) else records_to_table(records, schema)
    n = max(1, -(-table.num_rows // rows_per_shard))
    for i in range(n):
        write_table(path / shard_name(i), table.slice(i * rows_per_shard, rows_per_shard))
    return finish_dataset(path, stage=stage, config_hash=config_hash, parents=parents, summary=summary)
