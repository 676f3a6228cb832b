"""An interrupted batch (the process killed mid-run) resumes without re-sending what had finished."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter

from textbooklm.teacher import Request, build_teacher
from textbooklm.teacher.cache import CACHE_FILE

N = 40


def prompts() -> list[Request]:
    return [Request(messages=[{"role": "user", "content": f"resume {i:02d}"}], max_tokens=4) for i in range(N)]


def cached_prompts(db) -> set[str]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT request FROM results").fetchall()
    except sqlite3.OperationalError:  # the writer has not created the table yet
        return set()
    finally:
        con.close()
    return {json.loads(r[0])["messages"][-1]["content"] for r in rows}


def test_killed_batch_resumes_where_it_stopped(server, make_cfg, tmp_path):
    server.state.latency_s = 0.05
    cfg = make_cfg(concurrency=2)
    script = textwrap.dedent(
        f"""
        from textbooklm.teacher import Request, TeacherConfig, build_teacher
        cfg = TeacherConfig.model_validate_json({cfg.model_dump_json()!r})
        reqs = [Request(messages=[{{"role": "user", "content": f"resume {{i:02d}}"}}], max_tokens=4)
                for i in range({N})]
        build_teacher(cfg, {str(tmp_path)!r}, stage="synth").complete(reqs, show_progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))  # carries the key env var
    db = tmp_path / CACHE_FILE
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if db.exists() and len(cached_prompts(db)) >= 8:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = cached_prompts(db)
    assert 8 <= len(before) < N, f"the kill should land mid-batch, {len(before)} of {N} were done"
    # Results and the ledger that counts them are committed in the same transaction.
    con = sqlite3.connect(db)
    ledger = json.loads(con.execute("SELECT data FROM ledger WHERE stage = 'synth'").fetchone()[0])
    con.close()
    assert ledger["completed"] == len(before)

    teacher = build_teacher(cfg, tmp_path, stage="synth")
    results = teacher.complete(prompts(), show_progress=False)
    assert all(r.ok for r in results)
    assert sum(r.cached for r in results) == len(before)
    ok_hits = Counter(h.prompt for h in server.hits if h.outcome == "ok")
    for p in before:
        assert ok_hits[p] == 1, f"{p} finished before the kill and was sent again"
    # Only requests in flight at the kill (at most `concurrency`) can have been sent twice.
    assert sum(ok_hits.values()) <= N + cfg.concurrency
    assert set(ok_hits) == {f"resume {i:02d}" for i in range(N)}
