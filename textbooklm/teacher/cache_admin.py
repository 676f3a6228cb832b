"""What is in a teacher request cache, and removing what is no longer wanted (``textbooklm cache``).

The cache belongs to the run (``RUN/_cache``) or to the user (a shared folder); no stage ever deletes
it, so this is the one place where cached replies are removed, and only when asked. A cache is a
folder of files (the main one and one per driver, ``cache.py``); every figure here covers all of them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from textbooklm.teacher.cache import CACHE_FILE, cache_files, merge_ledgers


def cache_file(folder: Path) -> Path:
    """The main file (where an older run kept its whole cache)."""
    return Path(folder) / CACHE_FILE


def _read(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


def read_ledgers(folder: Path) -> list[dict[str, Any]]:
    """Each (stage, model) ledger of the cache in ``folder``, summed over its files, sorted by stage, model."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for path in cache_files(folder):
        con = _read(path)
        try:
            for stage, model, data in con.execute("SELECT stage, model, data FROM ledger"):
                rows.setdefault((stage, model), []).append(json.loads(data))
        except sqlite3.DatabaseError:  # a driver file created a moment ago, schema not committed yet
            continue
        finally:
            con.close()
    return [{**merge_ledgers(parts), "stage": s, "model": m} for (s, m), parts in sorted(rows.items())]


def cache_stats(folder: Path) -> dict[str, Any]:
    """Entries and bytes per backend/model, and each stage's ledger (requests, tokens, cost), over every file."""
    files = cache_files(folder)
    main = cache_file(folder)
    if not files:
        return {"path": str(main), "exists": False, "models": [], "ledgers": [], "files": []}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        con = _read(path)
        try:
            found = con.execute(
                "SELECT backend, model, COUNT(*), SUM(LENGTH(request) + LENGTH(result)), MIN(created), MAX(created) "
                "FROM results GROUP BY backend, model").fetchall()
        except sqlite3.DatabaseError:
            continue
        finally:
            con.close()
        for b, m, n, size, lo, hi in found:
            row = models.setdefault((b, m), {"backend": b, "model": m, "entries": 0, "bytes": 0, "oldest": lo,
                                             "newest": hi})
            row["entries"] += n
            row["bytes"] += int(size or 0)
            row["oldest"], row["newest"] = min(row["oldest"], lo), max(row["newest"], hi)  # created is NOT NULL
    file_bytes = sum(_file_bytes(p) for p in files)
    return {"path": str(main) if len(files) == 1 else f"{folder} ({len(files)} files)", "exists": True,
            "file_bytes": file_bytes, "models": [models[k] for k in sorted(models)], "ledgers": read_ledgers(folder),
            "files": [str(p) for p in files]}


def _file_bytes(path: Path) -> int:
    """The database and its write-ahead log (a live driver's recent commits are still in the log)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.is_file())


def prune_cache(folder: Path, *, model: str | None = None, older_than_days: float | None = None,
                dry_run: bool = False) -> int:
    """Remove cached replies of ``model`` and/or older than ``older_than_days`` from every file; return how many.

    At least one filter is required: removing everything is deleting the folder's files, on purpose.
    """
    if model is None and older_than_days is None:
        raise ValueError("prune needs --model and/or --older-than-days (to drop everything, delete the files)")
    where, args = [], []
    if model is not None:
        where.append("model = ?")
        args.append(model)
    if older_than_days is not None:
        where.append("created < ?")
        args.append(time.time() - older_than_days * 86400)
    clause = " AND ".join(where)
    total = 0
    for path in cache_files(folder):
        db = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        try:
            n = db.execute(f"SELECT COUNT(*) FROM results WHERE {clause}", args).fetchone()[0]
            if n and not dry_run:
                db.execute(f"DELETE FROM results WHERE {clause}", args)
                db.execute("VACUUM")
        except sqlite3.DatabaseError:
            continue
        finally:
            db.close()
        total += int(n)
    return total
