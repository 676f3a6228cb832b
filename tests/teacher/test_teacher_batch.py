"""The Batch API backend against a local fake of /v1/files and /v1/batches (tests/fakes/batch_server.py):
results, the shared cache, partial failures, expiry, a refused batch, 429 polls, batch prices, and a
kill at each point between upload and download that must never submit a batch twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.batch_server import FakeBatchAPI

from textbooklm.teacher import Request, TeacherConfig, build_teacher
from textbooklm.teacher.batch_store import BatchStore

PRICE = {"usd_per_1m_input": 2.0, "usd_per_1m_output": 8.0}


def _cfg(base_url: str, batch: bool = True, **kw) -> TeacherConfig:
    fields = dict(backend="openai", model="gpt-test", base_url=base_url, api_key_env="", batch=batch,
                  batch_poll_s=0.01, batch_poll_max_s=0.05, batch_collect_s=0.05, backoff_base_s=0.01,
                  backoff_max_s=0.05, price=PRICE)
    return TeacherConfig(**{**fields, **kw})


def _requests(n: int) -> list[Request]:
    return [Request(messages=[{"role": "user", "content": f"write lesson {i}"}], max_tokens=32) for i in range(n)]


def test_replies_arrive_in_order_cached_as_synchronous_ones_at_the_batch_price(tmp_path):
    with FakeBatchAPI() as fake:
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        results = teacher.complete(_requests(5))
        cost = teacher.ledger.cost_usd
        teacher.close()
        assert [r.text for r in results] == [f"echo: write lesson {i}" for i in range(5)]
        assert all(r.ok for r in results) and fake.creates == 1
        tokens_in = sum(r.tokens_in for r in results)
        tokens_out = sum(r.tokens_out for r in results)
        assert cost == pytest.approx((tokens_in * 2.0 + tokens_out * 8.0) / 1e6 * 0.5)
        # A synchronous teacher on the same cache sends nothing: the fake has no /chat/completions.
        sync = build_teacher(_cfg(fake.base_url, batch=False, max_retries=0), tmp_path, stage="t")
        again = sync.complete(_requests(5))
        sync.close()
        assert [r.text for r in again] == [r.text for r in results] and fake.creates == 1


def test_failed_and_expired_lines_are_rebatched_and_4xx_fail_with_the_servers_message(tmp_path):
    with FakeBatchAPI() as fake:
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        reqs = _requests(6)
        keys = [teacher.key(r) for r in reqs]
        fake.faults.fail_lines = {keys[0], keys[1]}  # 500 once
        fake.faults.bad_lines = {keys[2]}  # 400 every time
        fake.faults.expire = 1  # the first batch answers only its first half
        results = teacher.complete(reqs)
        teacher.close()
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert "client_error: http_400: bad request line" in results[2].error
    assert results[0].retries == {"batch": 1} and fake.creates == 2  # one re-batch for all of them


def test_a_refused_batch_fails_its_requests_and_is_not_resent(tmp_path):
    with FakeBatchAPI() as fake:
        fake.faults.refuse = 1
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        results = teacher.complete(_requests(3))
        teacher.close()
        assert not any(r.ok for r in results) and fake.creates == 1
        assert all("batch-failed: invalid_request: line 1: body.model is required" in r.error for r in results)


def test_polls_answered_429_are_retried(tmp_path):
    with FakeBatchAPI(polls_to_finish=3) as fake:
        fake.faults.poll_429 = 3
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        results = teacher.complete(_requests(2))
        teacher.close()
    assert all(r.ok for r in results) and fake.creates == 1


def test_batch_needs_the_openai_backend_and_a_cache():
    with pytest.raises(ValueError, match="batch = true needs backend = 'openai'"):
        TeacherConfig(backend="local", model="smollm2", batch=True)
    from textbooklm.teacher import TeacherError

    with pytest.raises(TeacherError, match="needs a cache folder"):
        build_teacher(_cfg("http://127.0.0.1:9/v1"), None)


CHILD = """import sys
from textbooklm.teacher import Request, TeacherConfig, build_teacher
cfg = TeacherConfig(backend="openai", model="gpt-test", base_url=sys.argv[1], api_key_env="", batch=True,
                    batch_poll_s=0.01, batch_poll_max_s=0.05, batch_collect_s=0.05)
t = build_teacher(cfg, sys.argv[2], stage="t")
t.complete([Request(messages=[{"role": "user", "content": f"write lesson {i}"}], max_tokens=32) for i in range(4)])
"""


def test_killed_while_the_batch_runs_resumes_without_submitting_again(tmp_path):
    with FakeBatchAPI(polls_to_finish=10**9) as fake:  # never finishes while the child lives
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                             os.environ.get("PYTHONPATH", "")])}
        child = subprocess.Popen([sys.executable, "-c", CHILD, fake.base_url, str(tmp_path)], env=env)
        deadline = time.monotonic() + 60
        while fake.creates == 0 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert fake.creates == 1, "the child never created its batch"
        store = BatchStore(tmp_path / "batches")
        while time.monotonic() < deadline and [s.state for s in store.all("gpt-test")] != ["submitted"]:
            time.sleep(0.02)  # (a kill before the id is recorded: the next test)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        [sub] = store.all("gpt-test")
        assert sub.state == "submitted" and sub.batch_id
        fake.polls_to_finish = 1
        teacher = build_teacher(_cfg(fake.base_url, price=None), tmp_path, stage="t")
        results = teacher.complete(_requests(4))
        teacher.close()
        assert all(r.ok for r in results) and fake.creates == 1


def test_killed_between_upload_and_create_adopts_or_creates_once(tmp_path):
    with FakeBatchAPI() as fake:
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        reqs = _requests(2)
        backend = teacher.backend
        data = b"\n".join(backend._line(type("J", (), {"key": teacher.key(r), "request": r})()) for r in reqs)
        store = BatchStore(tmp_path / "batches")
        # Case 1: the file was uploaded and the batch created, then the kill came before its id was recorded.
        fid = fake._new_file(data + b"\n", "batch")["id"]
        fake._create({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
        sub = store.new("gpt-test", [teacher.key(r) for r in reqs], 0)
        sub.input_file_id, sub.created_at = fid, time.time() - 60
        store.save(sub)
        results = teacher.complete(reqs)
        teacher.close()
        assert all(r.ok for r in results) and fake.creates == 1
        recorded = json.loads((tmp_path / "batches" / f"{sub.local_id}.json").read_text())
        assert recorded["state"] == "downloaded" and recorded["batch_id"] == "batch-1"
        # Case 2: uploaded and recorded, killed before the batch was created: created once, on resume.
        teacher = build_teacher(_cfg(fake.base_url), tmp_path, stage="t")
        more = _requests(4)[2:]
        data = b"\n".join(backend._line(type("J", (), {"key": teacher.key(r), "request": r})()) for r in more)
        sub = store.new("gpt-test", [teacher.key(r) for r in more], 0)
        sub.input_file_id, sub.created_at = fake._new_file(data + b"\n", "batch")["id"], time.time() - 60
        store.save(sub)
        results = teacher.complete(more)
        teacher.close()
        assert all(r.ok for r in results) and fake.creates == 2


def test_cost_estimates_use_the_batch_price():
    from textbooklm.teacher.config import StageEstimate
    from textbooklm.teacher.cost import estimate

    plan = {"textbooks": StageEstimate(teacher="t", requests=1000, input_tokens_per_request=500,
                                       output_tokens_per_request=1000)}
    sync = estimate({"t": _cfg("http://x/v1", batch=False)}, plan)[0]
    batch = estimate({"t": _cfg("http://x/v1")}, plan)[0]
    assert batch.usd == pytest.approx(sync.usd * 0.5) and sync.usd == pytest.approx(9.0)
