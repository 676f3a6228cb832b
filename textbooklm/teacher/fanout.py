"""Several drivers: one list of requests sent by N executor workers, each with its own client.

Why: one process holds ``concurrency`` requests in flight and spends ~1 ms of CPU per request on the
client; on several machines (Ray) the total in flight, and the client CPU, grow with the drivers.

:func:`complete_spread` splits the list by request key (``int(key[:8], 16) % drivers``, so a re-run
sends each key to the same driver and identical requests to one driver, which sends them once), maps
:func:`drive` over the parts with the caller's ``map_fn`` (``ctx.map``: the local process pool or Ray),
and returns the results in the input order. Each driver builds its own :class:`Teacher` from the
:class:`TeacherConfig` (its own client, ``concurrency`` in flight, its own cache file, ``cache.py``),
looks every key up in all cache files first, and sends only the misses. A driver killed and re-run
therefore re-sends only what it had not committed (at most ``concurrency`` requests in flight).

A driver writes its results to ``work_dir/<call>/parts/<task>.jsonl`` (atomically), then its marker;
a re-run of the same call reuses the parts of the drivers that had finished, and the call's folder is
removed once the results are read, so a later call asks again for what failed (as the in-process
teacher does). With ``budget_usd`` / ``budget_tokens`` each driver may spend an equal share of what
the stage has left, so N drivers together never pass the budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textbooklm.store import atomic_write_bytes
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.ledger import LedgerEntry
from textbooklm.teacher.types import Request, Result, request_key

if TYPE_CHECKING:
    from textbooklm.stage_context import StageContext

# ctx.map's signature: (fn, tasks, marker_dir, description) -> {task key: fn's returned dict}
MapFn = Callable[..., dict[str, dict[str, Any]]]


def driver_of(key: str, drivers: int) -> int:
    """Which of ``drivers`` sends the request with this cache key (stable across runs)."""
    return int(key[:8], 16) % drivers


def request_to_json(request: Request) -> dict[str, Any]:
    return {"messages": list(request.messages), **request.params()}


def request_from_json(data: dict[str, Any]) -> Request:
    return Request(**data)


def complete_spread(
    cfg: TeacherConfig,
    requests: Sequence[Request],
    *,
    stage: str,
    cache_dir: str | Path,
    work_dir: str | Path,
    drivers: int | None = None,
    map_fn: MapFn | None = None,
) -> list[Result]:
    """Every request's result, in input order, sent by ``drivers`` (default ``cfg.drivers``) workers.

    ``map_fn`` is ``ctx.map`` in a stage; by default a local pool of ``drivers`` processes.
    ``work_dir`` holds the drivers' parts and markers while the call runs (e.g. the stage's ``_work``).
    """
    drivers = cfg.drivers if drivers is None else drivers
    if drivers < 1:
        raise ValueError(f"drivers must be >= 1, got {drivers}")
    if cfg.batch and drivers > 1:
        raise ValueError(f"teacher {cfg.model!r}: batch = true sends batches from one process; set drivers = 1")
    if not requests:
        return []
    keys = [request_key(cfg.backend, cfg.model, r) for r in requests]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    parts: list[list[str]] = [[] for _ in range(drivers)]
    for k in first:  # unique keys, in input order
        parts[driver_of(k, drivers)].append(k)

    call = hashlib.sha256("\n".join(first).encode()).hexdigest()[:16]
    folder = Path(work_dir) / "drivers" / f"{stage}-{call}"
    budget_share = _budget_shares(cfg, Path(cache_dir), stage, drivers)
    teacher_json = cfg.model_copy(update=budget_share).model_dump(mode="json")
    tasks = [
        {
            "key": f"driver-{d:03d}-of-{drivers:03d}",
            "teacher": teacher_json,
            "stage": stage,
            "cache_dir": str(cache_dir),
            "part": str(folder / "parts" / f"driver-{d:03d}.jsonl"),
            "requests": [request_to_json(requests[first[k]]) for k in part],
        }
        for d, part in enumerate(parts)
        if part
    ]
    run_map = map_fn or _local_map(drivers)
    run_map(drive, tasks, folder / "markers", description=f"teacher {cfg.model} [{stage}] x{len(tasks)} drivers")

    by_key: dict[str, Result] = {}
    for task in tasks:
        for line in Path(task["part"]).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            res = Result.from_json(row["result"])
            res.cached = row["cached"]
            by_key[res.key] = res
    missing = [k for k in first if k not in by_key]
    if missing:
        raise RuntimeError(f"{folder}: the drivers returned no result for {len(missing)} requests")
    shutil.rmtree(folder, ignore_errors=True)  # read: a later call asks again for what failed
    return [dataclasses.replace(by_key[k]) for k in keys]


def _local_map(workers: int) -> MapFn:
    """``ctx.map`` outside a stage: the local process pool with one worker per driver."""
    from textbooklm.executor import map_shards

    def run(fn: Any, tasks: list[dict[str, Any]], marker_dir: Path, description: str = "shards") -> Any:
        return map_shards(fn, tasks, marker_dir, workers=workers, description=description)

    return run


def _budget_shares(cfg: TeacherConfig, cache_dir: Path, stage: str, drivers: int) -> dict[str, Any]:
    """Each driver's budget: what the stage spent so far plus 1/drivers of what is left."""
    if drivers == 1 or (cfg.budget_usd is None and cfg.budget_tokens is None):
        return {}
    spent = stage_ledger(cfg, cache_dir, stage)
    out: dict[str, Any] = {}
    if cfg.budget_usd is not None:
        used = spent.cost_usd or 0.0
        out["budget_usd"] = max(used + max(cfg.budget_usd - used, 0.0) / drivers, 1e-12)
    if cfg.budget_tokens is not None:
        used_t = spent.tokens_in + spent.tokens_out
        out["budget_tokens"] = max(used_t + max(cfg.budget_tokens - used_t, 0) // drivers, 1)
    return out


def stage_ledger(cfg: TeacherConfig, cache_dir: str | Path, stage: str) -> LedgerEntry:
    """The stage's ledger on this teacher, summed over every cache file (all drivers)."""
    from textbooklm.teacher.cache_admin import read_ledgers

    rows = [r for r in read_ledgers(Path(cache_dir)) if r["stage"] == stage and r["model"] == cfg.model]
    return LedgerEntry.from_dict(rows[0]) if rows else LedgerEntry(stage=stage, model=cfg.model)


def drive(task: dict[str, Any]) -> dict[str, Any]:
    """One driver (runs in an executor worker): its own teacher sends its part; results to ``task['part']``."""
    from textbooklm.teacher import build_teacher

    cfg = TeacherConfig.model_validate(task["teacher"])
    requests = [request_from_json(r) for r in task["requests"]]
    teacher = build_teacher(cfg, task["cache_dir"], stage=task["stage"], driver=True)
    try:
        results = teacher.complete(requests, show_progress=False)
    finally:
        teacher.close()
    lines = "".join(json.dumps({"cached": r.cached, "result": r.to_json()}) + "\n" for r in results)
    atomic_write_bytes(Path(task["part"]), lines.encode("ascii"))  # json.dumps escapes non-ASCII
    return {"requests": len(results), "cached": sum(r.cached for r in results),
            "failed": sum(not r.ok for r in results)}


class SpreadTeacher:
    """A stage's lazy teacher whose ``complete`` goes through ``cfg.drivers`` drivers on ``ctx.map``.

    Everything else is the wrapped teacher's (``describe``, ``close``); ``key`` is computed without
    building a client; ``summary`` is the stage's ledger summed over every driver's cache file.
    """

    def __init__(self, teacher: Any, ctx: StageContext, stage: str, work_dir: str | Path) -> None:
        self._inner, self.cfg, self.stage = teacher, teacher.cfg, stage
        self._cache_dir, self._work_dir, self._map = ctx.owner.teacher_cache_dir, Path(work_dir), ctx.map

    def complete(self, requests: Sequence[Request], show_progress: bool = True) -> list[Result]:
        return complete_spread(self.cfg, requests, stage=self.stage, cache_dir=self._cache_dir,
                               work_dir=self._work_dir, map_fn=self._map)

    def key(self, request: Request) -> str:
        return request_key(self.cfg.backend, self.cfg.model, request)

    def summary(self) -> str:
        line = stage_ledger(self.cfg, self._cache_dir, self.stage).summary()
        return f"{line} (seconds summed over {self.cfg.drivers} drivers)"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def spread(teacher: Any, ctx: StageContext, stage: str, work_dir: str | Path) -> Any:
    """``teacher`` itself when its config has ``drivers = 1``, else a :class:`SpreadTeacher` around it."""
    return teacher if teacher.cfg.drivers <= 1 else SpreadTeacher(teacher, ctx, stage, work_dir)
