"""Console output shared by every stage: progress bars with counts and rates, and stage summaries.

One place so every stage looks the same and so tests/CI (no TTY) get plain, quiet output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)


class _RateColumn(TextColumn):
    """Items per second, computed by rich from the task's speed estimate."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return self.text_format if speed is None else f"{speed:,.1f}/s"


LOG_EVERY_PERCENT = 10


class _LogLines:
    """Progress for a log file (no terminal): one short line each ``LOG_EVERY_PERCENT`` % (or each
    doubling of the count when the total is unknown). Why: a live bar redrawn into a file becomes one
    line of many kilobytes of carriage returns; a line per step stays readable and greppable."""

    def __init__(self, description: str, total: int | None, completed: int) -> None:
        self.description, self.total, self.done = description, total, completed
        self.start = time.monotonic()
        self.next_mark = self._mark_after(completed)
        self.logged_at = completed

    def _mark_after(self, done: int) -> int:
        if self.total:
            step = max(1, -(-self.total * LOG_EVERY_PERCENT // 100))
            return (done // step + 1) * step
        return max(1, done * 2)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self.next_mark or (self.total and self.done >= self.total):
            self.next_mark = self._mark_after(self.done)
            self.log()

    def log(self) -> None:
        self.logged_at = self.done
        elapsed = time.monotonic() - self.start
        rate = f", {self.done / elapsed:,.1f}/s" if elapsed > 0 else ""
        of = f"/{self.total:,}" if self.total else ""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        console.print(f"{self.description}: {self.done:,}{of}{pct}{rate}, {elapsed:.1f} s",
                      soft_wrap=True, markup=False)


@contextmanager
def progress_bar(description: str, total: int | None, completed: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar (count, rate, ETA) while the block runs on a terminal, and logs
    a line every ``LOG_EVERY_PERCENT`` % of the way otherwise."""
    if not console.is_terminal:
        lines = _LogLines(description, total, completed)
        yield lines.advance
        if lines.done != lines.logged_at:
            lines.log()  # the last state, when the final advance did not land on a mark
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as prog:
        # the column renders markup: escape so "teacher x [judge]" keeps its brackets
        task = prog.add_task(escape(description), total=total, completed=completed)
        yield lambda n=1: prog.advance(task, n)


def summary_line(text: str) -> None:
    """Print a stage's one-line summary (always shown, TTY or not).

    Printed as plain text, never as rich markup: summaries hold bracketed words (``[judge]``,
    ``[teachers.x]``) and server messages that markup would eat or misread.
    """
    console.print(text, soft_wrap=True, markup=False)
