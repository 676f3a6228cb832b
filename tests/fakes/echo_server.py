"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for tests, benchmarks and dry runs.

It answers ``POST /v1/chat/completions`` with a deterministic reply (an echo of the last message),
real ``usage`` counts and, when asked, ``logprobs`` whose first token spreads probability over the
grades "0".."5" and "yes"/"no". It can inject the failures a hosted API produces, on demand:
``429`` with ``retry-after``, ``500``, a hang past the client's timeout, a dropped connection and a
malformed JSON body. Every request is logged (arrival time, body, auth header) so tests can check
what a client really sent, and how often.

Two engines answer the same protocol with the same faults: :class:`EchoServer` (a thread per
connection, http.server; tests swap in their own ``_Handler`` subclass) and
:class:`~fakes.echo_server_async.AsyncEchoServer` (one asyncio loop, about a third of
the CPU per request, which matters when server and client share two cores).

Run standalone (the benchmark does, to keep the server off the client's interpreter)::

    python -m fakes.echo_server --latency 0.05 --max-concurrent 64 [--engine threads]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakes.echo_server_async import AsyncEchoServer

FAULTS = ("429", "500", "hang", "drop", "malformed", "no_logprobs")

# First-token distribution returned when logprobs are requested (unnormalised weights).
DEFAULT_TOP = {"3": 0.4, "4": 0.2, "2": 0.15, "5": 0.05, "1": 0.05, "0": 0.05, "yes": 0.06, "no": 0.04}


@dataclass
class Hit:
    """One request as the server saw it."""

    t: float
    body: dict[str, Any]
    auth: str
    outcome: str = ""
    port: int = 0  # the client's port: which keep-alive connection carried it

    @property
    def prompt(self) -> str:
        msgs = self.body.get("messages") or [{}]
        return str(msgs[-1].get("content", ""))


@dataclass
class _Fault:
    kind: str
    remaining: int
    match: str | None
    retry_after: float | None  # seconds in a retry-after header (429: 1 when unset; 500: none)


@dataclass
class ServerState:
    latency_s: float = 0.0
    reply_tokens: int = 8
    reply: str = "echo"  # "echo": the last message back; "textbook": a distinct long textbook per prompt
    hang_s: float = 5.0
    top: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOP))
    hits: list[Hit] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: threading.BoundedSemaphore | None = None


def retry_header(fault: _Fault | None, default: str | None) -> dict[str, str]:
    """The retry-after header a 429/500 fault answers with (none when neither says)."""
    if fault is not None and fault.retry_after is not None:
        return {"retry-after": f"{fault.retry_after:g}"}
    return {} if default is None else {"retry-after": default}


def parse_chat_request(path: str, raw: bytes) -> dict[str, Any] | tuple[int, bytes]:
    """The request body, or the (status, payload) error reply both server engines send for it."""
    if path.rstrip("/") != "/v1/chat/completions":
        return 404, b'{"error": {"message": "not found"}}'
    try:
        return json.loads(raw)
    except ValueError:
        return 400, b'{"error": {"message": "bad json"}}'


_VOCAB = [f"{a}{b}" for a in ("ta", "ke", "ri", "mo", "su", "ve", "la", "pi", "do", "ne", "gu", "fa", "zo", "wi",
                             "be", "cu") for b in ("n", "lor", "mix", "gat", "sel", "bun", "tro", "ple", "dan", "wek",
                                                     "sor", "til", "mav", "ruk", "pon", "yel")]


def textbook_reply(prompt: str, max_words: int) -> tuple[str, list[str]]:
    """A distinct textbook for each prompt (deterministic in it): up to ``max_words`` words of prose in
    paragraphs and one runnable Python code block; what a teacher writing phi-1 textbooks returns."""
    import hashlib
    import random

    rng = random.Random(hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest())
    fn = f"lesson_{rng.randrange(16**8):08x}"
    code = (f"```python\ndef {fn}(values):\n    total = 0\n    for v in values:\n"
            f"        total += v * {rng.randint(2, 9)}\n    return total\n\nprint({fn}([1, 2, 3]))\n```")
    budget = max(1, max_words - len(code.split()))
    prose = [rng.choice(_VOCAB) for _ in range(budget)]
    paragraphs = [" ".join(prose[i: i + 60]).capitalize() + "." for i in range(0, len(prose), 60)]
    half = len(paragraphs) // 2
    text = "\n\n".join(["# " + " ".join(prose[:4]).title(), *paragraphs[:half], code, *paragraphs[half:]])
    return text, text.split()


def _words(text: str) -> int:
    return max(1, len(text.split()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes; no 40 ms ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet; tests read `hits` instead
        return

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        body = parse_chat_request(self.path, raw)
        if isinstance(body, tuple):
            self._send(*body)
            return
        hit = Hit(time.time(), body, self.headers.get("Authorization", ""), port=self.client_address[1])
        with state.lock:
            state.hits.append(hit)
            fault = self._take_fault(state, hit)
        if state.slots is not None:
            state.slots.acquire()
        try:
            self._answer(state, hit, fault)
        finally:
            if state.slots is not None:
                state.slots.release()

    @staticmethod
    def _take_fault(state: ServerState, hit: Hit) -> _Fault | None:
        for f in state.faults:
            if f.remaining > 0 and (f.match is None or f.match in hit.prompt):
                f.remaining -= 1
                return f
        return None

    def _answer(self, state: ServerState, hit: Hit, fault: _Fault | None) -> None:
        kind = fault.kind if fault else "ok"
        hit.outcome = kind
        if kind == "hang":
            time.sleep(state.hang_s)
            kind = "drop"
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if state.latency_s:
            time.sleep(state.latency_s)
        if kind == "429":
            self._send(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}', retry_header(fault, "1"))
            return
        if kind == "500":
            self._send(500, b'{"error": {"message": "internal error"}}', retry_header(fault, None))
            return
        if kind == "malformed":
            self._send(200, b'{"id": "x", "choices": [{"message": {"content": "trunc')
            return
        self._send(200, json.dumps(self._completion(state, hit.body, kind != "no_logprobs")).encode())

    @staticmethod
    def _completion(state: ServerState, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
        messages = body.get("messages") or []
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        n_out = max(1, min(int(body.get("max_tokens") or state.reply_tokens), state.reply_tokens))
        last = str(messages[-1].get("content", "")) if messages else ""
        if state.reply == "textbook":
            text, words = textbook_reply(last, n_out)
        else:
            words = (["echo"] + last.split())[:n_out]
            text = " ".join(words)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length" if len(words) >= int(body.get("max_tokens") or 1e9) else "stop",
        }
        if body.get("logprobs") and logprobs_ok:
            total = sum(state.top.values())
            k = int(body.get("top_logprobs") or 1)
            ranked = sorted(state.top.items(), key=lambda kv: -kv[1])[:k]
            top = [{"token": t, "logprob": math.log(w / total), "bytes": None} for t, w in ranked]
            choice["logprobs"] = {"content": [dict(top[0], top_logprobs=top)]}
        return {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "echo"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": _words(prompt) + 3 * len(messages),
                "completion_tokens": len(words),
                "total_tokens": _words(prompt) + 3 * len(messages) + len(words),
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class _EchoBase:
    """What both engines share: the state, fault injection and the hit log."""

    state: ServerState

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):  # noqa: ANN201
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def inject(
        self, kind: str, count: int = 1, match: str | None = None, retry_after: float | None = None
    ) -> None:
        """Make the next ``count`` requests (whose last message contains ``match``) fail as ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self.state.lock:
            self.state.faults.append(_Fault(kind, count, match, retry_after))

    @property
    def hits(self) -> list[Hit]:
        with self.state.lock:
            return list(self.state.hits)


class EchoServer(_EchoBase):
    """A thread per connection (http.server); tests may swap in a ``_Handler`` subclass."""

    def __init__(self, latency_s: float = 0.0, max_concurrent: int | None = None, reply_tokens: int = 8,
                 reply: str = "echo") -> None:
        self.state = ServerState(latency_s=latency_s, reply_tokens=reply_tokens, reply=reply)
        if max_concurrent:
            self.state.slots = threading.BoundedSemaphore(max_concurrent)
        self._httpd = _Server(self.state)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--max-concurrent", type=int, default=64, help="requests served at once")
    parser.add_argument("--reply-tokens", type=int, default=8)
    parser.add_argument("--reply", choices=["echo", "textbook"], default="echo",
                        help="echo: the last message back; textbook: a distinct long textbook with one code block")
    parser.add_argument(
        "--engine", choices=["asyncio", "threads"], default="asyncio",
        help="asyncio: one event loop (least CPU per request); threads: a thread per connection",
    )
    args = parser.parse_args(argv)
    server: EchoServer | AsyncEchoServer
    if args.engine == "asyncio":
        from fakes.echo_server_async import AsyncEchoServer

        server = AsyncEchoServer(args.latency, args.max_concurrent, args.reply_tokens, args.reply)
    else:
        server = EchoServer(args.latency, args.max_concurrent, args.reply_tokens, args.reply)
    print(server.base_url, flush=True)  # the parent reads the URL from the first line
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
