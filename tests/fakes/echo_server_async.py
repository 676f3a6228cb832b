"""The echo server on one asyncio event loop: same protocol, replies and faults as :class:`EchoServer`.

Why a second engine: the benchmark runs server and client on the same two cores, and the
thread-per-connection server spends ~0.25 ms of CPU per request (http.server's header parsing,
64 threads taking turns on the GIL); this one parses a request with a few bytes operations and
sleeps its latency on a timer. It speaks just enough HTTP/1.1 for OpenAI-style clients:
keep-alive, ``Content-Length`` bodies (no chunked uploads), one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fakes.echo_server import (
    Hit,
    ServerState,
    _EchoBase,
    _Fault,
    _Handler,
    parse_chat_request,
    retry_header,
)

MAX_HEAD = 64 * 1024
log = logging.getLogger(__name__)
Completion = Callable[[ServerState, dict[str, Any], bool], dict[str, Any]]


class _Connection(asyncio.Protocol):
    """One client connection: buffer bytes, answer each complete request in turn."""

    def __init__(self, server: AsyncEchoServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.port = peer[1] if peer else 0
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        if self.transport is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self.reply(431, b'{"error": {"message": "headers too large"}}', close=True)
            return
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or "chunked" in headers.get("transfer-encoding", "").lower():
            self.reply(400, b'{"error": {"message": "bad request"}}', close=True)
            return
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self.reply(400, b'{"error": {"message": "bad content-length"}}', close=True)
            return
        if len(self.buffer) < end + 4 + length:
            return  # the body is still coming
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.busy = True
        close = headers.get("connection", "").lower() == "close"
        task = asyncio.get_running_loop().create_task(self.server._serve(self, parts[0], parts[1], headers, body))
        task.add_done_callback(lambda t: self._done(t, close))

    def _done(self, task: asyncio.Task[None], close: bool) -> None:
        self.busy = False
        if not task.cancelled() and task.exception() is not None:  # a bug here must not hang the client
            log.error("echo server: request failed: %r", task.exception())
            self.reply(500, b'{"error": {"message": "echo server error"}}', close=True)
            return
        if close and self.transport is not None:
            self.transport.close()
        self._next_request()

    def reply(self, status: int, payload: bytes, headers: dict[str, str] | None = None, close: bool = False) -> None:
        if self.transport is None:
            return
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if close:
            head.append("Connection: close")
        self.transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + payload)
        if close:
            self.transport.close()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncEchoServer(_EchoBase):
    """Start/stop on a background thread (tests) or :meth:`serve_forever` (standalone)."""

    def __init__(
        self,
        latency_s: float = 0.0,
        max_concurrent: int | None = None,
        reply_tokens: int = 8,
        reply: str = "echo",
        completion: Completion = _Handler._completion,
    ) -> None:
        self.state = ServerState(latency_s=latency_s, reply_tokens=reply_tokens, reply=reply)
        self.max_concurrent = max_concurrent
        self.completion = completion
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._connections: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None

    @property
    def base_url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def _run(self, ready: threading.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self.max_concurrent:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        server = await self._loop.create_server(lambda: _Connection(self), sock=self._sock)
        if ready is not None:
            ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for conn in list(self._connections):
                conn.drop()
            await server.wait_closed()

    def start(self) -> AsyncEchoServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(ready),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the asyncio echo server did not start")
        return self

    def serve_forever(self) -> None:
        asyncio.run(self._run())

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, conn: _Connection, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        """The same decisions as ``_Handler.do_POST`` / ``_answer``, in the same order."""
        if method != "POST":
            conn.reply(501, b'{"error": {"message": "unsupported method"}}')
            return
        body = parse_chat_request(path, raw)
        if isinstance(body, tuple):
            conn.reply(*body)
            return
        state = self.state
        hit = Hit(time.time(), body, headers.get("authorization", ""), port=conn.port)
        with state.lock:
            state.hits.append(hit)
            fault = _Handler._take_fault(state, hit)
        if self._slots is None:
            await self._answer(conn, hit, fault)
        else:
            async with self._slots:
                await self._answer(conn, hit, fault)

    async def _answer(self, conn: _Connection, hit: Hit, fault: _Fault | None) -> None:
        state = self.state
        kind = fault.kind if fault else "ok"
        hit.outcome = kind
        if kind == "hang":
            await asyncio.sleep(state.hang_s)
            kind = "drop"
        if kind == "drop":
            conn.drop()
            return
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        if kind == "429":
            conn.reply(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}', retry_header(fault, "1"))
        elif kind == "500":
            conn.reply(500, b'{"error": {"message": "internal error"}}', retry_header(fault, None))
        elif kind == "malformed":
            conn.reply(200, b'{"id": "x", "choices": [{"message": {"content": "trunc')
        else:
            conn.reply(200, json.dumps(self.completion(state, hit.body, kind != "no_logprobs")).encode())
