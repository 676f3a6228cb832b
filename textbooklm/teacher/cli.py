"""Commands: ``textbooklm teacher check CONFIG`` and ``textbooklm cost CONFIG``.

Both read the ``[teachers.*]`` (and, for cost, ``[cost.*]``) tables of a pipeline TOML directly, so
they work on any config, whatever other sections it holds.
"""

from __future__ import annotations

import sys
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
    from textbooklm.config_base import read_toml
    from textbooklm.teacher.cost import parse_teachers

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
    """Check each teacher (uncached): its model name against the server's model list, one non-empty
    reply, logprobs on an unambiguous prompt, the context length; prints what it found. Exit 1 when
    a teacher cannot be used as configured."""
    from rich.markup import escape

    from textbooklm.teacher.check import check_teacher

    _, teachers = _teachers_or_exit(config)
    chosen = name or list(teachers)
    unknown = [n for n in chosen if n not in teachers]
    if unknown or not chosen:
        console.print(f"[red]{config}: no teacher named {', '.join(unknown) or '(none defined)'}[/red]")
        raise typer.Exit(2)
    reports = [check_teacher(n, teachers[n]) for n in chosen]
    out = _stdout()
    for r in reports:  # one block per teacher, a line per finding: long server messages stay whole
        verdict = "FAILED" if r.failed else ("ok, with warnings" if r.warnings else "ok")
        out.print(f"teacher {r.name} ({r.backend}, model {r.model}): {verdict}", markup=False)
        for label, value in (("model name", r.name_check), ("reply", f"{r.reply} ({r.latency})"),
                             ("logprobs", r.logprobs), ("context", r.context), ("prompt tokens", r.tokens)):
            out.print(f"  {label:<14} {value}", markup=False)
        for text in r.failures:
            out.print(f"  [red]error:[/red] {escape(text)}")
        for text in r.warnings:
            out.print(f"  [yellow]warning:[/yellow] {escape(text)}")
    if any(r.failed for r in reports):
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
