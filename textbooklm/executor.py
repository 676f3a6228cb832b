"""Map a shard function over tasks: a local process pool by default, or Ray on a cluster.

The contract that makes every data stage resumable:

* a task is a JSON-able dict with a unique ``"key"`` (usually the output shard name);
* the task function does all its writing through atomic renames, then returns a JSON-able dict
  (its counts);
* the executor then writes ``<markers>/<key>.json`` holding that dict. A task with a marker is done:
  a re-run skips it and reuses the recorded result. A task killed half-way has no marker and is
  simply run again; its partial outputs are overwritten by the same atomic writes.

So the stage logic never has to know whether it runs in a pool, on Ray, or for the second time.

The local pool is warm: one pool per process, started on first use and reused by every later map
step (the corpus stage alone has seven), so workers pay their start-up (a fork from the fork server,
which has already imported the task's module) once per run instead of once per step. Its workers
die with the process that owns it, even a SIGKILLed one (:mod:`textbooklm.process_lifetime`).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textbooklm.process_lifetime import descendants, die_with, start_reaper
from textbooklm.progress import progress_bar
from textbooklm.store import atomic_write_json

TaskFn = Callable[[dict[str, Any]], dict[str, Any]]


# Data stages are CPU-bound: more workers than a few per core only add memory and start-up time
# (workers = 100000 once started 60 processes on 2 cores and ran for ever). The bound is generous so
# that I/O-bound steps can still overlap.
WORKERS_PER_CORE = 4


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most local workers a run may start on this machine."""
    return WORKERS_PER_CORE * usable_cores()


def resolve_workers(workers: int) -> int:
    """0 means one worker per CPU core this process may use; more than :func:`max_workers` is capped
    (``config check`` reports such a setting before a run starts)."""
    if workers > 0:
        return min(workers, max_workers())
    return usable_cores()


def _run_and_mark(fn: TaskFn, task: dict[str, Any], marker_dir: str) -> dict[str, Any]:
    """Runs in the worker: do the task, then record it as done (marker written last)."""
    result = fn(task)
    atomic_write_json(Path(marker_dir) / f"{task['key']}.json", result)
    return result


def map_shards(
    fn: TaskFn,
    tasks: list[dict[str, Any]],
    marker_dir: str | Path,
    *,
    executor: str = "local",
    workers: int = 0,
    ray_address: str | None = None,
    description: str = "shards",
) -> dict[str, dict[str, Any]]:
    """Run ``fn`` on every task not already marked done; return ``{key: result}`` for all tasks.

    ``fn`` must be a module-level function (it is pickled to worker processes / Ray workers).
    """
    marker_dir = Path(marker_dir)
    marker_dir.mkdir(parents=True, exist_ok=True)
    keys = [t["key"] for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("map_shards: task keys must be unique")

    results: dict[str, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        marker = marker_dir / f"{task['key']}.json"
        if marker.is_file():
            results[task["key"]] = json.loads(marker.read_text())
        else:
            todo.append(task)

    with progress_bar(description, total=len(tasks), completed=len(results)) as advance:
        if not todo:
            pass
        elif executor == "ray":
            results.update(_map_ray(fn, todo, marker_dir, workers, ray_address, advance))
        elif executor == "local":
            results.update(_map_local(fn, todo, marker_dir, resolve_workers(workers), advance))
        else:
            raise ValueError(f"unknown executor {executor!r} (expected 'local' or 'ray')")
    return {k: results[k] for k in keys}


# The warm pool of this process: (pool, workers, owner pid) or None.
_warm: tuple[ProcessPoolExecutor, int, int] | None = None


def warm_pool(workers: int, preload: list[str] | None = None) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` workers, started on first use and reused afterwards.

    Not "fork": a stage that already ran torch in this process (judge, classify) leaves OpenMP
    thread pools that deadlock in a forked child. "forkserver" forks each worker from a clean server
    process, which imports ``preload`` (the task's module) once, so a new worker starts in
    milliseconds instead of importing textbooklm, numpy and pyarrow again. ``preload`` only counts
    when the fork server starts (once per process).
    """
    global _warm
    if _warm is not None and _warm[1] == workers and _warm[2] == os.getpid():
        return _warm[0]
    shutdown_pool()
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["textbooklm.executor", *(preload or [])])
    # die_with: a SIGKILLed main process runs no cleanup; each worker watches it and dies with it.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with, initargs=(os.getpid(),))
    _warm = (pool, workers, os.getpid())
    return pool


def shutdown_pool() -> None:
    """Stop the warm pool (if any); the next local map starts a new one. Runs at interpreter exit."""
    global _warm
    if _warm is not None:
        pool, _, owner = _warm
        _warm = None
        if owner == os.getpid():  # a forked child must not shut its parent's pool down
            pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pool)


def _preload_for(fn: TaskFn) -> list[str]:
    """Modules the fork server should import for ``fn``: its own, when it is one of textbooklm's (a test's
    or a script's module is imported by each worker as before)."""
    module = getattr(fn, "__module__", None) or ""
    return [module] if module.startswith("textbooklm.") and module in sys.modules else []


def _map_local(fn, todo, marker_dir, workers, advance) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if workers == 1 or len(todo) == 1:
        # In-process: no pickling cost, and tracebacks point straight at the stage code.
        for task in todo:
            out[task["key"]] = _run_and_mark(fn, task, str(marker_dir))
            advance(1)
        return out
    pool = warm_pool(workers, _preload_for(fn))
    pending = {pool.submit(_run_and_mark, fn, t, str(marker_dir)): t["key"] for t in todo}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                out[key] = fut.result()
                advance(1)
    except BaseException as exc:
        for fut in pending:  # a failed task stops the step; queued tasks are not started
            fut.cancel()
        if isinstance(exc, BrokenProcessPool | KeyboardInterrupt):  # a killed worker (OOM) breaks the pool
            shutdown_pool()
        else:
            wait(pending)  # the step ends with no task of it still running (their markers are final)
        raise
    return out


@contextmanager
def ray_session(workers: int, ray_address: str | None) -> Iterator[Any]:
    """Ray, connected for the block: to ``ray_address``'s cluster, or a local one of ``workers`` CPUs.

    An already connected Ray (a caller's session) is used as it is and left connected.
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise RuntimeError("executor = 'ray' needs Ray: pip install 'textbooklm[ray]'") from exc

    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if ray_address:
            kwargs["address"] = ray_address
        else:
            kwargs["num_cpus"] = resolve_workers(workers)
        ray.init(**kwargs)
        started_here = True
    # A local cluster started here must not outlive a SIGKILLed driver (see process_lifetime).
    reaper = start_reaper(descendants(os.getpid())) if started_here and not ray_address else None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:
            reaper.kill()
            reaper.wait()


def _map_ray(fn, todo, marker_dir, workers, ray_address, advance) -> dict[str, dict[str, Any]]:
    with ray_session(workers, ray_address) as ray:
        remote = ray.remote(_run_and_mark)
        refs = {remote.remote(fn, t, str(marker_dir)): t["key"] for t in todo}
        out: dict[str, dict[str, Any]] = {}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                out[refs.pop(ref)] = ray.get(ref)
                advance(1)
        return out


class Submitter:
    """One task at a time on the run's executor, each handed over when it is ready: ``submit`` -> a Future.

    Why besides :func:`map_shards`: the synthesis driver hands round k's checks to a worker as soon as
    its replies are in and goes on asking for round k+1, so the checks of several rounds may run at
    once, on other machines under Ray. The same contract as ``map_shards``: the task function writes
    through atomic renames and returns a JSON-able dict, which the worker then writes as
    ``<marker_dir>/<task key>.json`` (so the marker is the last thing written); the task itself needs
    only to pickle (a round's candidates travel in it, no marker records it). The local executor uses
    this process's warm pool (also with ``workers = 1``: a task never runs on the caller's thread);
    Ray is connected for the ``with`` block, so tasks do not pay a connection each (and a ``map_shards``
    call inside the block uses that connection instead of opening its own).
    """

    def __init__(self, executor: str = "local", workers: int = 0, ray_address: str | None = None) -> None:
        if executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {executor!r} (expected 'local' or 'ray')")
        self.executor, self.workers, self.ray_address = executor, workers, ray_address
        self._session: Any = None
        self._ray: Any = None
        self._remote: Any = None

    def __enter__(self) -> Submitter:
        if self.executor == "ray":
            self._session = ray_session(self.workers, self.ray_address)
            self._ray = self._session.__enter__()
            self._remote = self._ray.remote(_run_and_mark)
        return self

    def submit(self, fn: TaskFn, task: dict[str, Any], marker_dir: str | Path) -> Future:
        """Start ``fn(task)`` on a worker; the Future gives its result (the marker's content)."""
        Path(marker_dir).mkdir(parents=True, exist_ok=True)
        if self.executor == "ray":
            if self._remote is None:
                raise RuntimeError("Submitter: use it as a context manager (with Submitter(...) as s)")
            return self._remote.remote(fn, task, str(marker_dir)).future()
        pool = warm_pool(resolve_workers(self.workers), _preload_for(fn))
        return pool.submit(_run_and_mark, fn, task, str(marker_dir))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, BrokenProcessPool):  # a killed worker (OOM) breaks the pool: the next use starts one
            shutdown_pool()
        if self._session is not None:
            session, self._session, self._remote = self._session, None, None
            session.__exit__(exc_type, exc, tb)
