"""``textbooklm report RUN_DIR``: (re)build a run's HTML report at any time."""

from __future__ import annotations

from pathlib import Path

import typer

from textbooklm.progress import console


def report(
    run_dir: Path = typer.Argument(..., help="A run folder made by `textbooklm run`."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the HTML (default RUN_DIR/report.html)."),
    screenshot: Path = typer.Option(None, help="Also save a PNG screenshot (needs Chromium)."),
) -> None:
    """Build the self-contained HTML report of a run (plots embedded)."""
    from textbooklm.report.browser import render
    from textbooklm.report.build import build_report

    if not run_dir.is_dir():
        console.print(f"[red]{run_dir}: no such run folder[/red]")
        raise typer.Exit(2)
    page = build_report(run_dir, out)
    console.print(f"report: {page}")
    if screenshot:
        render(page, screenshot)
        console.print(f"screenshot: {screenshot}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
