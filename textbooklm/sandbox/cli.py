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
    memory_mb: int = typer.Option(4096, "--memory-mb", help="Address-space limit per program, MiB."),
    workers: int = typer.Option(0, "--workers", help="Parallel workers (0: one per core)."),
    max_processes: int = typer.Option(32, "--max-processes", help="Process limit per program."),
    no_guard: bool = typer.Option(False, "--no-guard", help="Do not install the accident guard."),
) -> None:
    """Run every program; write one result per line and RESULTS.jsonl.meta.json with the limits used."""
    from textbooklm.progress import progress_bar, summary_line
    from textbooklm.sandbox import Limits, SandboxPool
    from textbooklm.store import atomic_write_json

    try:
        items = read_programs(programs)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    limits = Limits(timeout_s=timeout, memory_mb=memory_mb, max_processes=max_processes, guard=not no_guard)
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar("sandbox", total=len(items)) as advance, \
            SandboxPool(limits, workers=workers or None) as pool:
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
        "isolation": isolation, "counts": dict(counts),
    })
    summary_line(f"sandbox: {len(results)} programs -> " + ", ".join(f"{k} {v}" for k, v in counts.most_common())
                 + f" ({isolation_summary(isolation)}); {out}")


def isolation_summary(isolation: dict) -> str:
    """One phrase per containment layer; a missing one in capitals (the meta file's notes say why)."""
    uid = isolation.get("uid")
    return ", ".join([
        "no network" if isolation.get("network_isolated") else "NETWORK NOT ISOLATED",
        "private /proc" if isolation.get("proc_private") else "HOST /proc VISIBLE",
        "allowlisted env" if isolation.get("env_scrubbed") else "ENV NOT SCRUBBED",
        f"uid {uid}" if uid not in (None, 0) else "RUNS AS ROOT",
    ])


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
