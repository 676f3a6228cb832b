"""``textbooklm ablate CONFIG --run RUN``: does the data recipe matter? (phi-1's data comparison)."""

from __future__ import annotations

from pathlib import Path

import typer

from textbooklm.progress import console


def ablate(
    config: Path = typer.Argument(..., help="TOML with an 'ablate' table (see configs/ablation-tiny.toml)."),
    run: Path = typer.Option(..., "--run", "-r", help="A finished run whose datasets the arms are built from."),
) -> None:
    """Train one model on each data recipe (equal tokens, same settings, several seeds) and compare them.

    Resumable: re-running after an interruption continues where it stopped. Results go to
    RUN/ablation/ (CSV, PNG, summary.json) and into RUN/report.html.
    """
    from rich.markup import escape

    from textbooklm.ablate.runner import run_ablation
    from textbooklm.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from None
    if cfg.ablate is None:
        console.print(f"[red]{escape(str(config))}: no [ablate] section[/red]")
        raise typer.Exit(2)
    try:
        summary = run_ablation(cfg.ablate, run, workers=cfg.run.workers or None)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"ablate: {len(summary['table'])} arms; table in {run / 'ablation' / 'table.csv'}, "
                  f"report {run / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate)
