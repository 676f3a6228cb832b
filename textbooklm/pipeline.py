"""Run the stages of a config in order; skip what is done; write ``RUN_DIR/run.json``.

Each stage writes ``RUN_DIR/<stage>/`` (its output Dataset, ``rejected/`` and scratch under
``_work/``). Its state is kept in two small files the pipeline owns:

* ``_attempt.json``: the config hash a run of the stage started with. Found with the same hash, an
  unfinished stage resumes (its finished shards are kept); with another hash the folder is wiped.
* ``_stage.json``: written after the stage returns. Found with the same hash, the stage is skipped.

The hash of a stage covers its own config section, the run settings that change results, and the
hashes of the stages it reads, so a config change re-runs that stage and everything downstream.
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from textbooklm import __version__
from textbooklm.config import PipelineConfig, RunConfig, config_hash
from textbooklm.progress import console, summary_line
from textbooklm.store import Dataset, atomic_write_json

STAGE_FILE = "_stage.json"
ATTEMPT_FILE = "_attempt.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Stage:
    """A pipeline step: its config section / folder name, the stages it reads, and its function.

    ``target`` is ``"module:function"`` so the pipeline imports heavy stages only when they run.
    The function is ``run(config_section, inputs: dict[str, Dataset], out: Path, ctx) -> Dataset``.
    """

    name: str
    inputs: tuple[str, ...]
    target: str
    optional: tuple[str, ...] = ()  # read when configured in the same run, else absent from inputs
    after: tuple[str, ...] = ()  # not read, but a change there re-runs this stage (e.g. decontam)

    def load(self) -> Callable[..., Dataset]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


TRAINING_DATA = ("corpus", "filter", "textbooks", "exercises")
# A stage that writes cleaned copies of other stages' datasets to <its folder>/<name>/: stages after it
# read those copies under the original names.
CLEANED_BY = "decontam"

# Data-flow order.
STAGES: list[Stage] = [
    Stage("corpus", (), "textbooklm.corpus.stage:run"),
    Stage("judge", ("corpus",), "textbooklm.quality.judge_stage:run"),
    Stage("classify", ("corpus", "judge"), "textbooklm.quality.classify_stage:run"),
    Stage("filter", ("corpus", "classify"), "textbooklm.quality.filter_stage:run"),
    Stage("textbooks", (), "textbooklm.synth.textbooks_stage:run", optional=("filter",)),
    Stage("exercises", (), "textbooklm.synth.exercises_stage:run", optional=("filter",)),
    Stage("decontam", (), "textbooklm.decontam.stage:run", optional=("corpus", "filter", "textbooks", "exercises")),
    # From here on, corpus/filter/textbooks/exercises mean their decontaminated copies (see CLEANED_BY).
    Stage("tokenizer", (), "textbooklm.lm.stage:run_tokenizer", optional=TRAINING_DATA, after=("decontam",)),
    Stage("pack", ("tokenizer",), "textbooklm.lm.stage:run_pack", optional=TRAINING_DATA, after=("decontam",)),
    Stage("pretrain", ("pack",), "textbooklm.lm.stage:run_pretrain"),
    Stage("finetune", (), "textbooklm.lm.stage:run_finetune", optional=("pretrain", "tokenizer", *TRAINING_DATA),
          after=("decontam",)),
    Stage("eval", (), "textbooklm.evals.stage:run", optional=("pretrain", "finetune")),
]
# The report reads every stage's folder, so it comes last and is re-built when any of them changes.
STAGES.append(Stage("report", (), "textbooklm.report.stage:run", optional=tuple(s.name for s in STAGES)))


@dataclass
class RunContext:
    """What every stage may need beyond its own section."""

    run_dir: Path
    pipeline: PipelineConfig
    config_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run(self) -> RunConfig:
        return self.pipeline.run


def stage_hashes(cfg: PipelineConfig) -> dict[str, str]:
    """Config hash of every configured stage, chained through its inputs."""
    run_part = cfg.run.model_dump(mode="json", include={"seed"})
    hashes: dict[str, str] = {}
    for stage in STAGES:
        section = getattr(cfg, stage.name, None)
        if section is None:
            continue
        missing = [i for i in stage.inputs if i not in hashes]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {missing} configured before it")
        body = {"section": section.model_dump(mode="json"), "run": run_part, "teachers": _teachers_of(cfg, section)}
        upstream = [hashes[i] for i in stage.inputs] + [
            hashes[i] for i in (*stage.optional, *stage.after) if i in hashes
        ]
        hashes[stage.name] = config_hash(body, *upstream)
    return hashes


def _teachers_of(cfg: PipelineConfig, section: Any) -> dict[str, Any]:
    """Configs of the named teachers a stage section refers to (fields ``teacher`` / ``*_teacher``).

    Part of the stage's hash: pointing a stage at another model, or changing that model's settings,
    re-runs the stage.
    """
    used = {}
    for name, value in section:
        if (name == "teacher" or name.endswith("_teacher")) and isinstance(value, str) and value in cfg.teachers:
            used[value] = cfg.teachers[value].model_dump(mode="json", exclude={"concurrency"})
    return used


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_state(run_dir: Path, name: str, expected_hash: str | None = None) -> str:
    """``done``, ``stale`` (done with another config), ``partial`` (interrupted) or ``pending``."""
    folder = Path(run_dir) / name
    done = _read_json(folder / STAGE_FILE)
    if done is not None:
        if expected_hash is None or done.get("config_hash") == expected_hash:
            return "done"
        return "stale"
    return "partial" if folder.exists() else "pending"


def _versions() -> dict[str, str]:
    out = {"textbooklm": __version__, "python": platform.python_version()}
    for pkg in ("torch", "pyarrow", "numpy", "transformers", "pydantic", "ray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _use_cleaned(name: str, outputs: dict[str, Dataset], folder: Path) -> None:
    """After the cleaning stage, later stages read its cleaned copies under the original names."""
    if name != CLEANED_BY:
        return
    for data in TRAINING_DATA:
        cleaned = Dataset(folder / data)
        if data in outputs and cleaned.is_finished:
            outputs[data] = cleaned


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run every configured stage (or just ``only``) in order; return the run record."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    hashes = stage_hashes(cfg)
    record = _read_json(run_dir / RUN_FILE) or {}
    record.update({"versions": _versions(), "config": cfg.model_dump(mode="json"), "argv": sys.argv})
    record.setdefault("stages", {})
    # Stages no longer configured are dropped from the record (their folders stay for inspection).
    record["stages"] = {k: v for k, v in record["stages"].items() if k in hashes}
    outputs: dict[str, Dataset] = {}
    for stage in STAGES:
        if stage.name not in hashes:
            continue
        h = hashes[stage.name]
        folder = run_dir / stage.name
        state = stage_state(run_dir, stage.name, h)
        if state == "done" or (only and stage.name not in only):
            if state == "done":
                prev = _read_json(folder / STAGE_FILE) or {}
                summary_line(f"{stage.name}: done already (config unchanged), skipped. {prev.get('line', '')}")
            outputs[stage.name] = Dataset(folder)
            _use_cleaned(stage.name, outputs, folder)
            continue
        attempt = _read_json(folder / ATTEMPT_FILE)
        if state == "stale" or (attempt is not None and attempt.get("config_hash") != h):
            console.print(f"[yellow]{stage.name}: config changed, re-running from scratch[/yellow]")
            shutil.rmtree(folder)
        elif state == "partial":
            console.print(f"[yellow]{stage.name}: resuming an interrupted run[/yellow]")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / ATTEMPT_FILE, {"config_hash": h})
        ctx = RunContext(run_dir=run_dir, pipeline=cfg, config_hash=h)
        started = time.time()
        inputs = {name: outputs[name] for name in (*stage.inputs, *stage.optional) if name in outputs}
        result = stage.load()(getattr(cfg, stage.name), inputs, folder, ctx)
        seconds = time.time() - started
        summary = result.manifest.get("summary", {}) if result.is_finished else {}
        done = {
            "config_hash": h,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "line": summary.get("line", ""),
            "summary": summary,
        }
        atomic_write_json(folder / STAGE_FILE, done)
        record["stages"][stage.name] = done
        atomic_write_json(run_dir / RUN_FILE, record)
        outputs[stage.name] = result
        _use_cleaned(stage.name, outputs, folder)
    for name in hashes:  # keep timings of skipped stages in the record
        if name not in record["stages"] and (p := _read_json(run_dir / name / STAGE_FILE)):
            record["stages"][name] = p
    atomic_write_json(run_dir / RUN_FILE, record)
    return record


def run_status(run_dir: str | Path, cfg: PipelineConfig | None = None) -> list[dict[str, Any]]:
    """One row per stage: state, rows kept, rows rejected, seconds. Reads only small JSON files.

    Without ``cfg`` the stages are those of the config the run recorded in ``run.json``.
    """
    run_dir = Path(run_dir)
    record = _read_json(run_dir / RUN_FILE) or {}
    if cfg is None and isinstance(record.get("config"), dict):
        try:
            cfg = PipelineConfig.model_validate(record["config"])
        except ValueError:
            cfg = None
    hashes = stage_hashes(cfg) if cfg else {}
    names = [s.name for s in STAGES if s.name in hashes or (not hashes and (run_dir / s.name).is_dir())]
    rows = []
    for name in names:
        folder = run_dir / name
        state = stage_state(run_dir, name, hashes.get(name))
        kept = rejected = None
        if Dataset(folder).is_finished:
            kept = Dataset(folder).num_rows
        if Dataset(folder / "rejected").is_finished:
            rejected = Dataset(folder / "rejected").num_rows
        info = _read_json(folder / STAGE_FILE) or record.get("stages", {}).get(name, {})
        rows.append(
            {
                "stage": name,
                "state": state,
                "kept": kept,
                "rejected": rejected,
                "seconds": info.get("seconds"),
                "line": info.get("line", ""),
            }
        )
    return rows
