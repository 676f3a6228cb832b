"""What an executor worker keeps warm between the synthesis rounds it checks: sandbox pools, teachers
(the exercises' extra solutions) and the stage's context (with its shared judge teacher).

Why: with ``checks = "executor"`` each round's check is a task on the run's executor (driver.py's
``start_check``), and a worker checks many rounds. Starting a sandbox pool (~0.1 s a sandbox worker)
or loading the judge's model for every round would cost more than the check, so each worker process
keeps one of each, keyed by what builds it, and closes them when it exits (a local pool worker's
``multiprocessing`` finaliser, or ``atexit`` elsewhere). A context for another stage run (another
run folder, stage or config hash) replaces the previous one, whose teachers are closed.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import threading
from typing import TYPE_CHECKING

from textbooklm.lazy_services import LazySandbox, LazyTeacher

if TYPE_CHECKING:
    from textbooklm.sandbox import Limits
    from textbooklm.stage_context import StageContext
    from textbooklm.teacher import TeacherConfig

_lock = threading.Lock()
_sandboxes: dict[tuple[str, int], LazySandbox] = {}
_teachers: dict[tuple[str, str, str, str], LazyTeacher] = {}
_context: tuple[tuple[str, str, str], StageContext] | None = None
_registered = False


def _register_close() -> None:
    global _registered
    if not _registered:
        _registered = True
        multiprocessing.util.Finalize(None, close_all, exitpriority=10)
        atexit.register(close_all)


def worker_sandbox(limits: Limits, workers: int) -> LazySandbox:
    """This worker's warm sandbox pool with these limits and ``workers`` sandbox workers (0: one per core)."""
    key = (limits.model_dump_json(), workers)
    with _lock:
        _register_close()
        if key not in _sandboxes:
            _sandboxes[key] = LazySandbox(limits, workers)
        return _sandboxes[key]


def worker_teacher(cfg: TeacherConfig, cache_dir: str, stage: str, name: str) -> LazyTeacher:
    """This worker's lazy teacher for a stage (built on first use), writing its own cache file in the run's
    cache folder (a driver's file, ``cache.py``: the run reads every file as one), so checks on several
    machines never share one SQLite file."""
    key = (cfg.model_dump_json(), cache_dir, stage, name)
    with _lock:
        _register_close()
        if key not in _teachers:
            _teachers[key] = LazyTeacher(cfg, cache_dir, stage, name, driver=True)
        return _teachers[key]


def worker_context(ctx: StageContext) -> StageContext:
    """This worker's copy of the stage's context (pickled without its shared teachers): the first one it got
    for this run folder, stage and config, so the teachers it builds (the judge's) stay loaded between rounds."""
    global _context
    key = (str(ctx.run_dir), ctx.name, ctx.config_hash)
    with _lock:
        _register_close()
        if _context is not None and _context[0] == key:
            return _context[1]
        ctx.own_cache_file = True  # its teachers (the judge's) write their own cache file, not the main one
        old, _context = _context, (key, ctx)
    if old is not None:
        old[1].close()
    return ctx


def close_all() -> None:
    """Close this worker's sandbox pools, teachers and its context's teachers (idempotent)."""
    global _context
    with _lock:
        boxes, teachers, ctx = list(_sandboxes.values()), list(_teachers.values()), _context
        _sandboxes.clear()
        _teachers.clear()
        _context = None
    for box in boxes:
        box.close()
    for teacher in teachers:
        teacher.close()
    if ctx is not None:
        ctx[1].close()
