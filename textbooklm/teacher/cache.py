"""The request cache: finished results by request key, and each stage's running ledger, in SQLite files.

Why SQLite: one file, atomic commits, and a committed result survives a crash or Ctrl-C, so an
interrupted batch resumes where it stopped and a re-run never pays twice. Only completed results are
cached, plus paid replies that failed a check asking again cannot change (a reply without label
logprobs: ``Result.answered``); a request that failed otherwise (server down, budget reached) is tried
again by the next run. ``textbooklm cache prune`` clears either.

Several writers (issue 26): the cache is a FOLDER of files that the run reads as one.

- ``teacher_cache.sqlite``, the main file: written by the run's own process (the in-process teacher,
  as before; processes on one machine may share it, SQLite's WAL allows that), and the whole cache of
  an older run.
- ``teacher_cache.<host>.<n>.sqlite``, one per driver (a worker that sends part of a batch,
  ``fanout.py``): a driver claims the first slot ``n`` of its host whose ``.lock`` it can ``flock``, and
  holds it until it closes or dies, so a file has ONE writing process at a time and no two machines
  ever write one file. A re-run driver on that host reuses the slot: files stay as many as drivers ran
  at once per host, not one per process ever started.

A reader looks a key up in its own file, then in every other ``teacher_cache*.sqlite`` of the folder,
listed again at every lookup, so a key committed by any driver is found by every later lookup. The
ledger row of (stage, model) in a file holds what that file's writers spent; the stage's ledger is the
sum over files (:func:`merge_ledgers`), which is what ``Teacher``, ``textbooklm cache stats`` and the
report show.

Writes are group commits (:meth:`RequestCache.commit`): the results that finished in one event-loop
turn go in one transaction together with the writer's ledger row, so at a thousand replies a second
the cache costs one commit per turn instead of two per request. WAL with ``synchronous=NORMAL`` means
a commit is not fsynced: it survives the process being killed (kill -9, OOM), and only a power loss or
kernel crash can take back the last commits. A kill mid-commit loses that uncommitted tail only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

from textbooklm.teacher.types import Request, Result
from textbooklm.unicode_text import json_text

CACHE_FILE = "teacher_cache.sqlite"
CACHE_GLOB = "teacher_cache*.sqlite"  # the main file and every driver's file
MAX_DRIVER_SLOTS = 10_000

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


def cache_files(folder: Path) -> list[Path]:
    """Every file of the cache in ``folder``: the main file first, then the drivers' files by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.glob(CACHE_GLOB) if p.name != CACHE_FILE and p.is_file())
    main = folder / CACHE_FILE
    return ([main] if main.is_file() else []) + files


def host_tag() -> str:
    """This machine's name as a file-name part (letters, digits, '-', '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-") or "host"


def claim_driver_file(folder: Path) -> tuple[Path, int]:
    """The first free driver file of this host in ``folder`` and the descriptor holding its lock.

    ``flock`` is released by the kernel when the holder exits, even on kill -9, so a slot is never
    left claimed by a dead driver; the host in the name keeps machines from competing for a slot.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    host = host_tag()
    for n in range(MAX_DRIVER_SLOTS):
        stem = f"teacher_cache.{host}.{n}"
        fd = os.open(folder / f"{stem}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return folder / f"{stem}.sqlite", fd
    raise RuntimeError(f"{folder}: all {MAX_DRIVER_SLOTS} driver cache slots of host {host} are held")


class RequestCache:
    """Results of finished requests, keyed by :func:`~textbooklm.teacher.types.request_key`.

    ``path`` is the file this process writes; lookups and ledgers cover every cache file next to it.
    """

    def __init__(self, path: Path, *, lock_fd: int | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.folder = path.parent
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint fsyncs the database while the event loop waits (measured: 10-60 ms stalls, each
        # holding up every reply in flight); checkpoint every ~40 MB of WAL instead of every 4 MB.
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        # One transaction: another driver that sees this file must see both tables (created one by one,
        # a reader found `results` but not yet `ledger` and failed with "no such table: ledger").
        self._db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        self._readers: dict[Path, sqlite3.Connection] = {}  # the other files, read-only, opened on first use

    @classmethod
    def for_driver(cls, folder: Path) -> RequestCache:
        """A cache writing its own driver file in ``folder`` (see the module doc), reading all of them."""
        path, fd = claim_driver_file(folder)
        try:
            return cls(path, lock_fd=fd)
        except BaseException:
            os.close(fd)
            raise

    # -- the other files --------------------------------------------------------------------------
    def _others(self) -> list[sqlite3.Connection]:
        """Read-only connections to every other cache file of the folder (listed again on each call)."""
        for p in cache_files(self.folder):
            if p == self.path or p in self._readers:
                continue
            con: sqlite3.Connection | None = None
            try:
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=60, check_same_thread=False)
                con.execute("SELECT 1 FROM results LIMIT 1")
                con.execute("SELECT 1 FROM ledger LIMIT 1")
            except sqlite3.OperationalError:  # gone, or created with its schema not committed yet: look again next time
                if con is not None:
                    con.close()
                continue
            self._readers[p] = con
        return list(self._readers.values())

    def get_many(self, keys: list[str]) -> dict[str, Result]:
        found: dict[str, Result] = {}
        with self._lock:
            for con in [self._db, *self._others()]:
                todo = [k for k in keys if k not in found] if found else keys
                for i in range(0, len(todo), 500):
                    chunk = todo[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, blob in con.execute(f"SELECT key, result FROM results WHERE key IN ({marks})", chunk):
                        res = Result.from_json(blob)
                        res.cached = True
                        found[key] = res
                if len(found) == len(keys):
                    break
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
        optionally this file's ledger row in ONE transaction.

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
        """Entries in every file of the folder (a key cached by two drivers counts twice)."""
        with self._lock:
            return sum(con.execute("SELECT COUNT(*) FROM results").fetchone()[0] for con in [self._db, *self._others()])

    # -- ledgers ----------------------------------------------------------------------------------
    def own_ledger(self, stage: str, model: str) -> dict | None:
        """What the writers of THIS file spent on (stage, model)."""
        with self._lock:
            return _ledger_row(self._db, stage, model)

    def other_ledgers(self, stage: str, model: str) -> list[dict]:
        """The (stage, model) rows of every other file: what the other drivers spent."""
        with self._lock:
            rows = [_ledger_row(con, stage, model) for con in self._others()]
        return [r for r in rows if r is not None]

    def load_ledger(self, stage: str, model: str) -> dict | None:
        """The stage's ledger on ``model``: the sum of its rows over every file (None if no file has one)."""
        rows = [r for r in [self.own_ledger(stage, model), *self.other_ledgers(stage, model)] if r is not None]
        return merge_ledgers(rows) if rows else None

    def save_ledger(self, stage: str, model: str, data: dict) -> None:
        """Write this file's (stage, model) row (only what this file's writers spent)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?)", (stage, model, json.dumps(data))
            )

    def close(self) -> None:
        with self._lock:
            for con in self._readers.values():
                con.close()
            self._readers.clear()
            if self._lock_fd is not None:
                # Fold the WAL into the file before the slot is free, so a closed driver file is one
                # self-contained file for readers elsewhere (best effort: a reader may hold it open).
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the slot
                self._lock_fd = None


def _ledger_row(con: sqlite3.Connection, stage: str, model: str) -> dict | None:
    row = con.execute("SELECT data FROM ledger WHERE stage = ? AND model = ?", (stage, model)).fetchone()
    return None if row is None else json.loads(row[0])


def merge_ledgers(rows: list[dict]) -> dict:
    """One ledger from several files' rows of the same (stage, model): counts, tokens, cost and
    driver-seconds summed, per-reason counts summed, the first example of each reason, cost unknown
    (None) if any row's is, stopped at the budget if any row was."""
    out: dict = {}
    for row in rows:
        for name, value in row.items():
            if name not in out:
                out[name] = dict(value) if isinstance(value, dict) else value
            elif name == "failure_examples":
                for reason, text in value.items():
                    out[name].setdefault(reason, text)
            elif isinstance(value, dict):
                for k, v in value.items():
                    out[name][k] = out[name].get(k, 0) + v
            elif name == "budget_stopped":
                out[name] = bool(out[name] or value)
            elif name == "cost_usd":
                out[name] = None if out[name] is None or value is None else out[name] + value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = out[name] + value
    return out
