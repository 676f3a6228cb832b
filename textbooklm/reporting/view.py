"""``RunView``: what a report section may read of a run, all of it through :class:`textbooklm.run.Run`.

Sections never build run paths: a stage's own output, its ``rejected`` records, its artefacts
(``agreement.json``, ``index.json``, ``train/metrics.csv``) and what it recorded when it finished
(summary, stats, seconds) come from the methods here, which ask ``Run``. Files written by an older
version of a stage may lack fields: every reader returns None or an empty value rather than raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textbooklm.run import Run
from textbooklm.store import Dataset


class RunView:
    """A finished (or partial) run as the report reads it."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def stages(self) -> list[str]:
        """Stages of the run that have a folder, in data-flow order (the report itself left out)."""
        return [s.name for s in self.run.specs() if s.name != "report" and self.run.stage_dir(s.name).is_dir()]

    def has(self, name: str) -> bool:
        return name in self.stages

    def state(self, name: str) -> str:
        return self.run.state(name)

    def info(self, name: str) -> dict[str, Any]:
        return self.run.info(name)

    def summary(self, name: str) -> dict[str, Any]:
        return self.info(name).get("summary") or {}

    def line(self, name: str) -> str:
        return self.info(name).get("line") or ""

    def folder(self, name: str) -> Path:
        """The stage's folder (for a plugin's own files; built-in sections use the readers below)."""
        return self.run.stage_dir(name)

    def artefact(self, stage: str, name: str) -> Path:
        return self.run.artefact(stage, name)

    def json(self, stage: str, name: str) -> Any:
        """A JSON artefact of a stage, or None when absent or unreadable."""
        try:
            return json.loads(self.artefact(stage, name).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None

    def output(self, name: str) -> Dataset | None:
        """The stage's own output Dataset (not what a later stage made of it), if finished."""
        ds = Dataset(self.run.stage_dir(name))
        return ds if ds.is_finished else None

    def rejected(self, name: str) -> Dataset | None:
        ds = Dataset(self.artefact(name, "rejected"))
        return ds if ds.is_finished else None

    def records(self, name: str, columns: list[str] | None = None, rejected: bool = False,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows of a stage's output (or rejected set), only the columns that exist, at most ``limit``."""
        ds = self.rejected(name) if rejected else self.output(name)
        if ds is None:
            return
        schema = ds.schema()
        if schema is None:
            return
        cols = [c for c in columns if c in schema.names] if columns else None
        for i, row in enumerate(ds.iter_records(cols)):
            if limit is not None and i >= limit:
                return
            yield row

    @property
    def teacher_cache_dir(self) -> Path:
        return self.run.teacher_cache_dir


def provenance(row: dict[str, Any]) -> dict[str, Any]:
    """A record's provenance as a dict (stored as JSON text), {} when absent or unreadable."""
    value = row.get("provenance")
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
