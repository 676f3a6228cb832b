"""Commands: ``textbooklm teacher check CONFIG`` and ``textbooklm cost CONFIG``.

Both read the ``[teachers.*]`` (and, for cost, ``[cost.*]``) tables of a pipeline TOML directly, so
they work on any config, whatever other sections it holds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from textbooklm.config import ConfigError
from textbooklm.progress import console


def _stdout() -> Console:
    """Results go to stdout; when piped, wide enough that numbers are never cut."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


teacher_app = typer.Typer(help="The LLMs that judge and write: check they answer.", no_args_is_help=True)


def _teachers_or_exit(config: Path):
    from textbooklm.teacher.cost import parse_teachers, read_toml

    try:
        raw = read_toml(config)
        return raw, parse_teachers(raw, str(config))
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{exc}")
        raise typer.Exit(2) from None


@teacher_app.command("check")
def check(
    config: Path = typer.Argument(..., help="Pipeline TOML with teachers.NAME tables."),
    name: list[str] = typer.Option(None, "--teacher", "-t", help="Check only these teachers (default: all)."),
) -> None:
    """Send each teacher one tiny request (uncached); print model, latency, and whether logprobs work."""
    from textbooklm.teacher import Request, TeacherError, build_teacher

    _, teachers = _teachers_or_exit(config)
    chosen = name or list(teachers)
    unknown = [n for n in chosen if n not in teachers]
    if unknown or not chosen:
        console.print(f"[red]{config}: no teacher named {', '.join(unknown) or '(none defined)'}[/red]")
        raise typer.Exit(2)
    bad = 0
    table = Table("teacher", "backend", "model", "latency", "reply", "logprobs")
    for n in chosen:
        cfg = teachers[n].model_copy(update={"cache": False})
        try:
            teacher = build_teacher(cfg, cache_dir=None, stage="check")
        except TeacherError as exc:
            table.add_row(n, cfg.backend, cfg.model, "-", f"[red]{exc}[/red]", "-")
            bad += 1
            continue
        start = time.monotonic()
        ask = [{"role": "user", "content": "Reply with the single word: ok"}]
        result = teacher.complete([Request(messages=ask, max_tokens=8)], show_progress=False)[0]
        latency = time.monotonic() - start
        if not result.ok:
            table.add_row(n, cfg.backend, cfg.model, f"{latency:.2f} s", f"[red]{result.error}[/red]", "-")
            bad += 1
            continue
        scored = teacher.score_choices_many(["Is water wet? Answer yes or no."], ["yes", "no"])[0]
        logprobs = "yes" if scored.ok else f"no ({scored.error})"
        table.add_row(n, cfg.backend, cfg.model, f"{latency:.2f} s", repr(result.text[:40]), logprobs)
        teacher.close()
    _stdout().print(table)
    if bad:
        raise typer.Exit(1)


def cost(config: Path = typer.Argument(..., help="Pipeline TOML with teachers.NAME and cost.STAGE tables.")) -> None:
    """Estimate teacher tokens and USD per stage before a run, from the config's cost.STAGE tables."""
    from textbooklm.teacher.cost import estimate, parse_cost_plan

    raw, teachers = _teachers_or_exit(config)
    try:
        plan = parse_cost_plan(raw, str(config), teachers)
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{exc}")
        raise typer.Exit(2) from None
    if not plan:
        console.print(f"{config}: no [cost.STAGE] tables; nothing to estimate")
        raise typer.Exit(0)
    rows = estimate(teachers, plan)
    table = Table("stage", "teacher", "model", "requests", "tokens in", "tokens out", "USD", "budget")
    for r in rows:
        usd = "no price" if r.usd is None else f"${r.usd:,.2f}"
        budget = "" if r.budget_usd is None else (
            f"[red]over ${r.budget_usd:,.0f}[/red]" if r.over_budget else f"within ${r.budget_usd:,.0f}"
        )
        table.add_row(r.stage, r.teacher, r.model, f"{r.requests:,}", f"{r.tokens_in:,.0f}",
                      f"{r.tokens_out:,.0f}", usd, budget)
    known = [r.usd for r in rows if r.usd is not None]
    total = f"${sum(known):,.2f}" + ("" if len(known) == len(rows) else " + unpriced")
    table.add_row("total", "", "", f"{sum(r.requests for r in rows):,}", f"{sum(r.tokens_in for r in rows):,.0f}",
                  f"{sum(r.tokens_out for r in rows):,.0f}", total, "")
    _stdout().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(teacher_app, name="teacher")
    app.command("cost")(cost)
