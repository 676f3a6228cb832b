"""Map a shard function over tasks: a local process pool by default, or Ray on a cluster.

The contract that makes every data stage resumable:

* a task is a JSON-able dict with a unique ``"key"`` (usually the output shard name);
* the task function does all its writing through atomic renames, then returns a JSON-able dict
  (its counts);
* the executor then writes ``<markers>/<key>.json`` holding that dict. A task with a marker is done:
  a re-run skips it and reuses the recorded result. A task killed half-way has no marker and is
  simply run again; its partial outputs are overwritten by the same atomic writes.

So the stage logic never has to know whether it runs in a pool, on Ray, or for the second time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from textbooklm.process_lifetime import descendants, die_with, start_reaper
from textbooklm.progress import progress_bar
from textbooklm.store import atomic_write_json

TaskFn = Callable[[dict[str, Any]], dict[str, Any]]


def resolve_workers(workers: int) -> int:
    """0 means one worker per CPU core this process may use."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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


def _map_local(fn, todo, marker_dir, workers, advance) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if workers == 1 or len(todo) == 1:
        # In-process: no pickling cost, and tracebacks point straight at the stage code.
        for task in todo:
            out[task["key"]] = _run_and_mark(fn, task, str(marker_dir))
            advance(1)
        return out
    # Not "fork": a stage that already ran torch in this process (judge, classify) leaves OpenMP
    # thread pools that deadlock in a forked child. "forkserver" forks from a clean server process.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    # die_with: a SIGKILLed main process runs no cleanup; each worker watches it and dies with it.
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=die_with, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(_run_and_mark, fn, t, str(marker_dir)): t["key"] for t in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                out[key] = fut.result()
                advance(1)
    return out


def _map_ray(fn, todo, marker_dir, workers, ray_address, advance) -> dict[str, dict[str, Any]]:
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
        remote = ray.remote(_run_and_mark)
        refs = {remote.remote(fn, t, str(marker_dir)): t["key"] for t in todo}
        out: dict[str, dict[str, Any]] = {}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                out[refs.pop(ref)] = ray.get(ref)
                advance(1)
        return out
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:
            reaper.kill()
            reaper.wait()
