"""What a stage's ``report`` hook returns: its section body plus what goes on the report's first screen.

The first screen tells the run's story in hops (files in -> kept -> tokens -> model -> metrics), the few
numbers that moved, and the warnings the run detects itself. Each of those comes from the area that
knows what it means (the judge knows when its scores are degenerate, the pack when it repeats a source
too often), so a hook hands them up with its body and the report links each one to the section it
came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """One stage's part of the report.

    * ``body``: the section's HTML (built with :mod:`textbooklm.reporting.html`, values escaped).
    * ``story``: one-line hops for the first screen, e.g. ``"34 files read, 30 kept"``.
    * ``warnings``: conditions a reader must not miss (a degenerate judge, heavy repetition, ...).
    * ``moved``: headline numbers with their uncertainty (``"humaneval pass@1: 0 -> 3.1 [1.2, 5.0]"``).
    * ``title``: overrides the stage name as the section heading.
    """

    body: str
    story: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    title: str = ""


def as_section(value: Section | str | None) -> Section | None:
    """A hook may return a plain HTML string (the simplest plugin) or a :class:`Section`."""
    if value is None or isinstance(value, Section):
        return value
    return Section(body=str(value))
