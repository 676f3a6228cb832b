"""``textbooklm sandbox run PROGRAMS.jsonl --out RESULTS.jsonl``: run program records in the sandbox."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

sandbox_app = typer.Typer(help="Run untrusted Python programs with time, memory and process limits.",
                          no_args_is_help=True)


def read_programs(path: Path) -> list:
    """Read ``{"id","code","test"?,"entry_point"?,"reference_s"?}`` lines, all or nothing: every bad line
    (bad UTF-8 or JSON, lone surrogate, bad field, repeated id) is listed in one error naming file:line."""
    from textbooklm.jsonl import parse_jsonl
    from textbooklm.sandbox.program import Program

    return parse_jsonl(path, lambda where, record: Program.from_record(record, where=where), id_key="id")


@sandbox_app.command("run")
def run(
    programs: Path = typer.Argument(..., help='JSONL, one {"id","code","test","entry_point"} per line.'),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSONL (one per program, input order)."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock limit per program (floor), seconds."),
    memory_mb: int = typer.Option(4096, "--memory-mb", help="Memory limit per program (address space, and all it "
                                  "holds where a memory cgroup is writable), MiB (at least 64)."),
    workers: int = typer.Option(0, "--workers", help="Parallel workers (0: one per core; at most 4 per core)."),
    max_processes: int = typer.Option(32, "--max-processes", help="Process limit per program."),
    no_guard: bool = typer.Option(False, "--no-guard", help="Do not install the accident guard."),
) -> None:
    """Run every program; write one result per line and RESULTS.jsonl.meta.json with the limits used."""
    from textbooklm.progress import progress_bar, summary_line
    from textbooklm.sandbox import SandboxPool
    from textbooklm.store import atomic_write_json

    limits = checked_limits(timeout=timeout, memory_mb=memory_mb, max_processes=max_processes, guard=not no_guard)
    workers = checked_workers(workers)
    try:
        items = read_programs(programs)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar("sandbox", total=len(items)) as advance, \
            SandboxPool(limits, workers=workers) as pool:
        results = pool.run(items, on_result=lambda _r: advance(1))
        isolation, n_workers = pool.isolation, pool.workers
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r.to_record()) + "\n")
    tmp.replace(out)
    counts = Counter(r.status for r in results)
    atomic_write_json(out.with_name(out.name + ".meta.json"), {
        "programs": str(programs), "limits": limits.model_dump(), "workers": n_workers,
        "layers": isolation_layers(isolation), "isolation": isolation, "counts": dict(counts),
    })
    summary_line(f"sandbox: {len(results)} programs -> " + ", ".join(f"{k} {v}" for k, v in counts.most_common())
                 + f" ({isolation_summary(isolation)}); {out}")


# option -> the Limits field it sets (for one-line errors naming the option the user typed)
_OPTIONS = {"timeout_s": "--timeout", "memory_mb": "--memory-mb", "max_processes": "--max-processes"}


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def checked_limits(timeout: float, memory_mb: int, max_processes: int, guard: bool):
    """Limits from the options, or a one-line error naming the option, its value and the rule."""
    from pydantic import ValidationError

    from textbooklm.sandbox import Limits

    values = {"timeout_s": timeout, "memory_mb": memory_mb, "max_processes": max_processes}
    try:
        return Limits(**values, guard=guard)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        option = _OPTIONS.get(field, field)
        rule = str(first.get("msg", "invalid")).replace("Input should be", "must be")
        _fail(f"{option} {values.get(field)!r}: {rule}")


def checked_workers(workers: int) -> int | None:
    """0 -> None (one per core); a negative count or more than the executor's cap is a one-line error."""
    from textbooklm.executor import WORKERS_PER_CORE, max_workers, usable_cores

    if workers < 0:
        _fail(f"--workers {workers}: must be 0 (one per core) or a positive count")
    if workers > max_workers():
        _fail(f"--workers {workers}: at most {max_workers()} ({WORKERS_PER_CORE} per core x {usable_cores()} cores)")
    return workers or None


def isolation_layers(isolation: dict) -> dict:
    """Each containment layer and what holds it (the meta file's list; False/"none" where missing)."""
    return {
        "network_isolated": bool(isolation.get("network_isolated")),
        "proc_private": bool(isolation.get("proc_private")),
        "env_scrubbed": bool(isolation.get("env_scrubbed")),
        "uid": isolation.get("uid"),
        "process_limit": isolation.get("process_limit") or "none",
        "memory_limit": isolation.get("memory_limit") or "none",
        "private_tmp": bool(isolation.get("private_tmp")),
        "fs_view": isolation.get("fs_view") or "none",
    }


def isolation_summary(isolation: dict) -> str:
    """One phrase per containment layer; a missing one in capitals (the meta file's notes say why)."""
    layers = isolation_layers(isolation)
    uid, processes, memory = layers["uid"], layers["process_limit"], layers["memory_limit"]
    return ", ".join([
        "no network" if layers["network_isolated"] else "NETWORK NOT ISOLATED",
        "private /proc" if layers["proc_private"] else "HOST /proc VISIBLE",
        "allowlisted env" if layers["env_scrubbed"] else "ENV NOT SCRUBBED",
        f"uid {uid}" if uid not in (None, 0) else "RUNS AS ROOT",
        "pids cgroup" if processes.startswith("cgroup") else
        "RLIMIT_NPROC ONLY" if processes == "rlimit-nproc" else "NO PROCESS LIMIT",
        "memory cgroup" if memory.startswith("cgroup") else "MEMORY BY RLIMIT_AS ONLY (memfd, shm NOT COUNTED)",
        "private /tmp + /dev/shm" if layers["private_tmp"] else "HOST /tmp AND /dev/shm SHARED",
        "read-only fs view" if layers["fs_view"] != "none" else "HOST FILES VISIBLE",
    ])


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
