"""Client-side rate limits: requests/min and tokens/min token buckets, plus pauses the server asks for.

Why client-side: a 429 costs a round trip and, on some providers, counts against the limit itself,
so it is cheaper to never exceed the published limit. The buckets hold ``rate_burst_s`` seconds of
allowance, so over any window of length w at most ``rate * w + bucket`` requests (tokens) start.
When the server still says "slow down" (``retry-after``, ``x-ratelimit-remaining-* = 0``), every worker
pauses, not just the one that was told, since the limit is shared.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """'1s', '6m0s', '20ms', '0.5' -> seconds (the forms OpenAI-style reset headers use)."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, retry-after (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def exhausted_for_s(headers: Mapping[str, str] | None) -> float | None:
    """If x-ratelimit-remaining-requests/-tokens is 0, how long until the matching reset."""
    if not headers:
        return None
    wait = None
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        if remaining is None or reset is None:
            continue
        try:
            left = float(remaining)
        except ValueError:
            continue
        seconds = parse_duration(reset)
        if left <= 0 and seconds is not None:
            wait = max(wait or 0.0, seconds)
    return wait


class RateLimiter:
    """Token buckets for requests and tokens per minute, shared by all workers of one backend."""

    def __init__(self, rpm: float | None, tpm: float | None, burst_s: float = 1.0) -> None:
        self.req_rate = None if rpm is None else rpm / 60.0
        self.tok_rate = None if tpm is None else tpm / 60.0
        self.req_cap = None if self.req_rate is None else max(1.0, self.req_rate * burst_s)
        self.tok_cap = None if self.tok_rate is None else max(1.0, self.tok_rate * burst_s)
        self._req_level = self.req_cap or 0.0
        self._tok_level = self.tok_cap or 0.0
        self._stamp = time.monotonic()
        self._pause_until = 0.0
        self._lock: asyncio.Lock | None = None

    def _refill(self, now: float) -> None:
        dt = now - self._stamp
        self._stamp = now
        if self.req_rate is not None:
            self._req_level = min(self.req_cap, self._req_level + dt * self.req_rate)
        if self.tok_rate is not None:
            self._tok_level = min(self.tok_cap, self._tok_level + dt * self.tok_rate)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` (prompt estimate + max_tokens) may start. FIFO."""
        if (
            self.req_rate is None
            and self.tok_rate is None
            and (self._lock is None or not self._lock.locked())
            and time.monotonic() >= self._pause_until
        ):
            return  # no limits, no pause, nobody queued: nothing to wait for (the common case)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = time.monotonic()
                self._refill(now)
                if now < self._pause_until:
                    await asyncio.sleep(self._pause_until - now)
                    continue
                wait = 0.0
                if self.req_rate is not None and self._req_level < 1.0:
                    wait = max(wait, (1.0 - self._req_level) / self.req_rate)
                if self.tok_rate is not None:
                    # a request bigger than the bucket waits for a full bucket, then owes the rest
                    need = min(float(tokens), self.tok_cap)
                    if self._tok_level < need:
                        wait = max(wait, (need - self._tok_level) / self.tok_rate)
                if wait <= 0:
                    if self.req_rate is not None:
                        self._req_level -= 1.0
                    if self.tok_rate is not None:
                        self._tok_level -= tokens
                    return
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` (the server said so); buckets restart empty afterwards."""
        until = time.monotonic() + seconds
        if until > self._pause_until:
            self._pause_until = until
            self._req_level = min(self._req_level, 0.0)
            self._tok_level = min(self._tok_level, 0.0)
