"""``processes = N``: HTTP attempts in client worker processes, policy (retries, limits, cache) in the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter

import pytest

from textbooklm.teacher import Request, TeacherError, build_teacher

pytestmark = pytest.mark.slow  # each teacher starts two Python processes


def ask(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}], max_tokens=8)


def children(teacher) -> list:
    return [c.proc for c in teacher.backend._pool._children]


def test_faults_retries_cache_and_key_across_processes(server, make_cfg, tmp_path, api_key):
    server.inject("500", count=1, match="w-err")
    server.inject("drop", count=1, match="w-drop")
    server.inject("429", count=1, match="w-429", retry_after=0.2)
    server.inject("malformed", count=1, match="w-bad")
    teacher = build_teacher(make_cfg(processes=2, concurrency=4), tmp_path / "cache", stage="judge")
    names = ["w-ok", "w-err", "w-drop", "w-429", "w-bad"] + [f"w-{i}" for i in range(15)]
    results = teacher.complete([ask(n) for n in names], show_progress=False)
    by = dict(zip(names, results, strict=True))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert by["w-err"].retries == {"server_error": 1} and by["w-drop"].retries == {"connection": 1}
    assert by["w-429"].retries == {"rate_limited": 1} and by["w-bad"].retries == {"malformed_reply": 1}
    assert by["w-ok"].text == "echo w-ok"
    sent = Counter(h.prompt for h in server.hits)
    assert sent["w-ok"] == 1 and sent["w-err"] == 2 and len(server.hits) == len(names) + 4

    procs = children(teacher)
    assert len(procs) == 2 and all(p.poll() is None for p in procs)
    for p in procs:  # the key travels in the environment, never on a command line
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            assert api_key.encode() not in f.read()
    assert all(h.auth == f"Bearer {api_key}" for h in server.hits)

    again = teacher.complete([ask(n) for n in names], show_progress=False)
    assert all(r.cached for r in again) and len(server.hits) == len(names) + 4
    teacher.close()
    assert all(p.poll() is not None for p in procs), "close() must end the worker processes"
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert api_key.encode() not in path.read_bytes()


def test_a_killed_worker_process_is_survived_then_reported(server, make_cfg):
    server.state.latency_s = 0.05
    teacher = build_teacher(make_cfg(processes=2, concurrency=8, max_retries=3), None)
    teacher.complete([ask("warm")], show_progress=False)
    first, second = children(teacher)
    out: list = []
    run = threading.Thread(target=lambda: out.append(teacher.complete([ask(f"k {i}") for i in range(60)],
                                                                      show_progress=False)))
    run.start()
    while len(server.hits) < 12:  # mid-batch
        time.sleep(0.005)
    os.kill(first.pid, signal.SIGKILL)
    run.join(60)
    results = out[0]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sum(r.retries.get("connection", 0) for r in results) >= 1  # what it held was retried

    os.kill(second.pid, signal.SIGKILL)
    second.wait()
    with pytest.raises(TeacherError, match="every client worker process exited"):
        teacher.complete([ask("nobody left")], show_progress=False)
    # the failed batch's other workers were cancelled, not left waiting on the teacher's loop
    assert not asyncio.all_tasks(teacher._runner.get_loop())
    teacher.close()
