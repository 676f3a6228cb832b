"""Rate limits measured at the server, budgets that stop at the right request, and the API key's secrecy."""

from __future__ import annotations

import logging
import math

import pytest

from textbooklm.teacher import Price, Request, build_teacher
from textbooklm.teacher.ratelimit import exhausted_for_s, parse_duration, retry_after_s


def ask(text: str, **kw) -> Request:
    return Request(messages=[{"role": "user", "content": text}], **kw)


def assert_token_bucket(times: list[float], costs: list[float], rate: float, cap: float) -> None:
    """Over every window [t_i, t_j], what started is at most rate * (t_j - t_i) + bucket size.

    Measured at the server, so delivery jitter counts against the client: a fresh HTTP client's first
    connections can arrive ~0.1 s late, together with a later request. One request of slack (and
    20 ms) absorbs that; a missing or broken limiter still fails by a wide margin.
    """
    slack = max(costs) + rate * 0.02
    order = sorted(range(len(times)), key=lambda i: times[i])
    t = [times[i] for i in order]
    c = [costs[i] for i in order]
    for i in range(len(t)):
        spent = 0.0
        for j in range(i, len(t)):
            spent += c[j]
            allowed = rate * (t[j] - t[i]) + cap + 1e-9
            assert spent <= allowed + slack, f"{spent} started in {t[j] - t[i]:.3f} s (allowed {allowed:.2f})"


def test_requests_per_minute_respected_at_the_server(server, make_cfg, tmp_path):
    cfg = make_cfg(rpm=600, rate_burst_s=0.3, concurrency=16)  # 10 req/s, bucket of 3
    teacher = build_teacher(cfg, tmp_path)
    teacher.complete([ask(f"rpm {i}") for i in range(25)], show_progress=False)
    times = [h.t for h in server.hits]
    assert len(times) == 25
    assert_token_bucket(times, [1.0] * 25, rate=10.0, cap=3.0)
    span = max(times) - min(times)
    assert 2.0 <= span <= 3.5, f"25 requests at 10/s with a bucket of 3 should take ~2.2 s, took {span:.2f}"


def test_tokens_per_minute_respected_at_the_server(server, make_cfg, tmp_path):
    cfg = make_cfg(tpm=60 * 400, rate_burst_s=0.5, concurrency=16)  # 400 tokens/s, bucket 200
    teacher = build_teacher(cfg, tmp_path)
    reqs = [ask(f"tpm {i} " + "word " * (4 * i), max_tokens=60) for i in range(12)]
    teacher.complete(reqs, show_progress=False)
    hits = sorted(server.hits, key=lambda h: h.t)
    assert len(hits) == 12
    # What the client charges per request: ~chars/4 of prompt + 4 per message + max_tokens.
    cost = {r.messages[-1]["content"]: math.ceil(len(r.messages[-1]["content"]) / 4) + 4 + 60 for r in reqs}
    assert_token_bucket([h.t for h in hits], [cost[h.prompt] for h in hits], rate=400.0, cap=200.0)


def test_retry_after_pauses_every_worker(server, make_cfg, tmp_path):
    server.inject("429", count=1, retry_after=0.5)
    teacher = build_teacher(make_cfg(concurrency=4), tmp_path)
    res = teacher.complete([ask("first")], show_progress=False)
    assert res[0].ok and res[0].retries == {"rate_limited": 1}
    hits = server.hits
    assert hits[1].t - hits[0].t >= 0.49


def test_server_error_with_retry_after_waits(server, make_cfg, tmp_path):
    server.inject("500", count=1, retry_after=0.3)
    teacher = build_teacher(make_cfg(), tmp_path)
    res = teacher.complete([ask("5xx")], show_progress=False)
    assert res[0].ok and res[0].retries == {"server_error": 1}
    hits = server.hits
    assert hits[1].t - hits[0].t >= 0.29, "a 5xx's retry-after was not honoured"


def test_header_parsing():
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1.5") == 1.5 and parse_duration("soon") is None
    assert retry_after_s({"retry-after": "2"}) == 2 and retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({}) is None
    assert exhausted_for_s({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}) == 1
    assert exhausted_for_s({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s"}) is None


@pytest.mark.parametrize("concurrency", [1, 8])
def test_budget_tokens_stops_before_passing(server, make_cfg, tmp_path, concurrency):
    cfg = make_cfg(budget_tokens=200, concurrency=concurrency)
    teacher = build_teacher(cfg, tmp_path, stage="synth")
    reqs = [ask(f"budget {i:02d}", max_tokens=20) for i in range(40)]
    results = teacher.complete(reqs, show_progress=False)
    done = [r for r in results if r.ok]
    stopped = [r for r in results if not r.ok]
    led = teacher.ledger
    spent = led.tokens_in + led.tokens_out
    assert spent <= 200
    assert done and stopped and all(r.reason == "budget" for r in stopped)
    assert "budget_tokens 200" in stopped[0].error
    # The right point: the next request's worst case (prompt bound + max_tokens) would have passed it.
    worst_next = teacher.backend.input_token_bound(reqs[0]) + 20
    assert spent + worst_next > 200
    assert len(server.hits) == len(done), "a request refused for budget must never be sent"
    assert led.budget_stopped and "stopped at the budget" in teacher.summary()

    # Resuming the stage keeps the spend: nothing more is sent.
    again = build_teacher(cfg, tmp_path, stage="synth")
    res2 = again.complete(reqs, show_progress=False)
    assert sum(r.ok for r in res2) == len(done)
    assert len(server.hits) == len(done)


def test_budget_usd_with_a_price(server, make_cfg, tmp_path):
    price = Price(usd_per_1m_input=10_000.0, usd_per_1m_output=20_000.0)  # 1 cent / 2 cents per token
    cfg = make_cfg(price=price, budget_usd=2.0, concurrency=4)
    teacher = build_teacher(cfg, tmp_path)
    reqs = [ask(f"usd {i}", max_tokens=5) for i in range(30)]
    results = teacher.complete(reqs, show_progress=False)
    led = teacher.ledger
    assert led.cost_usd <= 2.0
    assert led.cost_usd == pytest.approx(price.cost(led.tokens_in, led.tokens_out))
    n_ok = sum(r.ok for r in results)
    assert 0 < n_ok < 30 and len(server.hits) == n_ok
    worst_next = price.cost(teacher.backend.input_token_bound(reqs[0]), 5)
    assert led.cost_usd + worst_next > 2.0


@pytest.mark.parametrize("http", ["aiohttp", "httpx"])
def test_api_key_never_in_logs_cache_or_output(server, make_cfg, tmp_path, api_key, caplog, capfd, http):
    caplog.set_level(logging.DEBUG)  # every logger, including the HTTP client's
    server.inject("500", count=2)
    server.inject("429", count=1, retry_after=0.05)
    server.inject("malformed", count=1)
    server.inject("drop", count=1)
    teacher = build_teacher(make_cfg(max_retries=5, http=http), tmp_path / "cache", stage="judge")
    results = teacher.complete([ask(f"secret test {i}") for i in range(6)], show_progress=True)
    assert all(r.ok for r in results)
    # The key did reach the server (so the assertions below are not vacuous)...
    assert all(h.auth == f"Bearer {api_key}" for h in server.hits)
    # ...and nowhere else.
    from textbooklm.teacher.ledger import LedgerEntry

    print(teacher.summary(), repr(teacher.backend), repr(teacher.cfg), LedgerEntry(**teacher.ledger.to_dict()))
    teacher.close()
    out, err = capfd.readouterr()
    assert api_key not in out + err
    assert api_key not in caplog.text
    assert api_key not in teacher.cfg.model_dump_json()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files, "the cache should have written files"
    for path in files:
        assert api_key.encode() not in path.read_bytes(), path
