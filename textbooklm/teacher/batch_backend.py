"""The OpenAI Batch API as a teacher backend (``batch = true`` on an ``openai`` teacher): half the price.

phi-1's ~500k textbook replies and phi-1.5's millions are exactly the work the Batch API discounts
(50% at OpenAI): requests go as a JSONL file to ``/v1/files``, a batch is created on ``/v1/batches``,
and its output file comes back within the completion window (24 h). The Teacher above does not
change: jobs still arrive on its queue and each result still goes through ``finish`` into the same
request cache, keyed exactly as a synchronous request (the backend's name stays ``openai``), so a
later synchronous run reuses every reply.

The protocol, and why each step is where it is:

1. Jobs are collected until ``batch_max_requests`` are waiting or none arrived for
   ``batch_collect_s`` (the budget gate may hold the rest until these settle), then sent as one
   input file; bigger files are split to stay under ``batch_max_bytes``.
2. The uploaded file's id is recorded *before* the batch is created and the batch id the moment it
   exists (batch_store.py); a run killed anywhere resumes by following the recorded batch (or
   finding the one created from its input file), never by submitting again.
3. The batch is polled with a growing delay (``batch_poll_s`` doubling to ``batch_poll_max_s``);
   status errors of the polls themselves (429, 5xx, dropped connections) are retried.
4. Output and error files are downloaded and kept beside the record. A line that failed with a
   retryable status (429, 5xx, 408/409), a malformed reply, or a request the batch never ran
   (expired, cancelled) is sent again in a later batch, up to ``max_retries`` batches; other 4xx
   and a batch the server refused (``failed``, e.g. a bad input line) fail those requests with the
   server's message.

Prices: ``TeacherConfig.resolved_price`` applies ``batch_price_factor`` (0.5) when ``batch`` is on,
so the ledger, the budget and ``textbooklm cost`` all use the batch price.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import openai

from textbooklm.teacher.backend import Finish, Job, TeacherError
from textbooklm.teacher.batch_store import BatchStore, Submission
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.openai_backend import MalformedReply, OpenAIBackend
from textbooklm.teacher.types import REASON_CLIENT, REASON_MALFORMED, REASON_SERVER

log = logging.getLogger(__name__)
T = TypeVar("T")
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"
# (kind, detail): "ok" with the reply body, "retry" (send again in a later batch), "final" (fail now)
Outcome = tuple[str, Any]


class BatchAPIError(RuntimeError):
    """A files/batches call that failed for good (after its retries)."""


class OpenAIBatchBackend(OpenAIBackend):
    """Requests as Batch API jobs; results handed to the Teacher exactly like synchronous ones."""

    name = "openai"  # the same request keys as the synchronous backend: one cache for both

    def __init__(self, cfg: TeacherConfig, batch_dir: str | Path) -> None:
        super().__init__(cfg)
        self.store = BatchStore(batch_dir)
        self.queue_size = cfg.batch_max_requests  # the feeder must not wait on a small queue
        self.submitted = 0  # batches created by this backend (tests and the summary read it)

    # -- calls with retries ------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One files/batches API call, retried on 429, 5xx, timeouts and dropped connections."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn()
            except openai.APIStatusError as exc:
                retryable = exc.status_code >= 500 or exc.status_code in (408, 409, 429)
                detail = f"{what}: http_{exc.status_code}: {exc.message}"
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                retryable, detail = True, f"{what}: connection failed ({type(exc).__name__})"
            if not retryable or attempt > self.cfg.max_retries:
                raise BatchAPIError(detail)
            log.info("teacher batch: %s (attempt %d)", detail, attempt)
            await asyncio.sleep(self._backoff(attempt))

    # -- serving -----------------------------------------------------------------------------
    async def serve(self, queue: asyncio.Queue[Job | None], finish: Finish) -> None:
        client = await self._client_here()
        by_key: dict[str, Submission] = {}
        for sub in self.store.all(self.model):  # oldest first: a re-batch's record wins
            if sub.state != "failed":
                for key in sub.keys:
                    by_key[key] = sub
        follows: dict[str, asyncio.Task[dict[str, Outcome]]] = {}
        waiting: list[tuple[Job, int]] = []
        handles: set[asyncio.Task[None]] = set()

        def track(job: Job, task: asyncio.Task[dict[str, Outcome]], round_: int) -> None:
            handle = asyncio.create_task(self._settle(job, task, round_, finish, waiting))
            handles.add(handle)
            handle.add_done_callback(handles.discard)

        def flush() -> None:
            rounds: dict[int, list[Job]] = {}
            for job, round_ in waiting:
                rounds.setdefault(round_, []).append(job)
            waiting.clear()
            for round_, jobs in rounds.items():
                for chunk in self._chunks(jobs):
                    task = asyncio.create_task(self._submit(client, chunk, round_))
                    for job in chunk:
                        track(job, task, round_)

        ended = False
        try:
            while True:
                if not ended:
                    try:
                        job = await asyncio.wait_for(queue.get(), timeout=self.cfg.batch_collect_s)
                    except TimeoutError:
                        job = False  # type: ignore[assignment]
                    if job is None:
                        ended = True
                    elif job:
                        sub = by_key.get(job.key)
                        if sub is not None:  # sent before (this run or a killed one): follow, never resend
                            if sub.local_id not in follows:
                                follows[sub.local_id] = asyncio.create_task(self._follow(client, sub))
                            track(job, follows[sub.local_id], sub.round)
                        else:
                            waiting.append((job, 0))
                        if len(waiting) >= self.cfg.batch_max_requests:
                            flush()
                        continue
                if waiting:
                    flush()
                if ended and not handles and not waiting:
                    break
                if ended:
                    await asyncio.sleep(min(self.cfg.batch_collect_s, 0.05))
        except BaseException:
            for task in (*handles, *follows.values()):
                task.cancel()
            raise

    def _chunks(self, jobs: list[Job]) -> list[list[Job]]:
        """Split into input files within the request and byte limits."""
        out, current, size = [], [], 0
        for job in jobs:
            n = len(self._line(job)) + 1
            if current and (len(current) >= self.cfg.batch_max_requests or size + n > self.cfg.batch_max_bytes):
                out.append(current)
                current, size = [], 0
            current.append(job)
            size += n
        if current:
            out.append(current)
        return out

    def _line(self, job: Job) -> bytes:
        return json.dumps({"custom_id": job.key, "method": "POST", "url": ENDPOINT,
                           "body": self._kwargs(job.request)}).encode()

    async def _settle(self, job: Job, task: asyncio.Task[dict[str, Outcome]], round_: int, finish: Finish,
                      waiting: list[tuple[Job, int]]) -> None:
        """Turn the batch's line for this job into its result, or queue it for the next batch."""
        start = time.monotonic()
        try:
            outcomes = await task
        except (BatchAPIError, TeacherError) as exc:
            await finish(job, self._failed(job, f"{REASON_SERVER}: batch: {exc}", round_ + 1, {}, start))
            return
        kind, detail = outcomes.get(job.key, ("retry", "not run by its batch (expired or cancelled)"))
        if kind == "ok":
            try:
                result = self._to_result(job.key, job.request, detail)
            except MalformedReply as exc:
                kind, detail = "retry", f"{REASON_MALFORMED}: {exc}"
            else:
                result.attempts = round_ + 1
                if round_:
                    result.retries = {"batch": round_}
                await finish(job, result)
                return
        if kind == "retry" and round_ < self.cfg.max_retries:
            log.info("teacher batch: %s %s; sending it in batch round %d", job.key[:12], detail, round_ + 1)
            waiting.append((job, round_ + 1))
            return
        suffix = f", after {round_ + 1} batches" if kind == "retry" else ""
        await finish(job, self._failed(job, f"{detail}{suffix}", round_ + 1, {}, start))

    async def _submit(self, client: openai.AsyncOpenAI, jobs: list[Job], round_: int) -> dict[str, Outcome]:
        """Upload, record, create, then follow one batch."""
        data = b"\n".join(self._line(job) for job in jobs) + b"\n"
        uploaded = await self._call("upload", lambda: client.files.create(
            file=("requests.jsonl", data, "application/jsonl"), purpose="batch"))
        sub = self.store.new(self.model, [job.key for job in jobs], round_)
        sub.input_file_id = uploaded.id
        self.store.save(sub)  # before the batch exists: a kill from here on never submits twice
        await self._create_or_adopt(client, sub, look_first=False)
        return await self._follow(client, sub)

    async def _create_or_adopt(self, client: openai.AsyncOpenAI, sub: Submission, look_first: bool = True) -> None:
        """The batch of ``sub``'s input file: the one the server has (a run killed between create and
        record), else a new one."""
        if look_first:
            page = await self._call("list batches", lambda: client.batches.list(limit=100))
            for batch in page.data:
                if batch.input_file_id == sub.input_file_id:
                    sub.batch_id, sub.state, sub.server_status = batch.id, "submitted", batch.status
                    self.store.save(sub)
                    return
        batch = await self._call("create batch", lambda: client.batches.create(
            input_file_id=sub.input_file_id, endpoint=ENDPOINT, completion_window=self.cfg.batch_window,
            metadata={"textbooklm": sub.local_id}))
        self.submitted += 1
        sub.batch_id, sub.state, sub.server_status = batch.id, "submitted", batch.status
        self.store.save(sub)

    async def _follow(self, client: openai.AsyncOpenAI, sub: Submission) -> dict[str, Outcome]:
        """Wait for a recorded batch to end; download its files once; every key's outcome."""
        if sub.state == "downloaded":
            return self._outcomes(sub)
        if sub.state == "failed":
            return {key: ("final", f"{REASON_CLIENT}: batch-failed: {sub.error}") for key in sub.keys}
        if sub.state == "uploaded":  # recorded by a run killed before it recorded the batch id
            await self._create_or_adopt(client, sub)
        delay = self.cfg.batch_poll_s
        while True:
            batch = await self._call("poll batch", lambda: client.batches.retrieve(sub.batch_id))
            sub.server_status = batch.status
            if batch.status in TERMINAL:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.batch_poll_max_s)
        if batch.status == "failed":
            errors = getattr(batch, "errors", None)
            messages = [f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}"
                        for e in (getattr(errors, "data", None) or [])]
            sub.state, sub.error = "failed", "; ".join(messages)[:2000] or "the server failed the batch"
            self.store.save(sub)
            return {key: ("final", f"{REASON_CLIENT}: batch-failed: {sub.error}") for key in sub.keys}
        for kind, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
            if file_id:
                content = await self._call(f"download {kind}", lambda f=file_id: client.files.content(f))
                self.store.save_lines(sub, kind, content.content)
        sub.state = "downloaded"
        self.store.save(sub)
        return self._outcomes(sub)

    def _outcomes(self, sub: Submission) -> dict[str, Outcome]:
        """Each key's outcome from the downloaded files (absent keys: the batch never ran them)."""
        out: dict[str, Outcome] = {}
        for kind in ("errors", "output"):  # an output line wins over an error line for the same id
            for key, line in self.store.lines(sub, kind).items():
                out[key] = _line_outcome(line)
        return out


def _line_outcome(line: dict[str, Any]) -> Outcome:
    """Classify one output/error line like a synchronous attempt."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    error = line.get("error") if isinstance(line.get("error"), dict) else None
    if response is not None and response.get("status_code") == 200 and isinstance(response.get("body"), dict):
        return "ok", response["body"]
    if response is not None and isinstance(response.get("status_code"), int):
        status = response["status_code"]
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        detail = f"http_{status}: {err.get('message') or 'no message'}"
        if status >= 500 or status in (408, 409, 429):
            return "retry", f"{REASON_SERVER}: {detail}"
        return "final", f"{REASON_CLIENT}: {detail}"
    if error is not None:  # e.g. batch_expired, or a line the server could not run
        return "retry", f"{REASON_SERVER}: {error.get('code') or 'error'}: {error.get('message') or ''}".rstrip()
    return "retry", f"{REASON_MALFORMED}: batch line without response or error"
