"""The contract between the :class:`~textbooklm.teacher.teacher.Teacher` and a backend.

The teacher owns caching, the ledger and the budget; a backend only turns admitted jobs into
results. Jobs arrive on an asyncio queue (``None`` ends it) and each result is handed back through
``finish`` the moment it exists, so it can be committed to the cache before anything else happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from textbooklm.teacher.types import Request, Result


@dataclass
class Job:
    """One unique request on its way through a backend."""

    key: str
    request: Request
    reservation: tuple[float, int] = (0.0, 0)


Finish = Callable[[Job, Result], Awaitable[None]]


class Backend(Protocol):
    name: str
    model: str
    queue_size: int

    def input_token_bound(self, request: Request) -> int:
        """An upper bound on the prompt's tokens (the budget must never be passed)."""
        ...

    def order(self, jobs: list[Job]) -> list[Job]:
        """The order to send jobs in (local batching sorts by length to waste less padding)."""
        ...

    async def serve(self, queue: asyncio.Queue[Job | None], finish: Finish) -> None:
        """Process jobs until the queue yields None; call ``finish`` once per job, never twice."""
        ...

    async def aclose(self) -> None:
        ...


class TeacherError(RuntimeError):
    """A teacher that cannot be used (missing key, no such model, server without logprobs...)."""


async def run_all(*coroutines: Coroutine[Any, Any, Any]) -> None:
    """Run coroutines to the end; if one fails, cancel the others and wait for them, then raise.

    Why not plain gather: it leaves the siblings of a failed task running, and the teacher's event
    loop outlives a batch, so they would linger (holding connections) until the teacher is closed.
    """
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
