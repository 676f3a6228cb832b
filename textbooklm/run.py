"""``Run``: the one owner of a run folder and of what a dataset name means in it.

A run is a config plus a folder. Every stage writes ``RUN/<stage>/`` (its Dataset, ``rejected/``,
artefacts, scratch under ``_work/``); the teacher request cache lives in ``RUN/_cache/`` (or a
user-wide path), outside every stage folder, so a stage re-run never deletes paid replies.

The one rule for names (:meth:`Run.dataset`), seen from a stage's place in the data flow:

1. a stage that ``replaces`` another stands for it after it ran: after ``filter``, "corpus" means
   the filtered corpus, never the raw one;
2. after decontam, a dataset it cleaned means its cleaned copy ``RUN/decontam/<name>``;
3. otherwise the stage's own folder; a name that is not a stage may be a Dataset folder path.

Pipeline, stages (through their context), ablate, evals, report and ``status`` all ask this class;
nobody else builds run paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from textbooklm import registry
from textbooklm.config_base import config_hash, hash_view
from textbooklm.registry import StageSpec, TrainingKind
from textbooklm.store import Dataset

STAGE_FILE = "_stage.json"
ATTEMPT_FILE = "_attempt.json"
RUN_FILE = "run.json"
CACHE_DIR = "_cache"
CACHE_ENV = "TEXTBOOKLM_TEACHER_CACHE"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def teachers_used(cfg: Any, section: BaseModel) -> dict[str, Any]:
    """The reply-changing fields of the named teachers a section refers to (``teacher``/``*_teacher``).

    Part of the stage's hash: another model re-runs the stage, but transport and policy fields
    (concurrency, rate limits, timeouts, retries, budgets, batch size) cannot change a reply, so
    changing them re-runs nothing.
    """
    from textbooklm.teacher.config import reply_fields

    used = {}
    for name, value in section:
        if (name == "teacher" or name.endswith("_teacher")) and isinstance(value, str) and value in cfg.teachers:
            used[value] = reply_fields(cfg.teachers[value])
    return used


def consulted_stages(section: BaseModel) -> tuple[str, ...]:
    """Stages whose config (not output) this section uses as it is set, e.g. the judge when textbooks
    are judged: their hashes join this stage's only then, so turning it off re-runs nothing else."""
    consulted = getattr(section, "consulted_stages", None)
    return tuple(consulted()) if callable(consulted) else ()


def stage_hashes(cfg: Any) -> dict[str, str]:
    """Config hash of every configured stage, chained through the stages it reads or follows."""
    run_part = cfg.run.model_dump(mode="json", include={"seed"})
    hashes: dict[str, str] = {}
    for spec in registry.stages():
        section = getattr(cfg, spec.name, None)
        if section is None:
            continue
        missing = [i for i in spec.inputs if i not in hashes]
        if missing:
            raise ValueError(f"stage {spec.name!r} needs {', '.join(missing)} configured before it")
        body = {"section": hash_view(section), "run": run_part, "teachers": teachers_used(cfg, section)}
        upstream = [hashes[i] for i in spec.inputs] + [
            hashes[i] for i in (*spec.optional, *spec.after, *consulted_stages(section)) if i in hashes
        ]
        hashes[spec.name] = config_hash(body, *upstream)
    return hashes


def _finished_ns(done: dict[str, Any]) -> int:
    """When a stage finished, in ns (0 when a record predates ``finished_ns``: never newer)."""
    value = done.get("finished_ns")
    return value if isinstance(value, int) else 0


class Run:
    """A run folder and its config: stage folders, states, hashes and the meaning of dataset names."""

    def __init__(self, folder: str | Path, cfg: Any | None = None) -> None:
        self.folder = Path(folder)
        if cfg is None:
            cfg = self.recorded_config()
        self.cfg = cfg
        self.hashes: dict[str, str] = stage_hashes(cfg) if cfg is not None else {}

    # -- config and layout -------------------------------------------------------------------
    def recorded_config(self) -> Any | None:
        """The config ``run.json`` recorded, or None (a folder made by single-stage commands)."""
        from textbooklm.config import pipeline_model

        record = read_json(self.folder / RUN_FILE) or {}
        if not isinstance(record.get("config"), dict):
            return None
        try:
            return pipeline_model().model_validate(record["config"])
        except ValueError:
            return None

    def specs(self) -> list[StageSpec]:
        """The configured stages in data-flow order (every stage with a folder when no config)."""
        if self.cfg is not None:
            return [s for s in registry.stages() if s.name in self.hashes]
        return [s for s in registry.stages() if (self.folder / s.name).is_dir()]

    def configured(self, name: str) -> bool:
        return name in self.hashes if self.cfg is not None else (self.folder / name).is_dir()

    def stage_dir(self, name: str) -> Path:
        return self.folder / name

    def artefact(self, stage: str, name: str) -> Path:
        """A file a stage leaves beside its dataset (``tokenizer.json``, ``index.json``, ``train``)."""
        return self.stage_dir(stage) / name

    @property
    def teacher_cache_dir(self) -> Path:
        """Where the request cache lives: ``[run] teacher_cache``, ``$TEXTBOOKLM_TEACHER_CACHE``, else RUN/_cache.

        Never inside a stage folder, so re-running a stage (which wipes its folder) sends nothing twice.
        """
        configured = getattr(getattr(self.cfg, "run", None), "teacher_cache", None) if self.cfg else None
        chosen = configured or os.environ.get(CACHE_ENV)
        return Path(chosen).expanduser() if chosen else self.folder / CACHE_DIR

    # -- state ---------------------------------------------------------------------------------
    def info(self, name: str) -> dict[str, Any]:
        """What the stage recorded when it finished (hash, seconds, summary line and stats)."""
        return read_json(self.stage_dir(name) / STAGE_FILE) or {}

    def state(self, name: str) -> str:
        """``done``, ``stale`` (done with another config, or before its inputs were re-made),
        ``partial`` (interrupted) or ``pending``."""
        done = read_json(self.stage_dir(name) / STAGE_FILE)
        if done is not None:
            return "stale" if self.stale_reason(name, done) else "done"
        return "partial" if self.stage_dir(name).exists() else "pending"

    def stale_reason(self, name: str, done: dict[str, Any] | None = None,
                     _memo: dict[str, str] | None = None) -> str:
        """Why a finished stage no longer stands for this run ("" when it does): its config changed,
        or a stage it reads or follows is being re-run (not done) or finished after it did. Why the
        second: a finetune killed and re-run leaves eval's config unchanged, but eval measured the
        old model."""
        memo = {} if _memo is None else _memo  # one answer per stage per call: the DAG has many paths
        if name in memo:
            return memo[name]
        done = read_json(self.stage_dir(name) / STAGE_FILE) if done is None else done
        if done is None:
            return ""
        memo[name] = reason = self._stale_reason(name, done, memo)
        return reason

    def _stale_reason(self, name: str, done: dict[str, Any], memo: dict[str, str]) -> str:
        expected = self.hashes.get(name)
        if expected is not None and done.get("config_hash") != expected:
            return "config changed"
        spec = registry.get(name) if name in registry.names() else None
        if spec is None:
            return ""
        for up in (*spec.inputs, *spec.optional, *spec.after):
            if not self.configured(up) or not self.stage_dir(up).exists():
                continue
            up_done = read_json(self.stage_dir(up) / STAGE_FILE)
            if up_done is None:
                return f"{up} is being re-run"
            if self.stale_reason(up, up_done, memo):
                return f"{up} is stale"
            if _finished_ns(up_done) > _finished_ns(done):
                return f"{up} finished after it"
        return ""

    def not_ready_inputs(self, name: str) -> list[str]:
        """Configured upstream stages of ``name`` that are not done with the current config."""
        spec = registry.get(name)
        upstream = [n for n in (*spec.inputs, *spec.optional, *spec.after) if self.configured(n)]
        return [f"{n} ({self.state(n)})" for n in upstream if self.state(n) != "done"]

    # -- names -> datasets ---------------------------------------------------------------------
    def _earlier(self, before: str | None) -> list[StageSpec]:
        specs = self.specs()
        if before is None:
            return specs
        names = [s.name for s in registry.stages()]
        if before not in names:
            return specs
        limit = names.index(before)
        return [s for s in specs if names.index(s.name) < limit]

    def resolve_name(self, name: str, *, before: str | None = None, unfiltered: bool = False) -> str:
        """The stage whose output ``name`` means for a stage at ``before`` (rule 1 of the module doc)."""
        if unfiltered:
            return name
        for spec in self._earlier(before):
            if spec.replaces == name:
                name = spec.name
        return name

    def dataset(self, name: str, *, before: str | None = None, unfiltered: bool = False) -> Dataset:
        """The Dataset a name means for a stage at ``before`` (None: after every stage).

        ``unfiltered=True`` asks for the stage's own output even where a later stage replaces it (the
        ablation's arm A trains on the deduplicated, unfiltered corpus on purpose).
        """
        stage_names = registry.names()
        if name not in stage_names:
            path = Path(name)
            if path.is_dir() and Dataset(path).is_finished:
                return Dataset(path)
            raise FileNotFoundError(
                f"dataset {name!r}: not a stage ({', '.join(stage_names)}) nor a finished Dataset folder"
            )
        resolved = self.resolve_name(name, before=before, unfiltered=unfiltered)
        earlier = self._earlier(before)
        cleaner = next((s for s in earlier if s.cleans), None)
        if cleaner is not None and registry.get(resolved).cleaned_by_decontam:
            cleaned = Dataset(self.stage_dir(cleaner.name) / resolved)
            if cleaned.is_finished:
                return cleaned
            if not unfiltered:  # never fall back to the uncleaned data without a word
                state = self.state(cleaner.name)
                why = ("ran but wrote no cleaned copy of it" if state == "done"
                       else f"is {state}, so there is no cleaned copy yet")
                raise FileNotFoundError(f"dataset {name!r}: {cleaner.name} {why} ({cleaned.path}); "
                                        f"run {cleaner.name} first")
        return Dataset(self.stage_dir(resolved))

    def inputs_for(self, spec: StageSpec) -> dict[str, Dataset]:
        """The input Datasets of a stage, by name, after the naming rule.

        Two names meaning one dataset are given once, under the name of the stage that wrote it
        (with a filter, decontam and the training stages see ``filter``, not a raw ``corpus``).
        """
        out: dict[str, Dataset] = {}
        for name in (*spec.inputs, *spec.optional):
            if not self.configured(name):
                continue
            if name in spec.inputs:  # required inputs are read under their own name (judge reads the corpus)
                out[name] = self.dataset(name, before=spec.name)
                continue
            resolved = self.resolve_name(name, before=spec.name)
            if resolved != name and resolved in (*spec.inputs, *spec.optional):
                continue  # given under the replacing stage's own name
            out[name] = self.dataset(name, before=spec.name)
        return out

    def training_sources(self, kind: TrainingKind | None, *, before: str | None = None) -> list[str]:
        """Default training datasets: stages whose output is ``kind`` training data (None: any).

        Names are given after the naming rule, without repeats: with a filter, the corpus is the filtered one.
        """
        names: list[str] = []
        for spec in self._earlier(before):
            if spec.training_data is None or (kind is not None and spec.training_data != kind):
                continue
            resolved = self.resolve_name(spec.name, before=before)
            if resolved not in names:
                names.append(resolved)
        return names

    def model_folder(self, name: str) -> Path:
        """A training stage's folder by name (its ``train/`` run inside), else a path as given."""
        if name in registry.names():
            return self.stage_dir(name)
        return Path(name)
