"""Console output shared by every stage: progress bars with counts and rates, and stage summaries.

One place so every stage looks the same and so tests/CI (no TTY) get plain, quiet output.
"""

from __future__ import annotations

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


@contextmanager
def progress_bar(description: str, total: int | None, completed: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar (count, rate, ETA) while the block runs."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as prog:
        # the column renders markup: escape so "teacher x [judge]" keeps its brackets
        task = prog.add_task(escape(description), total=total, completed=completed)
        yield lambda n=1: prog.advance(task, n)


def summary_line(text: str) -> None:
    """Print a stage's one-line summary (always shown, TTY or not).

    Printed as plain text, never as rich markup: summaries hold bracketed words (``[judge]``,
    ``[teachers.x]``) and server messages that markup would eat or misread.
    """
    console.print(text, soft_wrap=True, markup=False)
