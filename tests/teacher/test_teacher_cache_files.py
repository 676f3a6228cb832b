"""The request cache as a folder of files: several writer processes, one view (issue 26 item 2).

Real processes writing real SQLite files concurrently; the readers, the ledger, ``cache stats`` and
``cache prune`` must see the union, and a kill -9 mid-write must lose only what was not committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from fakes.cache_reader import cached_prompts
from fakes.echo_server_async import AsyncEchoServer

from textbooklm.teacher import Request, Result, TeacherConfig, build_teacher
from textbooklm.teacher.cache import CACHE_FILE, RequestCache, cache_files, claim_driver_file, host_tag
from textbooklm.teacher.cache_admin import cache_stats, prune_cache, read_ledgers

KEY_ENV = "TEXTBOOKLM_TEST_TEACHER_KEY"


def cfg_for(srv: AsyncEchoServer, **kw) -> TeacherConfig:
    base = dict(backend="openai", model="gpt-4o-mini", base_url=srv.base_url, api_key_env="", concurrency=4,
                max_retries=2, backoff_base_s=0.02, backoff_max_s=0.1, timeout_s=5.0)
    return TeacherConfig(**{**base, **kw})


def ask(prompt: str) -> Request:
    return Request(messages=[{"role": "user", "content": prompt}], max_tokens=4)


def test_driver_slots_are_claimed_once_and_freed_by_close(tmp_path):
    a = RequestCache.for_driver(tmp_path)
    b = RequestCache.for_driver(tmp_path)
    assert a.path.name == f"teacher_cache.{host_tag()}.0.sqlite" and b.path.name.endswith(".1.sqlite")
    a.close()
    c = RequestCache.for_driver(tmp_path)  # the freed slot is reused: files stay as many as drivers at once
    assert c.path == a.path
    b.close()
    c.close()


def test_slot_of_a_killed_driver_is_free_again(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from textbooklm.teacher.cache import claim_driver_file
        path, fd = claim_driver_file({str(tmp_path)!r})
        print(path, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    held = Path(proc.stdout.readline().strip())
    try:
        mine, fd = claim_driver_file(tmp_path)
        assert mine != held  # held by a live process
        os.close(fd)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    again, fd = claim_driver_file(tmp_path)
    os.close(fd)
    assert again == held  # the kernel released the dead driver's flock


def test_keys_of_every_file_are_found_and_ledgers_add_up(srv, tmp_path):
    """An older run's single file + two drivers' files: every later reader sees all keys, one ledger."""
    cfg = cfg_for(srv)
    old = build_teacher(cfg, tmp_path, stage="synth")  # the main file, as an older run wrote it
    old.complete([ask(f"old {i}") for i in range(5)], show_progress=False)
    old.close()
    d1 = build_teacher(cfg, tmp_path, stage="synth", driver=True)
    d2 = build_teacher(cfg, tmp_path, stage="synth", driver=True)
    assert d1.cache.path != d2.cache.path and d1.cache.path.name != CACHE_FILE
    r1 = d1.complete([ask(f"a {i}") for i in range(7)] + [ask("old 0")], show_progress=False)
    assert [r.cached for r in r1] == [False] * 7 + [True]  # the older file is read
    # d2 opened before d1 wrote: it still finds d1's keys (files and rows are looked up at each call)
    r2 = d2.complete([ask(f"a {i}") for i in range(7)] + [ask(f"b {i}") for i in range(3)], show_progress=False)
    assert [r.cached for r in r2] == [True] * 7 + [False] * 3
    # its own row + the others' rows as they were when it opened (d1 had committed nothing then)
    assert (d2.ledger.completed, d2.ledger.cached) == (5 + 3, 7)
    d1.close()
    d2.close()
    assert len(srv.hits) == 5 + 7 + 3  # nothing sent twice
    assert len(cache_files(tmp_path)) == 3

    later = build_teacher(cfg, tmp_path, stage="synth")
    res = later.complete([ask(f"{p} {i}") for p, n in (("old", 5), ("a", 7), ("b", 3)) for i in range(n)],
                         show_progress=False)
    assert all(r.cached for r in res) and len(srv.hits) == 15
    total = later.ledger
    later.close()
    assert (total.requests, total.completed, total.cached) == (5 + 8 + 10 + 15, 15, 1 + 7 + 15)

    (ledger,) = read_ledgers(tmp_path)
    assert ledger["stage"] == "synth" and ledger["completed"] == 15 and ledger["requests"] == 38
    stats = cache_stats(tmp_path)
    assert stats["exists"] and len(stats["files"]) == 3
    assert [m["entries"] for m in stats["models"]] == [15] and stats["ledgers"][0]["completed"] == 15
    assert prune_cache(tmp_path, model="gpt-4o-mini", dry_run=True) == 15
    assert prune_cache(tmp_path, model="gpt-4o-mini") == 15 and sum(cached_prompts(tmp_path).values()) == 0


def test_budget_counts_what_other_drivers_spent(srv, tmp_path):
    price = {"usd_per_1m_input": 1e6, "usd_per_1m_output": 0.0}  # $1 per prompt token: spend is easy to read
    cfg = cfg_for(srv, price=price)
    first = build_teacher(cfg, tmp_path, stage="s", driver=True)
    first.complete([ask(f"spend {i}") for i in range(4)], show_progress=False)
    spent = first.ledger.cost_usd
    assert spent and spent > 0
    capped = cfg.model_copy(update={"budget_usd": spent * 1.01})  # the stage has ~nothing left
    second = build_teacher(capped, tmp_path, stage="s", driver=True)  # a second driver, its own file
    assert second.cache.path != first.cache.path and second.own.requests == 0
    res = second.complete([ask("one more prompt")], show_progress=False)
    second.close()
    first.close()
    assert res[0].reason == "budget" and len(srv.hits) == 4


def test_kill_mid_write_loses_only_the_uncommitted_tail(srv, tmp_path):
    """Two driver processes write at once; one is killed -9 mid-batch. What it committed is found, its
    ledger row counts exactly its committed results, and a re-run sends only the rest."""
    srv.state.latency_s = 0.03
    cfg = cfg_for(srv, concurrency=2)
    n = 60

    def start(tag: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            from textbooklm.teacher import Request, TeacherConfig, build_teacher
            cfg = TeacherConfig.model_validate_json({cfg.model_dump_json()!r})
            reqs = [Request(messages=[{{"role": "user", "content": f"{tag} {{i:02d}}"}}], max_tokens=4)
                    for i in range({n})]
            t = build_teacher(cfg, {str(tmp_path)!r}, stage="synth", driver=True)
            t.complete(reqs, show_progress=False)
            t.close()
        """)])

    keep, victim = start("keep"), start("victim")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if sum(p.startswith("victim") for p in cached_prompts(tmp_path)) >= 10:
                break
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
        assert keep.wait(timeout=120) == 0
    before = {p for p in cached_prompts(tmp_path) if p.startswith("victim")}
    assert 10 <= len(before) < n, f"the kill should land mid-batch, {len(before)} of {n} were done"
    rows = [r for r in read_ledgers(tmp_path) if r["stage"] == "synth"]
    assert rows[0]["completed"] == n + len(before)  # each file's row counts exactly its committed results

    again = build_teacher(cfg, tmp_path, stage="synth", driver=True)
    res = again.complete([ask(f"victim {i:02d}") for i in range(n)], show_progress=False)
    again.close()
    assert all(r.ok for r in res) and sum(r.cached for r in res) == len(before)
    ok = Counter(h.prompt for h in srv.hits if h.outcome == "ok")
    assert all(ok[p] == 1 for p in before)
    assert sum(v for p, v in ok.items() if p.startswith("victim")) <= n + cfg.concurrency
    assert all(ok[f"keep {i:02d}"] == 1 for i in range(n))


def test_result_round_trip_is_what_a_driver_returns(tmp_path):
    cache = RequestCache(tmp_path / CACHE_FILE)
    req = ask("x")
    cache.commit("openai", "m", [(req, Result(key="k1", text="é\ud800", tokens_in=3))])
    driver = RequestCache.for_driver(tmp_path)
    got = driver.get_many(["k1", "k2"])
    driver.close()
    cache.close()
    assert list(got) == ["k1"] and got["k1"].cached and got["k1"].tokens_in == 3


def test_cache_cli_sees_every_file(srv, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from textbooklm.cli import app

    monkeypatch.delenv("TEXTBOOKLM_TEACHER_CACHE", raising=False)
    cache_dir = tmp_path / "run" / "_cache"
    main = build_teacher(cfg_for(srv), cache_dir, stage="judge")
    main.complete([ask(f"main {i}") for i in range(3)], show_progress=False)
    main.close()
    driver = build_teacher(cfg_for(srv), cache_dir, stage="judge", driver=True)
    driver.complete([ask(f"driver {i}") for i in range(4)], show_progress=False)
    driver.close()
    runner = CliRunner()
    out = runner.invoke(app, ["cache", "stats", str(tmp_path / "run")], terminal_width=200).output
    assert "(2 files)" in " ".join(out.split()) and "gpt-4o-mini" in out, out  # the console may wrap the path
    row = next(line for line in out.splitlines() if "judge" in line)
    assert " 7 " in row and " 0 " in row, row  # requests and cache hits summed over both files
    assert "would remove 7" in runner.invoke(app, ["cache", "prune", str(tmp_path / "run"), "--model",
                                                   "gpt-4o-mini", "--dry-run"]).output
