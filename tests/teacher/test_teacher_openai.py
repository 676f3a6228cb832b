"""The openai backend against a real HTTP server on 127.0.0.1 that injects faults on demand."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections import Counter

import pytest

from textbooklm.teacher import Request, TeacherError, build_teacher


def ask(text: str, **kw) -> Request:
    return Request(messages=[{"role": "user", "content": text}], **kw)


# Both of the SDK's HTTP transports: aiohttp (the default when installed) and httpx.
TRANSPORTS = pytest.mark.parametrize("http", ["aiohttp", "httpx"])


@TRANSPORTS
def test_completes_caches_and_never_resends(server, make_cfg, tmp_path, http):
    teacher = build_teacher(make_cfg(http=http), tmp_path, stage="judge")
    reqs = [ask(f"prompt {i} about lists") for i in range(20)] + [ask("prompt 3 about lists")]
    results = teacher.complete(reqs, show_progress=False)
    assert all(r.ok for r in results)
    assert results[0].text == "echo prompt 0 about lists"
    assert results[0].tokens_out == 5 and results[0].tokens_in > 0
    assert results[3].text == results[20].text
    assert len(server.hits) == 20, "a duplicate inside one batch must be sent once"
    again = teacher.complete(reqs, show_progress=False)
    assert [r.text for r in again] == [r.text for r in results]
    assert all(r.cached for r in again)
    assert len(server.hits) == 20, "a finished request was sent again"
    led = teacher.ledger
    assert (led.requests, led.completed, led.cached, led.failed) == (40, 20, 20, 0)  # unique requests
    assert led.tokens_out == sum(r.tokens_out for r in results[:20])
    # gpt-4o-mini preset: $0.15 / $0.60 per 1M
    assert led.cost_usd == pytest.approx((led.tokens_in * 0.15 + led.tokens_out * 0.6) / 1e6)
    teacher.close()


@TRANSPORTS
def test_every_fault_ends_completed_or_failed_with_reason(server, make_cfg, tmp_path, http):
    server.state.hang_s = 1.5
    server.inject("429", count=1, match="p-429", retry_after=0.3)
    server.inject("500", count=2, match="p-err2")
    server.inject("hang", count=1, match="p-hang")
    server.inject("drop", count=1, match="p-drop")
    server.inject("malformed", count=1, match="p-bad1")
    server.inject("malformed", count=99, match="p-badall")
    server.inject("500", count=99, match="p-errall")
    cfg = make_cfg(timeout_s=0.5, max_retries=3, http=http)
    teacher = build_teacher(cfg, tmp_path, stage="synth")
    names = ["p-ok", "p-429", "p-err2", "p-hang", "p-drop", "p-bad1", "p-badall", "p-errall"]
    results = teacher.complete([ask(n) for n in names], show_progress=False)
    by = dict(zip(names, results, strict=True))
    for name in ["p-ok", "p-429", "p-err2", "p-hang", "p-drop", "p-bad1"]:
        assert by[name].ok, (name, by[name].error)
    assert by["p-badall"].reason == "malformed_reply"
    assert by["p-errall"].reason == "server_error"
    assert "after 4 attempts" in by["p-errall"].error
    assert by["p-hang"].retries == {"timeout": 1}
    assert by["p-drop"].retries == {"connection": 1}
    assert by["p-err2"].retries == {"server_error": 2}

    sent = Counter(h.prompt for h in server.hits)
    expected = {"p-ok": 1, "p-429": 2, "p-err2": 3, "p-hang": 2, "p-drop": 2, "p-bad1": 2, "p-badall": 4,
                "p-errall": 4}
    assert dict(sent) == expected
    # Once a request succeeded, the server never saw it again.
    for name in expected:
        outcomes = [h.outcome for h in server.hits if h.prompt == name]
        assert "ok" not in outcomes[:-1], (name, outcomes)
    # The retry after a 429 waited for retry-after.
    t429 = [h.t for h in server.hits if h.prompt == "p-429"]
    assert t429[1] - t429[0] >= 0.29
    assert teacher.ledger.failures == {"malformed_reply": 1, "server_error": 1}
    assert teacher.ledger.retries["timeout"] == 1

    # A re-run sends only what did not complete.
    before = len(server.hits)
    teacher.complete([ask(n) for n in names], show_progress=False)
    resent = Counter(h.prompt for h in server.hits[before:])
    assert set(resent) == {"p-badall", "p-errall"}
    teacher.close()


def test_client_error_is_not_retried(server, make_cfg):
    # The server answers 404 for an unknown path: a client error, final at once.
    bad = make_cfg(base_url=server.base_url + "/nowhere")
    teacher = build_teacher(bad, None)
    res = teacher.complete([ask("x")], show_progress=False)[0]
    assert res.error == "client_error: http_404: not found"  # the server's own message
    assert len(server.hits) == 0  # the 404 comes before the hit log; nothing retried
    assert res.attempts == 1


def test_score_choices_from_logprobs(server, make_cfg, tmp_path):
    teacher = build_teacher(make_cfg(), tmp_path)
    grades = [str(i) for i in range(6)]
    probs = teacher.score_choices("Rate this code 0-5", grades)
    assert sum(probs) == pytest.approx(1.0)
    w = server.state.top
    total = sum(w[g] for g in grades)
    assert probs == pytest.approx([w[g] / total for g in grades])
    assert server.hits[-1].body["logprobs"] is True and server.hits[-1].body["max_tokens"] == 1
    yn = teacher.score_choices("Is it good?", ["yes", "no"])
    assert yn == pytest.approx([0.6, 0.4])

    server.inject("no_logprobs", count=1)
    with pytest.raises(TeacherError, match="no_choice_logprobs"):
        teacher.score_choices("A server without logprobs", grades)


def test_a_paid_reply_without_logprobs_is_cached_and_a_refusal_is_not(server, make_cfg, tmp_path):
    """A 200 reply without label logprobs was billed and asking again gives the same: not sent twice."""
    grades = tuple(str(i) for i in range(6))
    server.inject("no_logprobs", count=99, match="paid")
    teacher = build_teacher(make_cfg(), tmp_path, stage="judge")
    first = teacher.complete([ask("paid, no logprobs", max_tokens=1, choices=grades)], show_progress=False)[0]
    assert first.reason == "no_choice_logprobs" and first.answered and first.tokens_out > 0
    teacher.close()
    again_teacher = build_teacher(make_cfg(), tmp_path, stage="judge")
    again = again_teacher.complete([ask("paid, no logprobs", max_tokens=1, choices=grades)], show_progress=False)[0]
    assert again.cached and again.reason == "no_choice_logprobs" and len(server.hits) == 1
    # a server error is not an answer: the next run asks again
    server.inject("500", count=99, match="broken")
    cfg = make_cfg(max_retries=0)
    failed = again_teacher.complete([ask("broken server")], show_progress=False)[0]
    assert failed.reason == "server_error" and not failed.cacheable
    again_teacher.close()
    third = build_teacher(cfg, tmp_path, stage="judge")
    assert not third.complete([ask("broken server")], show_progress=False)[0].cached
    third.close()


def test_missing_key_for_openai_is_a_clear_error(monkeypatch):
    from textbooklm.teacher import TeacherConfig

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    cfg = TeacherConfig(backend="openai", model="gpt-4o", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(TeacherError, match="NO_SUCH_KEY_VAR is not set"):
        build_teacher(cfg, None)


@TRANSPORTS
def test_connections_carry_over_between_batches(server, make_cfg, tmp_path, http):
    teacher = build_teacher(make_cfg(concurrency=4, http=http), tmp_path)
    teacher.complete([ask(f"first {i}") for i in range(12)], show_progress=False)
    first = {h.port for h in server.hits}
    teacher.complete([ask(f"second {i}") for i in range(12)], show_progress=False)
    second = {h.port for h in server.hits[12:]}
    assert len(server.hits) == 24 and 1 <= len(first) <= 4
    assert second <= first, "the second batch opened new connections instead of reusing the first's"
    teacher.close()
    teacher.close()  # twice is harmless


@TRANSPORTS
def test_nothing_left_open(server, make_cfg, tmp_path, http, caplog):
    """A teacher dropped without close(), and acomplete() on the caller's loops, leave no open sockets."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dropped = build_teacher(make_cfg(http=http), None)
        dropped.complete([ask("dropped")], show_progress=False)
        del dropped
        teacher = build_teacher(make_cfg(http=http), tmp_path)
        for i in range(2):  # two loops of the caller's, one after the other
            assert asyncio.run(teacher.acomplete([ask(f"own loop {i}")], show_progress=False))[0].ok
        teacher.close()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks
    assert "Unclosed" not in caplog.text
    assert len(server.hits) == 3


def test_gc_thresholds_restored_after_a_batch(server, make_cfg):
    import textbooklm.teacher.teacher as teacher_mod

    seen: list[tuple[int, ...]] = []
    before = gc.get_threshold()
    teacher = build_teacher(make_cfg(), None)
    real = teacher.acomplete

    async def spy(*a, **kw):
        seen.append(gc.get_threshold())
        return await real(*a, **kw)

    teacher.acomplete = spy
    teacher.complete([ask("gc")], show_progress=False)
    assert seen[0][0] == teacher_mod.GC_THRESHOLD0 and gc.get_threshold() == before
    gc.set_threshold(0)  # an application that switched the collector off keeps it off
    try:
        teacher.complete([ask("gc off")], show_progress=False)
        assert seen[1][0] == 0
    finally:
        gc.set_threshold(*before)
    teacher.close()


@pytest.mark.parametrize("bad", ["sk-abc\n", "sk-abc\r\n", " sk-abc", "sk-\tabc", "sk-\x1babc"])
def test_key_with_whitespace_or_control_chars_is_refused_before_any_request(server, make_cfg, monkeypatch, bad):
    KEY_ENV = make_cfg().api_key_env  # noqa: N806  (not `from conftest import`: another folder's conftest may win)
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(TeacherError) as err:
        build_teacher(make_cfg(), None)
    assert KEY_ENV in str(err.value) and "sk-" not in str(err.value)
    assert server.hits == []


def test_unset_key_variable_is_named_before_any_request(server, make_cfg, monkeypatch):
    cfg = make_cfg(api_key_env="TEXTBOOKLM_UNSET_KEY_VAR")
    monkeypatch.delenv("TEXTBOOKLM_UNSET_KEY_VAR", raising=False)
    with pytest.raises(TeacherError, match="TEXTBOOKLM_UNSET_KEY_VAR is not set.*api_key_env = \"\""):
        build_teacher(cfg, None)
    assert server.hits == []
    # a keyless self-hosted server: api_key_env = "" sends no key of the user's
    teacher = build_teacher(make_cfg(api_key_env=""), None)
    assert teacher.complete([ask("keyless")], show_progress=False)[0].ok
    assert server.hits[-1].auth == "Bearer no-key"
    teacher.close()


def test_connection_refused_is_said_at_once(make_cfg):
    import socket

    with socket.socket() as s:  # a port nothing listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        for http in ("aiohttp", "httpx"):
            teacher = build_teacher(make_cfg(base_url=f"http://127.0.0.1:{port}/v1", max_retries=6,
                                             backoff_base_s=1.0, http=http), None)
            res = teacher.complete([ask("anyone?")], show_progress=False)[0]
            teacher.close()
            assert res.reason == "connection" and "connection refused" in res.error, (http, res.error)
            assert f"127.0.0.1:{port}" in res.error and res.attempts == 1 and res.latency_s < 2.0


def test_401_carries_the_servers_message_and_names_the_key_variable(make_cfg, api_key):
    from fakes.echo_server import EchoServer, _Handler

    KEY_ENV = make_cfg().api_key_env  # noqa: N806

    class Refuses(_Handler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(401, b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}')

    with EchoServer() as srv:
        srv._httpd.RequestHandlerClass = Refuses
        teacher = build_teacher(make_cfg(base_url=srv.base_url), None)
        res = teacher.complete([ask("who am I")], show_progress=False)[0]
        teacher.close()
    assert res.error == f"client_error: http_401: Incorrect API key provided (the key came from ${KEY_ENV})"
    assert api_key not in res.error and res.attempts == 1
    assert f"client_error 1: http_401: Incorrect API key provided (the key came from ${KEY_ENV})" in teacher.summary()
