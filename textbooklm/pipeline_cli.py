"""Commands about whole runs: ``run``, ``status``, ``config show`` and ``config check``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from textbooklm.config import ConfigError, PipelineBase, load_config
from textbooklm.progress import console

config_app = typer.Typer(help="Inspect and validate pipeline config files.", no_args_is_help=True)
cache_app = typer.Typer(help="The run's teacher request cache (RUN/_cache, or run.teacher_cache in the config).",
                        no_args_is_help=True)


def _load_or_exit(path: Path) -> PipelineBase:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{exc}")
        raise typer.Exit(2) from None


def run_or_exit(cfg: PipelineBase, out: Path, only: list[str] | None, source: str = "config") -> dict:
    """Run the pipeline; a config problem or a stage whose inputs are not ready exits 2 with one line each."""
    from textbooklm.pipeline import StageNotReady, run_pipeline

    try:
        return run_pipeline(cfg, out, only=only)
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{escape(str(exc).replace('config: ', source + ': '))}")
        raise typer.Exit(2) from None
    except StageNotReady as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


def run(
    config: Path = typer.Argument(..., help="Pipeline TOML file (see configs/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder; every stage writes a subfolder of it."),
    only: list[str] = typer.Option(None, "--only", help="Run just these stages (upstream must be done)."),
) -> None:
    """Run every configured stage in order. Finished stages with an unchanged config are skipped."""
    cfg = _load_or_exit(config)
    record = run_or_exit(cfg, out, only=only or None, source=str(config))
    total = sum(s.get("seconds") or 0 for s in record["stages"].values())
    console.print(f"run: {len(record['stages'])} stages in {out} ({total:.1f} s of stage time); see {out}/run.json")


def status(
    run_dir: Path = typer.Argument(..., help="A run folder made by `textbooklm run`."),
    config: Path = typer.Option(None, "--config", help="Also mark stages whose config has changed as stale."),
) -> None:
    """Print each stage's state (done, stale, partial, pending) and its counts."""
    from textbooklm.pipeline import run_status
    from textbooklm.run import RUN_FILE

    if not (run_dir / RUN_FILE).exists() and not run_dir.is_dir():
        console.print(f"[red]{run_dir}: no such run folder[/red]")
        raise typer.Exit(2)
    cfg = _load_or_exit(config) if config else None
    table = Table("stage", "state", "in", "(an in is)", "kept", "dropped", "seconds")
    rows = run_status(run_dir, cfg)
    for row in rows:
        fmt = lambda v: "" if v is None else str(v)  # noqa: E731
        means = row["in_means"] if row["in"] is not None else None
        table.add_row(row["stage"], row["state"], fmt(row["in"]), fmt(means), fmt(row["kept"]), fmt(row["rejected"]),
                      fmt(row["seconds"]))
    console.print(table)
    for row in rows:
        if row["line"]:
            console.print(escape(row["line"]), soft_wrap=True)


@config_app.command("show")
def config_show(config: Path = typer.Argument(..., help="Pipeline TOML file.")) -> None:
    """Print the resolved config: every key, defaults filled in, as JSON."""
    cfg = _load_or_exit(config)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@config_app.command("check")
def config_check(
    configs: list[Path] = typer.Argument(..., help="Pipeline TOML files."),
    skip_paths: bool = typer.Option(False, "--skip-paths", help="Do not check that files and folders exist "
                                    "(a config for another machine); names, types and stage order still are."),
) -> None:
    """Validate whole runs before they start: keys and types, stage order, files, teacher and dataset names.

    Every problem is one line naming file, key and reason; exit 2 if any config has one.
    """
    from textbooklm.run import stage_hashes
    from textbooklm.run_check import check_run

    failed = False
    for path in configs:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            console.print(escape(str(exc)), soft_wrap=True)
            failed = True
            continue
        problems = check_run(cfg, str(path), paths=not skip_paths)
        if problems:
            for line in problems:
                console.print(escape(line), soft_wrap=True)
            failed = True
            continue
        parts = [", ".join(stage_hashes(cfg)) or "no stages"]
        if cfg.ablate is not None:
            parts.append(f"ablation of {len(cfg.ablate.arms)} arms x {len(cfg.ablate.seeds)} seeds")
        console.print(escape(f"{path}: ok ({'; '.join(parts)})"))
    if failed:
        raise typer.Exit(2)


def _cache_folder(run_dir: Path) -> Path:
    from textbooklm.run import Run

    return Run(run_dir).teacher_cache_dir


@cache_app.command("stats")
def cache_stats_cmd(run_dir: Path = typer.Argument(..., help="A run folder (its recorded config names the cache).")
                    ) -> None:
    """Cached replies per model, and each stage's ledger (requests, cache hits, tokens, USD)."""
    from textbooklm.teacher.cache_admin import cache_stats

    stats = cache_stats(_cache_folder(run_dir))
    if not stats["exists"]:
        console.print(escape(f"{stats['path']}: no teacher cache yet"))
        return
    table = Table("backend", "model", "entries", "MB", "newest")
    for m in stats["models"]:
        newest = time.strftime("%Y-%m-%d %H:%M", time.localtime(m["newest"])) if m["newest"] else ""
        table.add_row(m["backend"], escape(m["model"]), str(m["entries"]), f"{m['bytes'] / 1e6:.2f}", newest)
    console.print(escape(f"{stats['path']} ({stats['file_bytes'] / 1e6:.2f} MB)"))
    console.print(table)
    ledger = Table("stage", "model", "requests", "cache hits", "tokens in", "tokens out", "USD")
    for row in stats["ledgers"]:
        usd = row.get("cost_usd")
        ledger.add_row(row["stage"], escape(row["model"]), str(row.get("requests", "")), str(row.get("cached", "")),
                       str(row.get("tokens_in", "")), str(row.get("tokens_out", "")),
                       "" if usd is None else f"{usd:.4f}")
    console.print(ledger)


@cache_app.command("prune")
def cache_prune_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder."),
    model: str = typer.Option(None, help="Remove the replies of this model."),
    older_than_days: float = typer.Option(None, help="Remove replies cached more than this many days ago."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; remove nothing."),
) -> None:
    """Remove cached replies (a later run pays for them again). Needs --model and/or --older-than-days."""
    from textbooklm.teacher.cache_admin import prune_cache

    try:
        n = prune_cache(_cache_folder(run_dir), model=model, older_than_days=older_than_days, dry_run=dry_run)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{'would remove' if dry_run else 'removed'} {n} cached replies")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("status")(status)
    app.add_typer(config_app, name="config")
    app.add_typer(cache_app, name="cache")
