"""Held-out verified exercises, and the measured overlap of a model's evaluation sets with its training data.

Why: HumanEval says how a model does on someone else's problems; the held-out exercises say whether
finetuning taught the docstring -> body skill on problems of the training distribution it did not
see (phi-1 reports both kinds). They are chosen by the one exercise split,
:func:`textbooklm.record.is_heldout_exercise` (by source file: a mined exercise's corpus file, a
teacher exercise's own id), so with ``fraction`` equal to the finetune stage's ``data.val_fraction``
they are exactly its validation documents, and decontam (same fraction) removed them, their
functions and their source files from every training dataset.

"Held out" is a claim, so it is measured: :func:`training_overlap` looks for each evaluation
problem's reference function (and a mined exercise's source file) in every document the model could
have trained on, and ``eval`` reports the counts next to the scores (expected 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbooklm.problems import Problem
from textbooklm.record import content_id, heldout_source_file, is_heldout_exercise, is_validation
from textbooklm.store import Dataset

PACK_INDEX = "index.json"


def heldout_rows(ds: Dataset, fraction: float) -> Iterator[dict[str, Any]]:
    """The exercise records of ``ds`` on the held-out side of the split (with a test to score them by)."""
    if not ds.is_finished:
        raise FileNotFoundError(f"{ds.path}: the exercises dataset is not finished (run the exercises stage)")
    schema = ds.schema()
    if schema is None:  # a finished stage with no verified exercise
        return
    need = {"prompt", "completion", "entry_point", "test"}
    if not need <= set(schema.names):
        raise ValueError(f"{ds.path}: held-out exercises need columns {sorted(need)} (has {sorted(schema.names)})")
    cols = [*sorted(need), *(c for c in ("id", "provenance") if c in schema.names)]
    for i, r in enumerate(ds.iter_records(columns=cols)):
        if r["test"] and is_heldout_exercise(r, fraction):
            yield {**r, "task_id": f"exercise/{r.get('id') or i}"}


def heldout_problems(ds: Dataset, fraction: float, limit: int | None = None) -> list[Problem]:
    """The exercises of ``ds`` on the held-out side of the split, as problems (reference = completion)."""
    problems = [Problem(task_id=r["task_id"], prompt=r["prompt"], entry_point=r["entry_point"], test=r["test"],
                        canonical_solution=r["completion"]) for r in heldout_rows(ds, fraction)]
    return problems[:limit] if limit else problems


def heldout_source_files(ds: Dataset, fraction: float) -> dict[str, str]:
    """{problem id: corpus record id of its source file} of the held-out mined exercises."""
    return {r["task_id"]: src for r in heldout_rows(ds, fraction) if (src := heldout_source_file(r)) is not None}


# -- overlap with the training data -------------------------------------------------------------------


def _squash(text: str) -> str:
    """Whitespace-insensitive form: a copy re-indented or re-wrapped is still a copy."""
    return re.sub(r"\s+", " ", text).strip()


def reference_function(p: Problem) -> str:
    """The problem's function as it would appear in a file: from ``def <entry_point>`` to the end of the body.

    A mined exercise's prompt starts with carried imports and helpers that are not contiguous with the
    function in its source file, so the whole prompt is not what to look for.
    """
    code = p.prompt + (p.canonical_solution or "")
    m = re.search(rf"^[ \t]*(async\s+)?def\s+{re.escape(p.entry_point)}\s*\(", code, re.M) if p.entry_point else None
    return code[m.start():] if m else code


@dataclass(frozen=True)
class TrainingSource:
    """A dataset a model could have trained on, and which of its documents were on the training side."""

    name: str
    dataset: Dataset
    val_fraction: float


def _train_documents(src: TrainingSource) -> Iterator[tuple[str, str]]:
    """(record id, text) of every document of ``src`` on the training side of its pack's split."""
    schema = src.dataset.schema()
    if schema is None:
        return
    names = set(schema.names)
    if {"prompt", "completion"} <= names:
        cols = ["prompt", "completion", *(c for c in ("id", "provenance") if c in names)]
        for r in src.dataset.iter_records(columns=cols):
            if not is_heldout_exercise(r, src.val_fraction):
                yield str(r.get("id") or ""), (r["prompt"] or "") + (r["completion"] or "")
    elif "text" in names:
        for r in src.dataset.iter_records(columns=[c for c in ("id", "text") if c in names]):
            text = r["text"] or ""
            if not is_validation(text, src.val_fraction):
                yield str(r.get("id") or ""), text


def training_sources(run: Any, model: str, seen: set[str] | None = None) -> list[TrainingSource] | None:
    """Every dataset ``model`` (a training stage of ``run``) was trained on, through its lineage.

    A training stage's data is the pack it read (``RUN/<stage>/data/index.json`` when it packed its own,
    as finetuning does, else its pack input's ``index.json``) plus the data of the model it started from
    (its training-stage inputs). None: not a stage of this run (a folder: its training data is unknown).
    """
    from textbooklm import registry

    seen = set() if seen is None else seen
    if model not in registry.names() or not run.configured(model) or model in seen:
        return None if model not in registry.names() else []
    seen.add(model)
    spec = registry.get(model)
    packs = [run.stage_dir(model) / "data" / PACK_INDEX]
    out: list[TrainingSource] = []
    for name in (*spec.inputs, *spec.optional):
        if not run.configured(name):
            continue
        if (run.stage_dir(name) / PACK_INDEX).is_file():
            packs.append(run.stage_dir(name) / PACK_INDEX)
        elif (run.stage_dir(name) / "train").is_dir():
            out += training_sources(run, name, seen) or []
    for index_path in packs:
        if not index_path.is_file():
            continue
        index = json.loads(index_path.read_text())
        vf = float(index.get("val_fraction", 0.0))  # a pack without it: every document counts as trained on
        for s in index.get("sources", []):
            name = s["dataset"]
            ds = Dataset(name) if Path(name).is_dir() else run.dataset(name, before=model)
            out.append(TrainingSource(name, ds, vf))
    return out


def training_overlap(sets: dict[str, list[Problem]], sources: Iterable[TrainingSource],
                     source_files: dict[str, str] | None = None) -> dict[str, Any]:
    """For each evaluation set, how many of its problems are in the training documents (expected 0).

    A problem overlaps when its reference function (whitespace-insensitive, :func:`reference_function`)
    is contained in a training document, or when it is a mined exercise whose source file (``source_files``:
    problem id -> corpus record id) is a training document (by record id or content id).
    """
    source_files = source_files or {}
    wanted = {name: [(p.task_id, _squash(reference_function(p))) for p in probs] for name, probs in sets.items()}
    files = set(source_files.values())
    found_fn: dict[str, set[str]] = {name: set() for name in sets}
    found_file: set[str] = set()
    checked: list[dict[str, Any]] = []
    for src in sources:
        docs = 0
        for rid, text in _train_documents(src):
            docs += 1
            if files and (rid in files or content_id(text) in files):
                found_file.update({rid, content_id(text)} & files)
            flat = _squash(text)
            for name, refs in wanted.items():
                for pid, ref in refs:
                    if ref and pid not in found_fn[name] and ref in flat:
                        found_fn[name].add(pid)
        checked.append({"dataset": src.name, "path": str(src.dataset.path), "val_fraction": src.val_fraction,
                        "train_documents": docs})
    out: dict[str, Any] = {"training_data": checked}
    for name, probs in sets.items():
        by_file = {p.task_id for p in probs if source_files.get(p.task_id) in found_file}
        overlapping = found_fn[name] | by_file
        out[name] = {"n": len(probs), "overlapping": len(overlapping), "by_function": len(found_fn[name]),
                     "by_source_file": len(by_file), "problem_ids": sorted(overlapping)}
    return out


def set_label(name: str, overlap: dict[str, Any] | None) -> str:
    """How results name an evaluation set: a set found in the training data is not called held out."""
    got = (overlap or {}).get(name) or {}
    if got.get("overlapping"):
        return f"{name} (overlapping training: {got['overlapping']})"
    return name


def model_overlap(run: Any, model: str, humaneval: list[Problem], heldout: list[Problem] | None,
                  heldout_cfg: Any) -> dict[str, Any]:
    """``training_overlap`` of one model of ``run`` with its evaluation sets (what ``eval`` records).

    ``heldout_cfg``: the eval's ``heldout_exercises`` section (its dataset gives the source files).
    A model that is not a stage of the run has unknown training data: said, not counted as 0.
    """
    sources = training_sources(run, model)
    if sources is None:
        return {"unknown": f"{model}: not a training stage of this run, its training data is unknown"}
    sets = {"humaneval": humaneval, **({"exercises": heldout} if heldout is not None else {})}
    files: dict[str, str] = {}
    if heldout is not None and heldout_cfg is not None:
        name = heldout_cfg.dataset
        ds = Dataset(name) if Path(name).is_dir() else run.dataset(name)
        files = heldout_source_files(ds, heldout_cfg.fraction)
    return training_overlap(sets, sources, files)


def relabel(measured: dict[str, Any], overlap: dict[str, Any]) -> dict[str, Any]:
    """Metric names of a set found in the training data say so (``exercises (overlapping training: 3) ...``)."""
    import dataclasses

    out = {}
    for key, m in measured.items():
        for name in ("exercises", "humaneval"):
            label = set_label(name, overlap)
            if label != name and key.startswith(name + " "):
                key = label + key[len(name):]
                if dataclasses.is_dataclass(m) and hasattr(m, "metric"):
                    m = dataclasses.replace(m, metric=label + m.metric[len(name):])
        out[key] = m
    return out
