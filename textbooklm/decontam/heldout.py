"""The run's held-out exercises as one more benchmark decontam cleans training data against.

Why: exercises are mined from the filtered corpus, which is also the pretraining corpus, so without
this every held-out exercise sits verbatim in the pretraining data (the demo: 15 of 15). The held-out
side is chosen by :func:`textbooklm.record.is_heldout_exercise` (by source file, so no file has
exercises on both sides), read from the ``exercises`` input, and written once per run to
``OUT/heldout.json``, which every worker builds its index from (and the ablation's extra decontaminated
copies too). Each held-out exercise becomes a
reference like a HumanEval problem (prompt, prompt + reference body, tests), and the corpus file it
was mined from is listed so that the file is removed whole (signal ``source``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textbooklm.decontam.benchmarks import Reference, load_references, reference_of
from textbooklm.decontam.config import DecontamConfig
from textbooklm.problems import Problem
from textbooklm.record import exercise_source_key, heldout_source_file, is_heldout_exercise
from textbooklm.store import Dataset, atomic_write_json

EXERCISES = "exercises"  # the input whose held-out side is the benchmark (the exercises stage)
BENCHMARK = "heldout-exercises"
HELDOUT_FILE = "heldout.json"
COLUMNS = ("id", "prompt", "completion", "entry_point", "test", "provenance")


@dataclass
class HeldOut:
    """The held-out exercises of one decontam run, as written to (and read back from) ``path``."""

    path: Path
    fraction: float
    problems: list[Problem]
    source_files: dict[str, str] = field(default_factory=dict)  # corpus record id -> problem id
    n_sources: int = 0  # distinct sources (files or teacher exercises) among all exercises
    n_train_sources: int = 0

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.path.read_bytes(), digest_size=8).hexdigest()

    @classmethod
    def read(cls, path: Path) -> HeldOut:
        data = json.loads(path.read_text())
        problems = [Problem(task_id=p["task_id"], prompt=p["prompt"], entry_point=p["entry_point"], test=p["test"],
                            canonical_solution=p["canonical_solution"]) for p in data["problems"]]
        return cls(path, data["fraction"], problems, data["source_files"], data["n_sources"], data["n_train_sources"])


def split_note(row: dict[str, Any], fraction: float) -> dict[str, Any]:
    """The split an exercise carries in its decontam provenance: side, source key, fraction."""
    side = "heldout" if is_heldout_exercise(row, fraction) else "train"
    return {"split": side, "split_key": exercise_source_key(row), "split_fraction": fraction}


def heldout_exercises(cfg: DecontamConfig, ds: Dataset | None, out: Path) -> HeldOut | None:
    """Read the held-out side of ``ds`` (None when the run has no exercises) and write ``out/heldout.json``."""
    if ds is None or not ds.is_finished:
        return None
    schema = ds.schema()
    names = set(schema.names) if schema is not None else set()
    problems: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    keys: dict[str, bool] = {}
    if {"prompt", "completion"} <= names:
        cols = [c for c in COLUMNS if c in names]
        for i, r in enumerate(ds.iter_records(columns=cols)):
            key = exercise_source_key(r)
            held = is_heldout_exercise(r, cfg.heldout_fraction)
            keys[key] = held
            if not held:
                continue
            pid = f"exercise/{r.get('id') or i}"
            problems.append({"task_id": pid, "prompt": r["prompt"] or "", "canonical_solution": r["completion"] or "",
                             "entry_point": r.get("entry_point") or "", "test": r.get("test") or ""})
            source = heldout_source_file(r)
            if source is not None and cfg.heldout_source_files:
                sources.setdefault(source, pid)
    path = out / HELDOUT_FILE
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"dataset": str(ds.path), "fraction": cfg.heldout_fraction, "problems": problems,
                             "source_files": sources, "n_sources": len(keys),
                             "n_train_sources": sum(not h for h in keys.values())})
    return HeldOut.read(path)


def index_references(cfg: DecontamConfig, held: HeldOut | None) -> tuple[list[Reference], dict[str, str]]:
    """The configured benchmarks' references, then the held-out exercises', and their source files."""
    refs = load_references(cfg)
    if held is None:
        return refs, {}
    taken = {r.problem_id for r in refs}
    clash = [p.task_id for p in held.problems if p.task_id in taken]
    if clash:
        raise ValueError(f"held-out exercise ids {clash[:3]} clash with benchmark problem ids")
    return refs + [reference_of(p, BENCHMARK, cfg) for p in held.problems], held.source_files
