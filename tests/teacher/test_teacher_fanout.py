"""Several drivers (fanout.py): one list of requests split over executor worker processes, each with its
own client and cache file; requests counted at a real local server (issue 26 item 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from fakes.cache_reader import cached_prompts
from fakes.echo_server_async import AsyncEchoServer

from textbooklm.teacher import Request, TeacherConfig, build_teacher
from textbooklm.teacher.cache import cache_files
from textbooklm.teacher.fanout import complete_spread, driver_of, stage_ledger


def cfg_for(srv: AsyncEchoServer, **kw) -> TeacherConfig:
    base = dict(backend="openai", model="gpt-4o-mini", base_url=srv.base_url, api_key_env="", concurrency=4,
                max_retries=0, timeout_s=5.0)
    return TeacherConfig(**{**base, **kw})


def ask(prompt: str, seed: int | None = None) -> Request:
    return Request(messages=[{"role": "user", "content": prompt}], max_tokens=4, seed=seed)


def same(result) -> tuple:  # noqa: ANN001 - what a reply is, without where it came from or how long it took
    return (result.key, result.text, result.tokens_in, result.tokens_out, result.finish_reason, result.error)


def test_drivers_send_each_request_once_and_agree_with_one(srv, tmp_path):
    reqs = [ask(f"fan {i}", seed=i % 3) for i in range(40)] + [ask("fan 3", seed=0), ask("fan 7", seed=1)]
    solo = build_teacher(cfg_for(srv), tmp_path / "solo", stage="synth")
    expected = solo.complete(reqs, show_progress=False)
    solo.close()
    assert len(srv.hits) == 40
    srv.state.hits.clear()

    cfg = cfg_for(srv, drivers=3)
    got = complete_spread(cfg, reqs, stage="synth", cache_dir=tmp_path / "spread", work_dir=tmp_path / "work")
    assert [same(r) for r in got] == [same(r) for r in expected]  # input order, duplicates included
    sent = Counter((h.prompt, h.body.get("seed")) for h in srv.hits)
    assert len(sent) == 40 and max(sent.values()) == 1  # no request sent twice, across drivers either
    # the drivers wrote files of their own (one per driver running at once: a finished driver's slot is
    # reused); nothing went to the main file
    files = cache_files(tmp_path / "spread")
    assert 1 <= len(files) <= 3 and all(p.name != "teacher_cache.sqlite" for p in files)
    assert sum(cached_prompts(tmp_path / "spread").values()) == 40
    assert {driver_of(r.key, 3) for r in got} == {0, 1, 2}
    led = stage_ledger(cfg, tmp_path / "spread", "synth")
    assert (led.requests, led.completed, led.cached) == (40, 40, 0)
    assert not list((tmp_path / "work" / "drivers").iterdir())  # the call's parts are removed once read

    again = complete_spread(cfg, reqs, stage="synth", cache_dir=tmp_path / "spread", work_dir=tmp_path / "work")
    assert all(r.cached for r in again) and len(srv.hits) == 40
    assert [same(r) for r in again] == [same(r) for r in expected]
    # the in-process teacher of a later run reads the drivers' files
    later = build_teacher(cfg_for(srv), tmp_path / "spread", stage="synth")
    assert all(r.cached for r in later.complete(reqs, show_progress=False)) and len(srv.hits) == 40
    later.close()


def test_failures_are_asked_again_by_the_next_call(srv, tmp_path):
    cfg = cfg_for(srv, drivers=2)
    reqs = [ask(f"flaky {i}") for i in range(6)]
    srv.inject("500", count=1, match="flaky 4")
    first = complete_spread(cfg, reqs, stage="s", cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    assert [r.ok for r in first] == [True] * 4 + [False, True] and first[4].reason == "server_error"
    second = complete_spread(cfg, reqs, stage="s", cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    assert all(r.ok for r in second) and [r.cached for r in second] == [True] * 4 + [False, True]
    assert Counter(h.prompt for h in srv.hits if h.outcome == "ok")["flaky 4"] == 1


def test_budget_is_shared_between_drivers(srv, tmp_path):
    # $1 per prompt token; each prompt is ~10 tokens, each reply at most 4: ~14 $ worst case per request
    cfg = cfg_for(srv, drivers=2, price={"usd_per_1m_input": 1e6, "usd_per_1m_output": 1e6}, budget_usd=100)
    res = complete_spread(cfg, [ask(f"budget {i}") for i in range(30)], stage="b", cache_dir=tmp_path / "c",
                          work_dir=tmp_path / "w")
    led = stage_ledger(cfg, tmp_path / "c", "b")
    assert 0 < led.cost_usd <= 100 and any(r.reason == "budget" for r in res)
    assert sum(r.ok for r in res) == len(srv.hits)


def test_killed_drivers_resume_sending_only_what_is_not_cached(srv, tmp_path):
    srv.state.latency_s = 0.03
    cfg = cfg_for(srv, concurrency=2, drivers=2)
    n = 60
    script = textwrap.dedent(f"""
        from textbooklm.teacher import Request, TeacherConfig
        from textbooklm.teacher.fanout import complete_spread
        cfg = TeacherConfig.model_validate_json({cfg.model_dump_json()!r})
        reqs = [Request(messages=[{{"role": "user", "content": f"kill {{i:02d}}"}}], max_tokens=4) for i in range({n})]
        complete_spread(cfg, reqs, stage="synth", cache_dir={str(tmp_path / "c")!r}, work_dir={str(tmp_path / "w")!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(cached_prompts(tmp_path / "c").values()) >= 12:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the pool's workers die with it (process_lifetime.die_with)
    finally:
        proc.wait(timeout=30)
    time.sleep(0.5)  # let the orphaned workers notice
    before = set(cached_prompts(tmp_path / "c"))
    assert 12 <= len(before) < n, f"the kill should land mid-call, {len(before)} of {n} were done"

    res = complete_spread(cfg, [ask(f"kill {i:02d}") for i in range(n)], stage="synth", cache_dir=tmp_path / "c",
                          work_dir=tmp_path / "w")
    assert all(r.ok for r in res) and sum(r.cached for r in res) >= len(before)
    ok = Counter(h.prompt for h in srv.hits if h.outcome == "ok")
    assert all(ok[p] == 1 for p in before), "a request committed before the kill was sent again"
    assert set(ok) == {f"kill {i:02d}" for i in range(n)}
    assert sum(ok.values()) <= n + cfg.drivers * cfg.concurrency  # only what was in flight at the kill


def test_spread_wraps_a_stage_teacher_only_when_drivers_exceed_one(srv, tmp_path):
    from types import SimpleNamespace

    from textbooklm.executor import map_shards
    from textbooklm.teacher.fanout import SpreadTeacher, spread

    one = SimpleNamespace(cfg=cfg_for(srv), describe=lambda: {"name": "t"})
    ctx = SimpleNamespace(owner=SimpleNamespace(teacher_cache_dir=tmp_path / "c"),
                          map=lambda fn, tasks, markers, description="": map_shards(fn, tasks, markers, workers=2))
    assert spread(one, ctx, "s", tmp_path / "w") is one
    two = spread(SimpleNamespace(cfg=cfg_for(srv, drivers=2), describe=lambda: {"name": "t"}), ctx, "s",
                 tmp_path / "w")
    assert isinstance(two, SpreadTeacher) and two.describe() == {"name": "t"}
    reqs = [ask(f"wrapped {i}") for i in range(6)]
    res = two.complete(reqs)
    direct = build_teacher(cfg_for(srv), tmp_path / "c", stage="s")
    assert [two.key(r) for r in reqs] == [direct.key(r) for r in reqs] == [r.key for r in res]
    direct.close()
    assert two.summary().startswith("teacher gpt-4o-mini [s]: 6 completed, 0 from cache") and len(srv.hits) == 6


def test_one_killed_driver_is_re_run_and_sends_only_what_it_had_not_committed(srv, tmp_path):
    """SIGKILL one pool worker mid-call: the call fails (a broken pool), and calling again re-runs the
    killed driver, which finds its committed replies in its cache file and sends only the rest."""
    import threading

    from textbooklm import executor

    srv.state.latency_s = 0.03
    cfg = cfg_for(srv, concurrency=2, drivers=2)
    reqs = [ask(f"victim {i:02d}") for i in range(60)]
    killed: list[int] = []

    def kill_one_driver() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(cached_prompts(tmp_path / "c").values()) >= 12 and executor._warm is not None:
                pid = next(iter(executor._warm[0]._processes))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_one_driver)
    watcher.start()
    with pytest.raises(Exception, match="terminated abruptly|BrokenProcessPool|process pool"):
        complete_spread(cfg, reqs, stage="synth", cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    watcher.join()
    assert killed
    time.sleep(0.5)  # the other driver is stopped with the broken pool
    before = set(cached_prompts(tmp_path / "c"))
    assert 12 <= len(before) < len(reqs)
    res = complete_spread(cfg, reqs, stage="synth", cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    assert all(r.ok for r in res) and sum(r.cached for r in res) >= len(before)
    ok = Counter(h.prompt for h in srv.hits if h.outcome == "ok")
    assert all(ok[p] == 1 for p in before), "a request committed before the kill was sent again"
    assert sum(ok.values()) <= len(reqs) + cfg.drivers * cfg.concurrency
