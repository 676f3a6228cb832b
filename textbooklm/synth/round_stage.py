"""The skeleton both synthesis stages share: run the rounds, close the services, dedup, record, write.

A synth stage's ``run`` is: build its steps (plan, ask, check: its own module), then
:func:`drive` the rounds with the run's lazy teacher and sandboxes (``StageContext.lazy_*``),
:func:`dedup` them across rounds into the stage's ledger (rounds are the ledger's shards), and
:func:`write_stage` the summary whose counts and line come from that ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from textbooklm.lazy_services import LazySandbox, LazyTeacher
from textbooklm.ledger import StageLedger
from textbooklm.progress import summary_line
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, atomic_write_json, finish_dataset
from textbooklm.synth.driver import RoundSteps, drive_rounds
from textbooklm.synth.rounds import RoundStore


@dataclass
class Services:
    """The stage's lazy teacher (None: not used) and sandboxes, closed together when the rounds end."""

    teacher: LazyTeacher | None
    sandboxes: list[LazySandbox | None] = field(default_factory=list)
    no_teacher: str = "teacher not used"

    def close(self) -> str:
        """Close everything; returns the teacher's summary line (requests, tokens, cost)."""
        for s in self.sandboxes:
            if s is not None:
                s.close()
        line = self.teacher.summary() if self.teacher is not None else self.no_teacher
        if self.teacher is not None:
            self.teacher.close()
        return line


def drive(n_rounds: int, store: RoundStore, steps: RoundSteps, pipeline: bool = True,
          ahead: int = 1) -> Iterator[dict[str, Any]]:
    """Each round's marker in order (driver.py), without its kept seeds: they live on in the driver's
    coverage, and keeping them per round grew with the count."""
    for marker in drive_rounds(n_rounds, store, steps, pipeline=pipeline, ahead=ahead):
        yield {key: val for key, val in marker.items() if key != "kept_seeds"}


def dedup(ctx: StageContext, store: RoundStore, n_rounds: int, diversity: Any,
          in_means: str) -> tuple[StageLedger, dict[str, Any]]:
    """The dedup step: cross-round exact and near duplicates, each round's verdicts into the ledger.

    Returns the ledger (``in_means`` says what one input is) and kept / rejected / by reason /
    diversity of what is kept (rounds.py ``finish``).
    """
    ledger = ctx.ledger(in_means, store.rejected_schema)
    return ledger, store.finish(n_rounds, diversity, ledger)


def kept_column(out: Path, column: str) -> Iterator[Any]:
    """One column of the kept rows, shard by shard (memory flat in the count)."""
    for shard in Dataset(out).shards():
        yield from pq.read_table(shard, columns=[column]).column(column).to_pylist()


def write_stage(ctx: StageContext, out: Path, stage: str, inputs: dict[str, Dataset], ledger: StageLedger,
                report: dict[str, Any], tail: str, teacher_line: str, **summary: Any) -> Dataset:
    """Write ``diversity.json`` (``report``: per round and overall), finish the ledger (``rejected/``, counts,
    line) and the kept dataset with ``summary``'s fields."""
    atomic_write_json(out / "diversity.json", report)
    done = ledger.finish(tail=tail, teacher=teacher_line, **summary)
    ds = finish_dataset(out, stage=stage, config_hash=ctx.config_hash, parents=[str(v.path) for v in inputs.values()],
                        summary=done)
    summary_line(teacher_line)
    summary_line(done["line"])
    return ds
