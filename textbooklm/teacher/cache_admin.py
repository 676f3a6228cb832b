"""What is in a teacher request cache, and removing what is no longer wanted (``textbooklm cache``).

The cache belongs to the run (``RUN/_cache``) or to the user (a shared folder); no stage ever deletes
it, so this is the one place where cached replies are removed, and only when asked.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from textbooklm.teacher.cache import CACHE_FILE


def cache_file(folder: Path) -> Path:
    return Path(folder) / CACHE_FILE


def cache_stats(folder: Path) -> dict[str, Any]:
    """Entries and bytes per backend/model, and each stage's ledger (requests, tokens, cost)."""
    path = cache_file(folder)
    if not path.is_file():
        return {"path": str(path), "exists": False, "models": [], "ledgers": []}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        models = [
            {"backend": b, "model": m, "entries": n, "bytes": int(size or 0), "oldest": lo, "newest": hi}
            for b, m, n, size, lo, hi in db.execute(
                "SELECT backend, model, COUNT(*), SUM(LENGTH(request) + LENGTH(result)), MIN(created), MAX(created) "
                "FROM results GROUP BY backend, model ORDER BY backend, model")
        ]
        import json

        ledgers = [{"stage": s, "model": m, **json.loads(d)} for s, m, d in
                   db.execute("SELECT stage, model, data FROM ledger ORDER BY stage, model")]
    finally:
        db.close()
    return {"path": str(path), "exists": True, "file_bytes": path.stat().st_size, "models": models,
            "ledgers": ledgers}


def prune_cache(folder: Path, *, model: str | None = None, older_than_days: float | None = None,
                dry_run: bool = False) -> int:
    """Remove cached replies of ``model`` and/or older than ``older_than_days``; return how many.

    At least one filter is required: removing everything is deleting the file, on purpose.
    """
    if model is None and older_than_days is None:
        raise ValueError("prune needs --model and/or --older-than-days (to drop everything, delete the file)")
    path = cache_file(folder)
    if not path.is_file():
        return 0
    where, args = [], []
    if model is not None:
        where.append("model = ?")
        args.append(model)
    if older_than_days is not None:
        where.append("created < ?")
        args.append(time.time() - older_than_days * 86400)
    clause = " AND ".join(where)
    db = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    try:
        n = db.execute(f"SELECT COUNT(*) FROM results WHERE {clause}", args).fetchone()[0]
        if n and not dry_run:
            db.execute(f"DELETE FROM results WHERE {clause}", args)
            db.execute("VACUUM")
    finally:
        db.close()
    return int(n)
