"""Decontaminating an arm's dataset that the run's decontam stage did not clean.

Why: decontam cleans what the pipeline trains on, and after a filter that is the filtered corpus,
not the raw one. Arm A trains on the raw (deduplicated) corpus on purpose, so without this it would
be the one arm that may hold benchmark solutions, which flatters it on HumanEval and makes the
filter's step look smaller than it is. The copy is made with the run's own ``[decontam]`` settings
and the same worker function as the stage (:func:`textbooklm.decontam.stage.check_task`), so every
arm is held to one rule.

The copy lives in ``RUN/ablation/decontam/<name>-<hash>/`` (hash of the decontam settings and the
source dataset), is resumable through shard markers like every data stage, and is reused while
neither changes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from textbooklm.config import config_hash
from textbooklm.progress import summary_line
from textbooklm.run import Run
from textbooklm.store import Dataset, finish_dataset


def decontaminated_copy(name: str, ds: Dataset, run: Run, folder: Path, what: str, workers: int = 0) -> Dataset:
    """``ds`` less what the run's decontam settings remove; rejected rows beside it, with reasons."""
    from textbooklm.decontam.heldout import HELDOUT_FILE, HeldOut
    from textbooklm.decontam.stage import check_task, plan_tasks
    from textbooklm.executor import map_shards

    cfg = run.cfg.decontam
    # The run's held-out exercises are a benchmark for this copy too (their functions and source files).
    held_path = run.stage_dir("decontam") / HELDOUT_FILE
    held = HeldOut.read(held_path) if cfg.heldout_exercises and held_path.is_file() else None
    stamp = config_hash({"decontam": cfg.model_dump(mode="json"), "source": str(ds.path.resolve()),
                         "rows": ds.num_rows, "source_hash": ds.manifest.get("config_hash"),
                         "heldout": held.digest if held is not None else None})
    out = folder / f"{name}-{stamp}"
    kept_path = out / name
    if Dataset(kept_path).is_finished:
        return Dataset(kept_path)
    work = out / "_work"
    tasks = plan_tasks(cfg, {name: ds}, out, work, held)
    results = map_shards(check_task, tasks, work / "markers", workers=workers,
                         description=f"{what}: decontaminate {name}")
    checked = sum(r["checked"] for r in results.values())
    kept = sum(r["kept"] for r in results.values())
    by_signal: Counter[str] = Counter()
    for r in results.values():
        by_signal.update(r["removed_by"])
    signals = ", ".join(f"{k} {v}" for k, v in sorted(by_signal.items())) or "none"
    line = (f"{what}: {name!r} was not cleaned by the run's decontam (it cleans the filtered corpus), so the "
            f"ablation cleaned a copy with the same settings: {checked} checked, {kept} kept, "
            f"{checked - kept} removed (by {signals})")
    summary = {"line": line, "checked": checked, "kept": kept, "removed": checked - kept,
               "removed_by_signal": dict(by_signal)}
    finish_dataset(out / "rejected", stage=f"ablate.decontam.{name}.rejected", config_hash=stamp,
                   parents=[ds.path], summary=summary)
    cleaned = finish_dataset(kept_path, stage=f"ablate.decontam.{name}", config_hash=stamp, parents=[ds.path],
                             summary=summary)
    summary_line(line)
    return cleaned
