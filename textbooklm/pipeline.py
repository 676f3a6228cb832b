"""Run the stages of a config in order; skip what is done; write ``RUN_DIR/run.json``.

The stages and their data flow come from the registry (:mod:`textbooklm.registry`); what a
dataset name means and where things live comes from :class:`textbooklm.run.Run`. Each stage's state
is kept in two small files the pipeline owns:

* ``_attempt.json``: the config hash a run of the stage started with. Found with the same hash, an
  unfinished stage resumes (its finished shards are kept); with another hash the folder is wiped.
  The teacher request cache is not in the folder (``RUN/_cache``), so a wipe re-sends nothing.
* ``_stage.json``: written after the stage returns. Found with the same hash, the stage is skipped.

The hash of a stage covers its own config section, the run seed, the reply-changing fields of the
teachers it names, and the hashes of the stages it reads, so a config change re-runs that stage and
everything downstream, and a transport or budget change re-runs nothing.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.markup import escape

from textbooklm import __version__, registry
from textbooklm.config import PipelineBase
from textbooklm.progress import console, summary_line
from textbooklm.run import ATTEMPT_FILE, RUN_FILE, STAGE_FILE, Run, read_json, stage_hashes
from textbooklm.stage_context import StageContext
from textbooklm.stage_stats import stage_stats
from textbooklm.store import Dataset, atomic_write_json

__all__ = ["RUN_FILE", "StageNotReady", "context_for", "run_pipeline", "run_status", "stage_hashes", "stage_state"]


class StageNotReady(RuntimeError):
    """``--only`` asked for a stage whose inputs are not done with the current config."""


def stage_state(run_dir: Path, name: str, expected_hash: str | None = None) -> str:
    """``done``, ``stale`` (done with another config), ``partial`` (interrupted) or ``pending``."""
    run = Run(run_dir, cfg=None)
    run.hashes = {name: expected_hash} if expected_hash else {}
    return run.state(name)


def _versions() -> dict[str, str]:
    out = {"textbooklm": __version__, "python": platform.python_version()}
    for pkg in ("torch", "pyarrow", "numpy", "transformers", "pydantic", "ray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def context_for(run: Run, name: str) -> StageContext:
    """The context a stage gets: only the settings, teachers and datasets it may use."""
    cfg = run.cfg
    return StageContext(name=name, owner=run, run=cfg.run, config_hash=run.hashes.get(name, ""),
                        teachers=dict(cfg.teachers))


def run_pipeline(cfg: PipelineBase, run_dir: str | Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run every configured stage (or just ``only``) in order; return the run record.

    With ``only``, a stage whose inputs are not done with the current config is refused with a
    message naming them (it would otherwise read stale data without a word).
    """
    from textbooklm.config_base import ConfigError
    from textbooklm.executor import shutdown_pool
    from textbooklm.run_check import check_run

    problems = check_run(cfg, "config")
    if problems:  # before anything runs: a bad reference must not kill a run half-way
        raise ConfigError("\n".join(problems))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(run_dir, cfg)
    if only:
        unknown = [n for n in only if n not in registry.names()]
        if unknown:
            raise ValueError(f"--only: no stage named {', '.join(unknown)}; stages: {', '.join(registry.names())}")
    record = read_json(run_dir / RUN_FILE) or {}
    record.update({"versions": _versions(), "config": cfg.model_dump(mode="json"), "argv": sys.argv})
    record.setdefault("stages", {})
    # Stages no longer configured are dropped from the record (their folders stay for inspection).
    record["stages"] = {k: v for k, v in record["stages"].items() if k in run.hashes}
    for spec in run.specs():
        h = run.hashes[spec.name]
        folder = run.stage_dir(spec.name)
        state = run.state(spec.name)
        if state == "done":
            prev = run.info(spec.name)
            summary_line(f"{spec.name}: done already (config unchanged), skipped. {prev.get('line', '')}")
            continue
        if only and spec.name not in only:
            continue
        if only:
            not_ready = run.not_ready_inputs(spec.name)
            if not_ready:
                raise StageNotReady(f"{spec.name}: its inputs are not done with this config: {', '.join(not_ready)}; "
                                    f"run them first (e.g. without --only)")
        attempt = read_json(folder / ATTEMPT_FILE)
        if state == "stale" or (attempt is not None and attempt.get("config_hash") != h):
            why = run.stale_reason(spec.name) or "config changed"
            console.print(f"[yellow]{spec.name}: {escape(why)}, re-running from scratch[/yellow]")
            shutil.rmtree(folder)
        elif state == "partial":
            console.print(f"[yellow]{spec.name}: resuming an interrupted run[/yellow]")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / ATTEMPT_FILE, {"config_hash": h})
        started = time.time()
        inputs = run.inputs_for(spec)
        ctx = context_for(run, spec.name)
        try:
            result: Dataset = spec.load()(getattr(cfg, spec.name), inputs, folder, ctx)
        finally:
            ctx.close()  # shared teachers (a judge consulted every round) are closed once, here
            shutdown_pool()  # one warm worker pool per stage: idle workers do not hold memory into the next
        seconds = time.time() - started
        summary = result.manifest.get("summary", {}) if result.is_finished else {}
        done = {
            "config_hash": h,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "finished_ns": time.time_ns(),  # orders finishes: a stage done before its input was re-made is stale
            "line": summary.get("line", ""),
            "summary": summary,
            "stats": stage_stats(spec.name, folder, summary, seconds),
        }
        atomic_write_json(folder / STAGE_FILE, done)
        record["stages"][spec.name] = done
        atomic_write_json(run_dir / RUN_FILE, record)
    for name in run.hashes:  # keep timings of skipped stages in the record
        if name not in record["stages"] and (p := run.info(name)):
            record["stages"][name] = p
    atomic_write_json(run_dir / RUN_FILE, record)
    return record


def run_status(run_dir: str | Path, cfg: PipelineBase | None = None) -> list[dict[str, Any]]:
    """One row per stage: state, records in / kept / dropped, seconds. Reads only small JSON files.

    Without ``cfg`` the stages are those of the config the run recorded in ``run.json``. Counts
    come from each stage's own stats (what it kept and dropped), not from row counts of its folder
    (decontam's folder holds match rows; its kept records are in its cleaned copies).
    """
    run = Run(run_dir, cfg)
    rows = []
    for spec in run.specs():
        info = run.info(spec.name)
        stats = info.get("stats") or stage_stats(spec.name, run.stage_dir(spec.name), info.get("summary") or {},
                                                 info.get("seconds"))
        if not spec.records:  # a table about an artefact (tokenizer, pack, training, eval): no record counts
            stats = {}
        rows.append({
            "stage": spec.name,
            "state": run.state(spec.name),
            "in": stats.get("in"),
            "in_means": stats.get("in_means"),  # what one "in" is for this stage (files read, records checked)
            "kept": stats.get("kept"),
            "rejected": stats.get("dropped"),
            "seconds": info.get("seconds"),
            "line": info.get("line", ""),
        })
    return rows
