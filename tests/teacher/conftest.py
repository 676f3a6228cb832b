"""Fixtures for the teacher tests: a real OpenAI-compatible HTTP server on 127.0.0.1 and a secret key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.echo_server import EchoServer
from fakes.echo_server_async import AsyncEchoServer

from textbooklm.teacher import TeacherConfig

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c1e5b"
KEY_ENV = "TEXTBOOKLM_TEST_TEACHER_KEY"


@pytest.fixture(params=["threads", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[EchoServer | AsyncEchoServer]:
    """Both engines of the test server: every client test also checks they speak the same protocol."""
    engine = EchoServer if request.param == "threads" else AsyncEchoServer
    with engine(latency_s=0.0) as srv:
        yield srv


@pytest.fixture
def srv() -> Iterator[AsyncEchoServer]:
    """One asyncio test server with no latency (the cache-file and driver tests count requests at it)."""
    with AsyncEchoServer(latency_s=0.0) as s:
        yield s


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def make_cfg(server: EchoServer, api_key: str):
    """Build a teacher config pointed at the test server, with fast retries so fault tests are quick."""

    def make(**kw) -> TeacherConfig:
        base = dict(
            backend="openai",
            model="gpt-4o-mini",
            base_url=server.base_url,
            api_key_env=KEY_ENV,
            concurrency=8,
            max_retries=3,
            backoff_base_s=0.02,
            backoff_max_s=0.1,
            timeout_s=2.0,
        )
        base.update(kw)
        return TeacherConfig(**base)

    return make
