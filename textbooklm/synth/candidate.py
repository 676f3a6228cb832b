"""One sample a synthesis round asks the teacher for and then checks, typed.

Why a dataclass: a round's check is several steps (parse, run, agree, separate, judge), each adding
what it found; a dict row with side tables keyed by ``id(row)`` made every step read and write
untyped keys. A :class:`Candidate` carries the request and its reply, the parts parsed from it, the
verdict (``reason`` None while it is still in the running) and the provenance notes in the order the
steps wrote them; :meth:`Candidate.to_row` is the one place it becomes a Parquet row (kept, or
rejected with reason and detail), its provenance written through :mod:`textbooklm.record`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textbooklm.record import with_provenance

if TYPE_CHECKING:
    from textbooklm.lazy_services import LazyTeacher
    from textbooklm.synth.corpus_exercises import Mined
    from textbooklm.synth.exercise import ParsedExercise
    from textbooklm.synth.names import FunctionName
    from textbooklm.synth.seeds import Seed
    from textbooklm.teacher import Request, Result

DETAIL_CHARS = 500  # a rejected row's detail is cut here (a traceback can be long)


@dataclass
class Candidate:
    """What one prompt of a round became: asked, answered, parsed, checked, kept or rejected."""

    round: int
    index: int  # its place in the stage's sequence: the request's seed derives from it
    seed: Seed  # the sampler's draw (textbooks: topic, audience, style, words; exercises: audience, words)
    prompt: str
    request: Request
    name: FunctionName | None = None  # exercises: the function asked for
    reply: Result | None = None  # set by the ask step
    parsed: ParsedExercise | None = None  # exercises: the reply's exercise
    blocks: list[dict[str, Any]] = field(default_factory=list)  # textbooks: code blocks and their verdicts
    reason: str | None = None  # why it was rejected; None while it is still in the running
    detail: str = ""
    notes: dict[str, Any] = field(default_factory=dict)  # its ``provenance.synth``, in the order written
    fields: dict[str, Any] = field(default_factory=dict)  # the row's own columns (id, text, ...)
    mined: Mined | None = None  # corpus exercises: the function mined, its inputs and the tests its runs gave

    @classmethod
    def from_corpus(cls, round: int, index: int, mined: Mined | None) -> Candidate:
        """A candidate mined from the corpus (corpus_exercises.py): nothing is asked, so it has no seed, no
        request and no prompt; ``mined`` is None for a function that mining.py already rejected."""
        return cls(round, index, None, "", None, mined=mined)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        """Not rejected (yet)."""
        return self.reason is None

    @property
    def fn(self) -> FunctionName:
        """The function name (exercises only)."""
        if self.name is None:
            raise ValueError(f"candidate {self.index} has no function name (not an exercise)")
        return self.name

    @property
    def mine(self) -> Mined:
        """The mined function's parts (corpus exercises only)."""
        if self.mined is None:
            raise ValueError(f"candidate {self.index} was not mined from the corpus")
        return self.mined

    @property
    def ex(self) -> ParsedExercise:
        """The parsed exercise (only after a successful parse)."""
        if self.parsed is None:
            raise ValueError(f"candidate {self.index} has no parsed exercise")
        return self.parsed

    def reject(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail or ""

    def to_row(self) -> dict[str, Any]:
        """The Parquet row: its fields, ``provenance`` ``{"synth": notes}``, and reason/detail if rejected."""
        row = with_provenance(self.fields, "synth", **self.notes)
        if self.reason is None:
            return row
        return {**row, "reason": self.reason, "detail": (self.detail or "")[:DETAIL_CHARS]}


def teacher_notes(c: Candidate, teacher: LazyTeacher, *extra: str) -> dict[str, Any]:
    """The provenance entry of who answered ``c``: teacher name, backend, model, request key, token counts."""
    res = c.reply
    assert res is not None, f"candidate {c.index} was not asked"
    notes: dict[str, Any] = {**teacher.describe(), "request_key": teacher.key(c.request)}
    for name in (*extra, "tokens_out", "finish_reason"):
        notes[name] = getattr(res, name)
    return notes


def split_rows(cands: list[Candidate]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The round's kept rows and rejected rows, each in the candidates' order."""
    kept, rejected = [], []
    for c in cands:
        (kept if c.alive else rejected).append(c.to_row())
    return kept, rejected


def ask(teacher: Any, cands: list[Candidate]) -> list[Candidate]:
    """Send the candidates' requests through the teacher; each gets its reply (in order). The one ask path
    of both synthesis stages: the driver runs it on its background thread while the previous round is checked."""
    for c, res in zip(cands, teacher.complete([c.request for c in cands]), strict=True):
        c.reply = res
    return cands
