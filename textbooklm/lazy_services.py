"""A teacher and a sandbox pool that start only when first used, shared by all of a stage's work.

Why lazy: a re-run whose work is all done (every round marked, every shard written) must not load a
model or start sandbox workers. Why shared: a stage asks in rounds, and starting a pool per round
costs more than the round's programs. ``StageContext.lazy_teacher`` / ``lazy_sandbox`` hand them out;
the stage closes them when its work ends (both are also context managers).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textbooklm.sandbox import Limits, Program, SandboxPool
    from textbooklm.sandbox import Result as SandboxResult
    from textbooklm.teacher import Request, Result, Teacher, TeacherConfig


class LazyTeacher:
    """A teacher built on first use, whose calls are serialised (thread-safe).

    A stage may ask from two threads at once (the synth rounds driver sends round k+1's requests while
    round k's check asks for extra solutions): one call at a time on the teacher's event loop. Reading
    a key (:meth:`key`, :meth:`get`) takes no call lock once built, so a check reading keys never waits
    for the other thread's requests.
    """

    def __init__(self, cfg: TeacherConfig, cache_dir: str | Path | None, stage: str, name: str = "",
                 driver: bool = False) -> None:
        self.cfg, self.cache_dir, self.stage, self.name = cfg, cache_dir, stage, name or cfg.model
        self.driver = driver  # one of several processes asking for the stage: its own cache file (build_teacher)
        self._teacher: Teacher | None = None
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()

    def get(self) -> Teacher:
        """The teacher, built once (the build under its own lock, never under the call lock)."""
        teacher = self._teacher
        if teacher is not None:
            return teacher
        with self._build_lock:
            if self._teacher is None:
                from textbooklm.teacher import build_teacher

                self._teacher = build_teacher(self.cfg, self.cache_dir, stage=self.stage, driver=self.driver)
            return self._teacher

    @property
    def built(self) -> bool:
        return self._teacher is not None

    def complete(self, requests: list[Request]) -> list[Result]:
        """``Teacher.complete``, one caller at a time."""
        with self._lock:
            return self.get().complete(requests)

    def key(self, request: Request) -> str:
        """The request's cache key (``Teacher.key``), without building the teacher: a check that only stamps
        provenance (in an executor worker) must not load a model or open a client for it."""
        from textbooklm.teacher.types import request_key

        return request_key(self.cfg.backend, self.cfg.model, request)

    def describe(self) -> dict[str, str]:
        """Name, backend and model: what a sample's provenance says about who wrote it."""
        return {"name": self.name, "backend": self.cfg.backend, "model": self.cfg.model}

    def summary(self) -> str:
        return self._teacher.summary() if self._teacher is not None else "teacher not needed (all rounds cached)"

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.close()

    def __enter__(self) -> LazyTeacher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LazySandbox:
    """One warm sandbox pool for all of a stage's programs, started only if something has to run."""

    def __init__(self, limits: Limits, workers: int | None = None) -> None:
        self.limits = limits
        self.workers = workers or None
        self._pool: SandboxPool | None = None
        self._start_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def run(self, programs: list[Program]) -> list[SandboxResult]:
        """Run ``programs`` (results in the same order); an empty list starts nothing."""
        if not programs:
            return []
        with self._start_lock:
            if self._pool is None:
                from textbooklm.sandbox import SandboxPool

                pool = SandboxPool(self.limits, workers=self.workers)
                pool.__enter__()
                self._pool = pool
        return self._pool.run(programs)

    def close(self) -> None:
        with self._start_lock:
            if self._pool is not None:
                self._pool.__exit__(None, None, None)
                self._pool = None

    def __enter__(self) -> LazySandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
