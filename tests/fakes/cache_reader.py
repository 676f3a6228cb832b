"""What a teacher cache folder holds, read straight from its SQLite files (for tests that kill writers)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from textbooklm.teacher.cache import cache_files


def cached_prompts(folder: Path) -> Counter:
    """Last-message prompts of the cached results over every file of the folder (cached twice counts 2)."""
    out: Counter = Counter()
    for path in cache_files(folder):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            out.update(json.loads(r[0])["messages"][-1]["content"] for r in con.execute("SELECT request FROM results"))
        except sqlite3.OperationalError:  # a file created a moment ago, schema not committed yet
            pass
        finally:
            con.close()
    return out
