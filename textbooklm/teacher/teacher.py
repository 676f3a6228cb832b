"""The :class:`Teacher`: one backend wrapped in the request cache, the ledger and the budget.

``complete`` is the only way a stage asks an LLM anything. Its guarantees:

- every request ends as a :class:`Result`, completed or failed with a reason, in input order;
- a finished request is committed to the cache before its worker sends anything else, and is
  never sent again (identical requests inside one batch are sent once). Results that finish in the
  same event-loop turn share one transaction (a group commit), so a kill -9 can cost at most the
  requests that were in flight or finished-but-uncommitted, together never more than ``concurrency``
  (each worker holds one or the other, not both; budget refusals are not cached and cost nothing);
- the stage's spend never passes ``budget_usd`` / ``budget_tokens``; past that point the remaining
  requests fail with reason ``budget`` and the summary says the stage stopped at its budget.

``complete`` runs every batch on one event loop that the teacher keeps until :meth:`Teacher.close`,
so the backend's HTTP client and its keep-alive connections (and TLS sessions) carry over from
one batch to the next instead of being rebuilt per batch. ``acomplete`` called from a caller's own
loop closes the backend's client when the batch ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import threading
import time
import weakref
from collections.abc import Iterator, Sequence

from textbooklm.progress import progress_bar
from textbooklm.teacher.backend import Backend, Job, TeacherError, run_all
from textbooklm.teacher.cache import RequestCache, merge_ledgers
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.ledger import BudgetGate, LedgerEntry
from textbooklm.teacher.types import REASON_BUDGET, Message, Request, Result, request_key


class Teacher:
    """Cached, budgeted, ledgered access to one LLM for one stage."""

    def __init__(self, cfg: TeacherConfig, backend: Backend, cache: RequestCache | None, stage: str) -> None:
        self.cfg = cfg
        self.backend = backend
        self.cache = cache
        self.stage = stage
        self.price = cfg.resolved_price()
        # own: what this cache file's writers spent (the row it commits); base: what the other files'
        # writers (other drivers) had spent when it opened. The stage's ledger is their sum.
        saved = cache.own_ledger(stage, cfg.model) if cache is not None else None
        self.own = LedgerEntry.from_dict(saved) if saved else LedgerEntry(stage=stage, model=cfg.model)
        others = cache.other_ledgers(stage, cfg.model) if cache is not None else []
        self.base = LedgerEntry.from_dict(merge_ledgers(others)) if others else None
        self._runner: asyncio.Runner | None = None  # complete()'s loop, kept between batches
        self._shutdown: weakref.finalize | None = None

    @property
    def model(self) -> str:
        return self.cfg.model

    @property
    def ledger(self) -> LedgerEntry:
        """The stage's ledger on this model: this file's row plus the other drivers' (a copy then)."""
        if self.base is None:
            return self.own
        return LedgerEntry.from_dict(merge_ledgers([self.base.to_dict(), self.own.to_dict()]))

    def key(self, request: Request) -> str:
        return request_key(self.backend.name, self.cfg.model, request)

    # -- completing ----------------------------------------------------------------------------
    def complete(self, requests: Sequence[Request], show_progress: bool = True) -> list[Result]:
        """Run a batch to the end (sync wrapper around :meth:`acomplete`, on the teacher's own loop)."""
        if self._runner is None:
            self._runner = asyncio.Runner()
            # Closes the backend and the loop at close(), or when the teacher is dropped or the
            # interpreter exits without close().
            self._shutdown = weakref.finalize(self, _shut_down, self._runner, self.backend)
        with fewer_gc_passes():
            return self._runner.run(self.acomplete(requests, show_progress=show_progress))

    def _on_own_loop(self) -> bool:
        return self._runner is not None and self._runner.get_loop() is asyncio.get_running_loop()

    async def acomplete(self, requests: Sequence[Request], show_progress: bool = True) -> list[Result]:
        start = time.monotonic()
        keys = [self.key(r) for r in requests]
        slots: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            slots.setdefault(k, []).append(i)
        results: list[Result | None] = [None] * len(requests)

        hits = self.cache.get_many(list(slots)) if self.cache is not None else {}
        for k, res in hits.items():
            for i in slots[k]:
                results[i] = dataclasses.replace(res)
            self.own.record(res, self.price)
        jobs = self.backend.order([Job(k, requests[idx[0]]) for k, idx in slots.items() if k not in hits])

        gate = BudgetGate(self.own, self.price, self.cfg.budget_usd, self.cfg.budget_tokens, base=self.base)
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.backend.queue_size)
        finished: set[str] = set()

        pending: list[tuple[Request, Result]] = []  # finished, not committed yet

        def commit_pending(ledger_only: bool = False) -> None:
            """One transaction for every result finished since the last commit, plus the ledger."""
            if self.cache is None or (not pending and not ledger_only):
                return
            batch = pending[:]
            self.cache.commit(self.backend.name, self.cfg.model, batch, (self.stage, self.own.to_dict()))
            del pending[: len(batch)]  # only once committed: a failed commit is tried again

        with progress_bar(f"teacher {self.cfg.model} [{self.stage}]", len(slots), len(hits)) as advance:

            def store(job: Job, result: Result) -> None:
                if job.key in finished:  # a backend bug must not double-count or overwrite
                    raise TeacherError(f"backend finished request {job.key[:12]} twice")
                finished.add(job.key)
                self.own.record(result, self.price)
                for i in slots[job.key]:
                    results[i] = dataclasses.replace(result)
                if show_progress:
                    advance(1)
                if self.cache is not None:
                    pending.append((job.request, result))

            async def finish(job: Job, result: Result) -> None:
                """Group commit: store, yield once, then commit whatever is pending, then go on.

                The yield lets every other reply that arrived in this event-loop turn be stored too;
                the first worker back commits them all in one transaction, the others find nothing
                left. A worker never sends its next request before its own result is committed, so
                a kill -9 costs at most one request per worker (in flight, or finished this turn).
                """
                store(job, result)
                if self.cache is not None:
                    await asyncio.sleep(0)
                    commit_pending()
                await gate.settle(job.reservation)

            async def feed() -> None:
                try:
                    for job in jobs:
                        reservation = None
                        if not gate.exhausted:
                            bound = self.backend.input_token_bound(job.request)
                            reservation = await gate.admit(bound, job.request.max_tokens)
                        if reservation is None:
                            store(job, Result(key=job.key, error=f"{REASON_BUDGET}: {self._budget_text()}"))
                            continue
                        job.reservation = reservation
                        await queue.put(job)
                finally:
                    await queue.put(None)

            try:
                await run_all(feed(), self.backend.serve(queue, finish))
            finally:
                self.own.wall_s += time.monotonic() - start
                try:
                    commit_pending(ledger_only=True)  # the ledger's wall time, and anything a cancellation left
                finally:
                    if not self._on_own_loop():
                        await self.backend.aclose()  # the caller's loop: leave nothing open on it
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise TeacherError(f"{len(missing)} requests got no result (backend {self.backend.name})")
        return results  # type: ignore[return-value]

    def _budget_text(self) -> str:
        parts = []
        if self.cfg.budget_usd is not None:
            parts.append(f"budget_usd {self.cfg.budget_usd:g}")
        if self.cfg.budget_tokens is not None:
            parts.append(f"budget_tokens {self.cfg.budget_tokens}")
        return f"stage {self.stage!r} reached its {' / '.join(parts)} on {self.cfg.model}"

    # -- scoring -------------------------------------------------------------------------------
    def score_choices_many(
        self, prompts: Sequence[str | Sequence[Message]], choices: Sequence[str]
    ) -> list[Result]:
        """Score many prompts; each result's ``choice_probs`` aligns with ``choices`` (None if failed)."""
        reqs = [
            Request(
                messages=[{"role": "user", "content": p}] if isinstance(p, str) else list(p),
                max_tokens=1,
                temperature=0.0,
                choices=tuple(choices),
            )
            for p in prompts
        ]
        return self.complete(reqs, show_progress=len(reqs) > 1)

    def score_choices(self, prompt: str | Sequence[Message], choices: Sequence[str]) -> list[float]:
        """The probability of each choice as the reply (they sum to 1); raises if it cannot be scored."""
        result = self.score_choices_many([prompt], choices)[0]
        if not result.ok or result.choice_probs is None:
            raise TeacherError(f"teacher {self.cfg.model}: could not score choices: {result.error}")
        return result.choice_probs

    def summary(self) -> str:
        return self.ledger.summary()

    def close(self) -> None:
        if self._shutdown is not None:
            self._shutdown()  # runs once; later calls do nothing
            self._runner = None
        if self.cache is not None:
            self.cache.close()


# Allocations between two young-generation passes while a batch runs (CPython's default is 700).
GC_THRESHOLD0 = 20_000
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, ...] | None = None


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the young-generation garbage collector less often while a batch runs.

    Why: with 64 requests in flight, each request's few hundred objects (HTTP request/response,
    futures, coroutine frames) live ~50 ms, long enough to be promoted by the frequent default
    young passes into the old generation; the promotions then force full collections, which walk
    every object the openai SDK and pydantic created at import. Measured at 2,000 requests/64 in
    flight: 0.15 ms of the client's ~0.9 ms CPU per request went to the collector; with this, ~0.
    Cyclic garbage is still collected, just in bigger, rarer passes; the thresholds are restored
    when the last running batch ends (unless something else changed them meanwhile).
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            saved = gc.get_threshold()
            # a threshold of 0 means the application switched collection off: leave it so
            if saved[0] and saved[0] < GC_THRESHOLD0:
                _gc_saved = saved
                gc.set_threshold(GC_THRESHOLD0, *saved[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                if gc.get_threshold()[0] == GC_THRESHOLD0:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = None


def _shut_down(runner: asyncio.Runner, backend: Backend) -> None:
    """Close the backend's connections on the loop they belong to, then the loop."""
    try:
        runner.run(backend.aclose())
    except RuntimeError:  # dropped inside another running loop: the loop can only be closed
        pass
    finally:
        try:
            runner.close()
        except RuntimeError:
            pass
