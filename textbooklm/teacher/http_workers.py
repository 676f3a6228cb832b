"""Client worker processes for the openai backend (``processes = N``): the HTTP attempts, off the main interpreter.

Why: one Python process spends ~0.65 ms of CPU per request inside the openai SDK, httpx and aiohttp,
so a single event loop saturates near 1,400 requests/s and, well before that, every request queues
behind the others in it. With ``processes = N`` the backend keeps everything that needs one view
of the batch in the parent (rate limits, retries and backoff, budget, cache, ledger) and sends each
*attempt* (one HTTP request) to one of N child processes, each with its own AsyncOpenAI client.
Worth it only for fast endpoints (a local vLLM answering short judge prompts, a benchmark); against
rate-limited hosted APIs one process is plenty and starts faster.

Protocol: 4-byte length + JSON frames over a socketpair. Parent -> child ``{"id", "body"}`` (the
chat-completions body); child -> parent ``{"id", "outcome"}`` (an :class:`Outcome` as a dict).
The API key reaches a child only through its environment (the variable the config names), never
argv or a frame. A child exits when its socket closes: the parent closed it, crashed or was killed.
If a child dies, its attempts in flight end as ``connection`` failures and are retried on the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
from typing import Any

from textbooklm.teacher.backend import TeacherError
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.types import REASON_CONNECTION

_LEN = struct.Struct("!I")


class _Framed:
    """Length-prefixed JSON frames on an asyncio stream; writes are batched per event-loop turn."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._out: list[bytes] = []

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += (_LEN.pack(len(data)), data)

    def _flush(self) -> None:
        data, self._out = b"".join(self._out), []
        if not self.writer.is_closing():
            self.writer.write(data)  # one syscall for every frame of the turn

    async def receive(self) -> dict[str, Any] | None:
        """The next frame, or None once the other side has closed."""
        try:
            (n,) = _LEN.unpack(await self.reader.readexactly(_LEN.size))
            return json.loads(await self.reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._flush()
            self.writer.close()


class _Child:
    def __init__(self, proc: subprocess.Popen, link: _Framed) -> None:
        self.proc = proc
        self.link = link
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self.reader: asyncio.Task[None] | None = None


class WorkerPool:
    """N child processes that each run attempts with their own AsyncOpenAI; bound to one event loop."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self._children: list[_Child] = []
        self._ids = itertools.count()

    async def start(self) -> None:
        config = self.cfg.model_dump_json()  # no key in it: only the NAME of its variable
        for _ in range(self.cfg.processes):
            parent_sock, child_sock = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-m", "textbooklm.teacher.http_workers", str(child_sock.fileno())],
                stdin=subprocess.PIPE,
                pass_fds=(child_sock.fileno(),),
                env=dict(os.environ),  # carries the key's variable, as the parent has it
            )
            child_sock.close()
            assert proc.stdin is not None
            proc.stdin.write(config.encode())
            proc.stdin.close()
            reader, writer = await asyncio.open_connection(sock=parent_sock)
            child = _Child(proc, _Framed(reader, writer))
            child.reader = asyncio.get_running_loop().create_task(self._read(child))
            self._children.append(child)

    async def _read(self, child: _Child) -> None:
        from textbooklm.teacher.openai_backend import Outcome

        while (message := await child.link.receive()) is not None:
            fut = child.waiting.pop(message["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(Outcome(**message["outcome"]))
        child.alive = False  # it exited (or was killed): what it held failed, the parent retries
        gone = Outcome(reason=REASON_CONNECTION, detail="client worker process exited")
        for fut in child.waiting.values():
            if not fut.done():
                fut.set_result(gone)
        child.waiting.clear()

    async def attempt(self, body: dict[str, Any]) -> Any:
        """One attempt on the least busy live child; its Outcome."""
        live = [c for c in self._children if c.alive]
        if not live:
            codes = [c.proc.poll() for c in self._children]
            raise TeacherError(f"teacher {self.cfg.model!r}: every client worker process exited (codes {codes})")
        child = min(live, key=lambda c: len(c.waiting))
        n = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        child.waiting[n] = fut
        child.link.send({"id": n, "body": body})
        return await fut

    def abandon(self) -> None:
        """Stop the children without the loop they belong to (it has ended): kill and reap them."""
        for child in self._children:
            child.alive = False
            with contextlib.suppress(OSError):
                child.proc.kill()
            child.proc.wait()
        self._children.clear()

    async def close(self) -> None:
        for child in self._children:
            child.link.close()
        for child in self._children:
            if child.reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.reader, 10)
            try:
                await asyncio.wait_for(asyncio.to_thread(child.proc.wait), 10)
            except TimeoutError:
                child.proc.kill()
                await asyncio.to_thread(child.proc.wait)
        self._children.clear()


# -- the child -------------------------------------------------------------------------------------
async def _serve_parent(sock: socket.socket, cfg: TeacherConfig) -> None:
    from textbooklm.teacher.openai_backend import OpenAIBackend, attempt_once

    backend = OpenAIBackend(cfg)  # reads the key from the environment, as the parent did
    client = await backend._client_here()
    link = _Framed(*await asyncio.open_connection(sock=sock))
    running: set[asyncio.Task[None]] = set()

    async def one(n: int, body: dict[str, Any]) -> None:
        outcome = await attempt_once(client, body, cfg.timeout_s)
        link.send({"id": n, "outcome": outcome.to_dict()})

    try:
        while (message := await link.receive()) is not None:
            task = asyncio.get_running_loop().create_task(one(message["id"], message["body"]))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        link.close()
        await backend.aclose()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        raise SystemExit("usage: python -m textbooklm.teacher.http_workers FD  (started by the openai backend)")
    cfg = TeacherConfig.model_validate_json(sys.stdin.read())
    sock = socket.socket(fileno=int(args[0]))
    from textbooklm.teacher.teacher import fewer_gc_passes

    with fewer_gc_passes():
        asyncio.run(_serve_parent(sock, cfg))


if __name__ == "__main__":
    main()
