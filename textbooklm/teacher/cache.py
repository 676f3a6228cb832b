"""The SQLite request cache: finished results by request key, and each stage's running ledger.

Why SQLite: one file, atomic commits, safe for several processes (WAL), and a committed result
survives a crash or Ctrl-C, so an interrupted batch resumes where it stopped and a re-run never pays
twice. Only completed results are cached, plus paid replies that failed a check asking again cannot
change (a reply without label logprobs: ``Result.answered``); a request that failed otherwise (server
down, budget reached) is tried again by the next run. ``textbooklm cache prune`` clears either.

Writes are group commits (:meth:`RequestCache.commit`): the results that finished in one event-loop
turn go in one transaction together with the stage's ledger, so at a thousand replies a second the
cache costs one commit per turn instead of two per request. WAL with ``synchronous=NORMAL`` means a
commit is not fsynced: it survives the process being killed (kill -9, OOM), and only a power loss
or kernel crash can take back the last commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from textbooklm.teacher.types import Request, Result
from textbooklm.unicode_text import json_text

CACHE_FILE = "teacher_cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (stage, model)
);
"""


class RequestCache:
    """Results of finished requests, keyed by :func:`~textbooklm.teacher.types.request_key`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint fsyncs the database while the event loop waits (measured: 10-60 ms stalls, each
        # holding up every reply in flight); checkpoint every ~40 MB of WAL instead of every 4 MB.
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        self._db.executescript(_SCHEMA)

    def get_many(self, keys: list[str]) -> dict[str, Result]:
        found: dict[str, Result] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, result FROM results WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    res = Result.from_json(blob)
                    res.cached = True
                    found[key] = res
        return found

    def put(self, backend: str, model: str, request: Request, result: Result) -> None:
        """Commit one finished result now (not at the end of the batch), so nothing is lost on a crash."""
        self.commit(backend, model, [(request, result)])

    def commit(
        self,
        backend: str,
        model: str,
        finished: list[tuple[Request, Result]],
        ledger: tuple[str, dict] | None = None,
    ) -> None:
        """Commit finished results (failed ones are skipped, but for paid replies: Result.cacheable) and
        optionally a ledger in ONE transaction.

        One transaction keeps the ledger and the results it counts consistent after a crash, and
        costs one commit however many results it carries.
        """
        now = time.time()
        rows = [
            (
                result.key,
                backend,
                model,
                json_text({"messages": list(request.messages), "params": request.params()}),
                result.to_json(),
                now,
            )
            for request, result in finished
            if result.cacheable
        ]
        if not rows and ledger is None:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)
                if ledger is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?)", (ledger[0], model, json.dumps(ledger[1]))
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def load_ledger(self, stage: str, model: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM ledger WHERE stage = ? AND model = ?", (stage, model)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def save_ledger(self, stage: str, model: str, data: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?)", (stage, model, json.dumps(data))
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
