"""``config check``: validate a whole run before it starts, so nothing dies mid-run on a bad reference.

The models already reject unknown keys and wrong types. This adds what only the whole run can tell:
input stages configured before their readers, files and folders that exist, teacher names that
resolve, dataset names that mean a stage of the run or a Dataset folder. Each area's ``checks.py``
(named by its registry entry) checks its own section with a :class:`Checker`; every problem is one
line ``FILE: key: reason``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textbooklm import registry
from textbooklm.store import Dataset


class Checker:
    """Collects problems for one section (``key`` arguments are relative to it)."""

    def __init__(self, cfg: Any, source: str, section: str, problems: list[str], paths: bool = True) -> None:
        self.cfg, self.source, self.section, self.problems = cfg, source, section, problems
        self.paths = paths  # False: a config for another machine (its data paths are checked there)

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.source}: {self.section}.{key}: {reason}")

    def path(self, key: str, value: str | None, kind: str = "any") -> None:
        """``value`` (if set) must exist: ``file``, ``dir`` or ``any``."""
        if value is None or not self.paths:
            return
        p = Path(value).expanduser()
        if not p.exists():
            self.problem(key, f"no such {'folder' if kind == 'dir' else 'file'}: {value}")
        elif kind == "file" and not p.is_file():
            self.problem(key, f"not a file: {value}")
        elif kind == "dir" and not p.is_dir():
            self.problem(key, f"not a folder: {value}")

    def teacher(self, key: str, name: str | None) -> None:
        if name is not None and name not in self.cfg.teachers:
            known = ", ".join(sorted(self.cfg.teachers)) or "none"
            self.problem(key, f"no teacher named {name!r}: add [teachers.{name}] (configured: {known})")

    def dataset(self, key: str, name: str | None) -> None:
        """A dataset name: a stage configured before this one, or a finished Dataset folder."""
        if name is None:
            return
        order = registry.names()
        if name in order:
            configured = getattr(self.cfg, name, None) is not None
            if not configured:
                self.problem(key, f"dataset {name!r} is a stage this config does not run (add [{name}])")
            elif self.section in order and order.index(name) >= order.index(self.section):
                self.problem(key, f"dataset {name!r} comes after [{self.section}] in the data flow")
            return
        if self.paths and not Dataset(name).is_finished:
            self.problem(key, f"dataset {name!r}: not a stage ({', '.join(order)}) nor a finished Dataset folder")

    def model(self, key: str, name: str | None) -> None:
        """A trained model: a training stage configured before this one, or a folder."""
        if name is None:
            return
        if name in registry.names():
            self.dataset(key, name)
        elif self.paths and not Path(name).exists():
            self.problem(key, f"{name!r}: not a stage of this run nor a checkpoint folder")


def check_run(cfg: Any, source: str, paths: bool = True) -> list[str]:
    """Every problem of a parsed config, one line each (empty when the run can start).

    ``paths=False`` skips file-system checks (a config written for a cluster, checked on a laptop).
    """
    from textbooklm.run import stage_hashes

    problems: list[str] = []
    try:
        stage_hashes(cfg)
    except ValueError as exc:
        problems.append(f"{source}: {exc}")
    if paths:  # the bound depends on this machine's cores, like the paths
        problems += _check_workers(getattr(cfg, "run", None), source)
    for spec in registry.stages():
        section = getattr(cfg, spec.name, None)
        if section is None:
            continue
        checker = Checker(cfg, source, spec.name, problems, paths)
        for field, value in section:
            if (field == "teacher" or field.endswith("_teacher")) and isinstance(value, str):
                if _uses_teacher(spec.name, section, field):
                    checker.teacher(field, value)
        hook = registry.resolve_hook(spec.check)
        if hook is not None:
            hook(section, checker)
    return problems


def _uses_teacher(stage: str, section: Any, field: str) -> bool:
    """A judge that runs no LLM judge does not need its teacher."""
    judges = getattr(section, "judges", None)
    return not (stage == "judge" and field == "teacher" and judges is not None and "llm" not in judges)


def _check_workers(run: Any, source: str) -> list[str]:
    """``[run] workers`` above what the local executor will start here (it caps it) is a mistake to say."""
    from textbooklm.executor import WORKERS_PER_CORE, max_workers, usable_cores

    if run is None or run.executor != "local" or run.workers <= max_workers():
        return []
    return [f"{source}: run.workers: {run.workers} is more than the local executor starts on this machine "
            f"(at most {max_workers()}: {WORKERS_PER_CORE} per core x {usable_cores()} cores; 0 = one per core)"]
