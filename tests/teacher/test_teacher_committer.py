"""Group commits on a writer thread: every result committed before its future resolves; errors reach the waiters."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from textbooklm.teacher.cache import CACHE_FILE, RequestCache
from textbooklm.teacher.committer import GroupCommitter
from textbooklm.teacher.ledger import LedgerEntry
from textbooklm.teacher.types import Request, Result


def finished(i: int) -> tuple[Request, Result]:
    req = Request(messages=[{"role": "user", "content": f"q {i}"}], max_tokens=4)
    return req, Result(key=f"{i:064x}", text=f"a {i}", tokens_in=3, tokens_out=2)


def test_every_future_resolves_after_its_row_is_on_disk(tmp_path):
    cache = RequestCache(tmp_path / CACHE_FILE)
    ledger = LedgerEntry(stage="s", model="m")

    async def run() -> list[int]:
        committer = GroupCommitter(cache, "openai", "m", "s", ledger)
        seen = []

        async def one(i: int) -> None:
            req, res = finished(i)
            ledger.record(res, None)
            await committer.add(req, res)
            con = sqlite3.connect(tmp_path / CACHE_FILE)  # another connection sees it: committed
            seen.append(con.execute("SELECT COUNT(*) FROM results WHERE key = ?", (res.key,)).fetchone()[0])
            con.close()

        await asyncio.gather(*(one(i) for i in range(200)))
        await committer.flush()
        return seen

    assert asyncio.run(run()) == [1] * 200
    assert cache.count() == 200
    assert cache.load_ledger("s", "m")["completed"] == 200
    cache.close()


def test_a_failed_commit_reaches_every_waiter_and_flush(tmp_path):
    cache = RequestCache(tmp_path / CACHE_FILE)
    cache.close()  # a real failure: SQLite refuses to write through a closed connection

    async def run() -> None:
        committer = GroupCommitter(cache, "openai", "m", "s", LedgerEntry(stage="s", model="m"))
        futures = [committer.add(*finished(i)) for i in range(5)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(o, sqlite3.ProgrammingError) for o in outcomes), outcomes
        with pytest.raises(sqlite3.ProgrammingError):
            await committer.flush()

    asyncio.run(run())
