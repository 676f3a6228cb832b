"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint through AsyncOpenAI.

Works against OpenAI, vLLM, llama.cpp server, Ollama and TGI. The SDK's own retries are switched
off: this backend retries itself so that every retry passes the shared rate limiter, honours the
server's ``retry-after``, and is counted by reason in the ledger. The API key is read from the
environment variable the config names, handed to the SDK, and never logged or stored.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai

from textbooklm.teacher.backend import Finish, Job, TeacherError, run_all
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.ratelimit import RateLimiter, exhausted_for_s, retry_after_s
from textbooklm.teacher.types import (
    REASON_CLIENT,
    REASON_CONNECTION,
    REASON_MALFORMED,
    REASON_NO_LOGPROBS,
    REASON_RATE_LIMITED,
    REASON_SERVER,
    REASON_TIMEOUT,
    Request,
    Result,
)

log = logging.getLogger("textbooklm.teacher")

# The HTTP library the installed openai SDK is built on (httpx2 in new releases, httpx before).
_http = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")


def aiohttp_available() -> bool:
    """True when the SDK can run on aiohttp (``openai[aiohttp]``: the SDK's DefaultAioHttpClient + aiohttp)."""
    return hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") is not None


def make_http_client(cfg: TeacherConfig) -> Any:
    """The SDK's own HTTP client, with a connection pool sized to ``concurrency``.

    Why aiohttp by default: at hundreds of requests a second the client's CPU, not the network, is
    the limit, and the SDK's aiohttp transport (C HTTP parser, one write per request) costs about
    half of httpx + httpcore + h11 per request. Both are the SDK's documented clients; the pool is
    sized so that every worker keeps its own keep-alive connection and no request queues for one.
    """
    use_aiohttp = cfg.http == "aiohttp" or (cfg.http == "auto" and aiohttp_available())
    limits = _http.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    if use_aiohttp:
        if not aiohttp_available():
            raise TeacherError(
                f"teacher {cfg.model!r}: http = 'aiohttp' needs the openai SDK's aiohttp extra "
                "(pip install 'openai[aiohttp]')"
            )
        return openai.DefaultAioHttpClient(limits=limits)
    return openai.DefaultAsyncHttpxClient(limits=limits)


def _dropped_not_timed_out(exc: BaseException) -> bool:
    """An APITimeoutError that was really a dropped connection.

    The SDK's aiohttp transport maps every aiohttp connection error (the server closing the socket
    included) to a connect *timeout*; the ledger should say what happened. A real timeout has a
    TimeoutError somewhere in its chain of causes.
    """
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(seen) < 16:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(e, TimeoutError) for e in seen):
        return False
    return any(type(e).__module__.startswith("aiohttp") for e in seen)


def _refused(exc: BaseException) -> bool:
    """Nothing listening at the address: no retry helps within a batch, so it is said at once."""
    cause: BaseException | None = exc
    for _ in range(16):
        if cause is None:
            return False
        if isinstance(cause, ConnectionRefusedError) or "connection refused" in str(cause).lower():
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for a failed request (its JSON ``error.message``, else its body text).

    Why: "HTTP 400" alone hides what vLLM said, e.g. ``max_tokens=4096 cannot be greater than
    max_model_len=2048`` or ``Requested sample logprobs of 20 ... max allowed: 5``.
    """
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
        elif isinstance(err, str):
            message = err
        message = message or body.get("message") or body.get("detail")
    elif isinstance(body, str):
        message = body
    if not message:
        try:
            message = exc.response.text
        except Exception:  # a streamed or closed response: nothing more to say
            message = ""
    text = " ".join(str(message).split())
    return (text[:400] + "...") if len(text) > 400 else (text or "(the server gave no message)")


# vLLM: "Requested sample logprobs of 20, which is greater than max allowed: 5"
_LOGPROBS_CAP = re.compile(r"logprobs.*max(?:imum)? allowed:?\s*(\d+)", re.IGNORECASE)


def allowed_top_logprobs(message: str) -> int | None:
    """The server's top_logprobs cap when ``message`` is its refusal of too many, else None."""
    m = _LOGPROBS_CAP.search(message)
    return int(m.group(1)) if m else None


def check_api_key(variable: str, key: str) -> None:
    """Refuse a key with whitespace or control characters, naming the variable, never the value.

    Why before any request: a trailing newline makes httpx log the Authorization header at debug
    level and aiohttp fail with a bare ValueError, so the user would see the key or nothing useful.
    """
    bad = [ch for ch in key if ch.isspace() or ord(ch) < 32 or ord(ch) == 127]
    if bad:
        what = "a newline" if "\n" in bad or "\r" in bad else "whitespace or control characters"
        raise TeacherError(
            f"environment variable {variable} holds an API key with {what} "
            f"({len(bad)} such character(s), e.g. a trailing newline from a file); fix the variable"
        )


class MalformedReply(ValueError):
    """The server answered 200 but not with a usable chat completion."""


@dataclass
class Outcome:
    """How one HTTP attempt went, as plain data.

    ``reason is None``: a 200 whose body parsed as JSON (``body``); otherwise a failure category
    (``REASON_*``), ``final`` when retrying cannot help. ``wait_s``: the server's retry-after;
    ``pause``: seconds until an exhausted x-ratelimit window resets.
    """

    body: Any = None
    reason: str | None = None
    detail: str = ""
    final: bool = False
    wait_s: float | None = None
    pause: float | None = None


Send = Callable[[dict[str, Any]], Awaitable[Outcome]]


async def attempt_once(client: openai.AsyncOpenAI, body: dict[str, Any], timeout_s: float) -> Outcome:
    """One chat-completions request through the SDK, classified; never raises for HTTP trouble.

    ``detail`` carries the server's own message (``http_400: <server text>``) wherever it sent one.
    """
    try:
        # client.post (the SDK's documented raw call) skips the SDK's typed-params transform and
        # model construction, which cost more CPU than the HTTP exchange itself.
        raw = await client.post("/chat/completions", body=body, cast_to=_http.Response)
        pause = exhausted_for_s(raw.headers)
        try:
            return Outcome(body=json.loads(raw.content), pause=pause)
        except ValueError as exc:
            return Outcome(reason=REASON_MALFORMED, detail=f"reply is not JSON ({exc})", pause=pause)
    except openai.RateLimitError as exc:
        return Outcome(reason=REASON_RATE_LIMITED, detail=f"http_429: {server_message(exc)}",
                       wait_s=retry_after_s(exc.response.headers))
    except openai.APITimeoutError as exc:
        if _refused(exc):
            return Outcome(reason=REASON_CONNECTION, detail=f"connection refused at {client.base_url} "
                           "(nothing is listening there)", final=True)
        if _dropped_not_timed_out(exc):
            return Outcome(reason=REASON_CONNECTION, detail="connection failed (dropped by the server)")
        return Outcome(reason=REASON_TIMEOUT, detail=f"no reply within {timeout_s:g} s")
    except openai.APIConnectionError as exc:
        if _refused(exc):
            return Outcome(reason=REASON_CONNECTION, detail=f"connection refused at {client.base_url} "
                           "(nothing is listening there)", final=True)
        return Outcome(reason=REASON_CONNECTION, detail=f"connection failed ({type(exc.__cause__).__name__})")
    except openai.APIStatusError as exc:
        status = exc.status_code
        detail = f"http_{status}: {server_message(exc)}"
        if status >= 500 or status in (408, 409):
            return Outcome(reason=REASON_SERVER, detail=detail, wait_s=retry_after_s(exc.response.headers))
        return Outcome(reason=REASON_CLIENT, detail=detail, final=True)
    except Exception as exc:  # a bug or an SDK surprise must still end the request with a reason
        log.exception("teacher request: unexpected error")
        return Outcome(reason=REASON_CLIENT, detail=type(exc).__name__, final=True)


def label_key(text: str) -> str:
    """How a label and a token are compared: spaces and case ignored (" High" is "high")."""
    return text.strip().lower()


def choice_probs_from_top(
    top: list[tuple[str, float]], choices: tuple[str, ...]
) -> tuple[list[float], float] | None:
    """Each choice's probability from the first token's top logprobs, and the mass they covered.

    Every returned token that equals a choice after :func:`label_key` adds its probability to that
    choice (so "High", " high" and "high" are one answer). The probabilities are renormalised over
    the choices; the covered mass (their sum before renormalising) says how much of the model's
    answer they describe: 0.016 means the labels were barely among its guesses and the renormalised
    figures mean little. None when no choice is among the returned tokens.
    """
    mass = [0.0] * len(choices)
    wanted = [label_key(c) for c in choices]
    for token, logprob in top:
        t = label_key(token)
        for i, c in enumerate(wanted):
            if t == c:
                mass[i] += math.exp(logprob)
    total = sum(mass)
    if total <= 0:
        return None
    return [m / total for m in mass], total


class OpenAIBackend:
    """Chat completions over HTTP with rate limits, retries, timeouts and malformed-reply handling."""

    name = "openai"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self.queue_size = cfg.concurrency
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                hint = "" if cfg.base_url is None else "; for a server that needs no key set api_key_env = \"\""
                raise TeacherError(
                    f"teacher {cfg.model!r}: environment variable {cfg.api_key_env} is not set "
                    f"(it must hold the API key{hint})"
                )
            check_api_key(cfg.api_key_env, key)
        elif cfg.base_url is None:
            raise TeacherError(f"teacher {cfg.model!r}: api.openai.com needs a key: set api_key_env")
        else:
            key = "no-key"  # the config says this self-hosted server needs none
        self._key = key
        # Lowered once the server says it allows fewer alternatives than asked (vLLM --max-logprobs).
        self.top_logprobs = cfg.top_logprobs
        self.top_logprobs_capped = False
        self.limiter = RateLimiter(cfg.rpm, cfg.tpm, cfg.rate_burst_s)
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.cfg.base_url!r})"

    # -- token estimates ---------------------------------------------------------------------
    def input_token_bound(self, request: Request) -> int:
        """Every BPE token covers at least one byte, so bytes + per-message overhead bounds the prompt."""
        return sum(len(m["content"].encode()) + 8 for m in request.messages) + 8

    def _rate_tokens(self, request: Request) -> int:
        """What the server's tokens/min limit counts: a prompt estimate (~4 chars/token) + max_tokens."""
        chars = sum(len(m["content"]) for m in request.messages)
        return math.ceil(chars / 4) + 4 * len(request.messages) + request.max_tokens

    def order(self, jobs: list[Job]) -> list[Job]:
        return jobs

    # -- serving -----------------------------------------------------------------------------
    async def _client_here(self) -> openai.AsyncOpenAI:
        """The SDK client of the running loop; it lives until :meth:`aclose` (see Teacher.complete)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            await self.aclose()
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._key,
                base_url=self.cfg.base_url,
                max_retries=0,
                timeout=self.cfg.timeout_s,
                http_client=make_http_client(self.cfg),
            )
            self._client_loop = loop
        return self._client

    async def serve(self, queue: asyncio.Queue[Job | None], finish: Finish) -> None:
        client = await self._client_here()

        async def send(body: dict[str, Any]) -> Outcome:
            return await attempt_once(client, body, self.cfg.timeout_s)

        async def worker() -> None:
            while True:
                job = await queue.get()
                if job is None:
                    await queue.put(None)  # let the other workers see the end too
                    return
                await finish(job, await self._complete(send, job))

        await run_all(*(worker() for _ in range(self.cfg.concurrency)))

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.seed is not None:
            kw["seed"] = request.seed
        if request.stop:
            kw["stop"] = list(request.stop)
        if request.json_schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.json_schema, "strict": True},
            }
        if request.choices:
            kw["logprobs"] = True
            kw["top_logprobs"] = self.top_logprobs
        return kw

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half to all of base * 2^(attempt-1), capped."""
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _complete(self, send: Send, job: Job) -> Result:
        """Attempts until one succeeds, fails for good, or the retries run out; policy lives here.

        ``send`` performs ONE attempt and says how it went (plain data); rate limits, retries,
        backoff and the verdict are decided here, once.
        """
        request = job.request
        retries: dict[str, int] = {}
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire(self._rate_tokens(request))
            body = self._kwargs(request)
            out = await send(body)
            if out.pause:
                self.limiter.pause(out.pause)
            reason, detail = out.reason, out.detail
            if reason is None:
                try:
                    result = self._to_result(job.key, request, out.body)
                except MalformedReply as exc:
                    reason, detail = REASON_MALFORMED, str(exc)
                else:
                    result.latency_s = time.monotonic() - start
                    result.attempts = attempt
                    result.retries = retries
                    return result
            if out.final and request.choices and reason == REASON_CLIENT and "logprobs" in detail:
                cap = allowed_top_logprobs(detail)
                if cap is not None and 1 <= cap < body.get("top_logprobs", 0):
                    # the server caps alternatives (vLLM --max-logprobs): ask for what it allows
                    # (compared with what THIS attempt sent: its siblings in flight got the same 400)
                    self.top_logprobs, self.top_logprobs_capped = min(cap, self.top_logprobs), True
                    retries["top_logprobs_capped"] = retries.get("top_logprobs_capped", 0) + 1
                    log.info("teacher: the server allows top_logprobs <= %d; asking for that", cap)
                    continue
                # logprobs refused outright: the caller can still generate and parse a reply
                return self._failed(job, f"{REASON_NO_LOGPROBS}: {detail}", attempt, retries, start)
            if out.final:  # a client error (4xx, or a bug): retrying cannot help
                if detail.startswith("http_401") and self.cfg.api_key_env:
                    detail += f" (the key came from ${self.cfg.api_key_env})"
                return self._failed(job, f"{reason}: {detail}", attempt, retries, start)
            if reason == REASON_RATE_LIMITED and out.wait_s is not None:
                self.limiter.pause(out.wait_s)  # the limit is shared: every worker waits
            retries[reason] = retries.get(reason, 0) + 1
            log.info("teacher request %s: %s (attempt %d)", job.key[:12], detail, attempt)
            if attempt > self.cfg.max_retries:
                return self._failed(
                    job, f"{reason}: {detail}, after {attempt} attempts", attempt, retries, start
                )
            if out.wait_s is None:
                await asyncio.sleep(self._backoff(attempt))
            elif reason != REASON_RATE_LIMITED:
                await asyncio.sleep(out.wait_s)  # a 5xx with retry-after: this request waits
            # after a 429 with retry-after the limiter holds every worker for that long

    @staticmethod
    def _failed(job: Job, error: str, attempt: int, retries: dict[str, int], start: float) -> Result:
        return Result(
            key=job.key, error=error, attempts=attempt, retries=retries, latency_s=time.monotonic() - start
        )

    def _to_result(self, key: str, request: Request, body: Any) -> Result:
        """Check a parsed reply has what we need; anything missing is a malformed reply (retried)."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedReply("reply has no choices")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MalformedReply("reply message content is not text")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens_in = usage.get("prompt_tokens")
        tokens_out = usage.get("completion_tokens")
        if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
            # Some servers omit usage; fall back to estimates so the ledger still counts something.
            tokens_in = self._rate_tokens(request) - request.max_tokens
            tokens_out = math.ceil(len(text) / 4)
        result = Result(
            key=key,
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            finish_reason=choice.get("finish_reason"),
        )
        if request.choices:
            logprobs = choice.get("logprobs")
            content = logprobs.get("content") if isinstance(logprobs, dict) else None
            # retrying will not add logprobs; the tokens are paid, so keep the counts
            if not content or not isinstance(content, list) or not isinstance(content[0], dict):
                result.error = f"{REASON_NO_LOGPROBS}: the server returned no logprobs"
                result.answered = True
                return result
            first = content[0]
            try:
                top = [(str(t["token"]), float(t["logprob"])) for t in (first.get("top_logprobs") or [])]
                top.append((str(first["token"]), float(first["logprob"])))
            except (KeyError, TypeError, ValueError):
                raise MalformedReply("reply logprobs lack token/logprob") from None
            found = choice_probs_from_top(list(dict(top).items()), request.choices)
            if found is None:
                result.error = (f"{REASON_NO_LOGPROBS}: none of {list(request.choices)} among the "
                                f"top {len(top) - 1} tokens")
                result.choice_mass = 0.0
                result.answered = True
            else:
                result.choice_probs, result.choice_mass = found
        return result

    async def aclose(self) -> None:
        client, loop = self._client, self._client_loop
        self._client = self._client_loop = None
        if client is None:
            return
        if loop is asyncio.get_running_loop():
            await client.close()
        # else: it belongs to another loop (complete()'s, then acomplete() from the caller's own
        # loop); it cannot be awaited from here, so its sockets are left to the garbage collector
