"""The generic problem format shared by every code task (and written by the synth exercises stage).

One JSON object per line::

    {"task_id": "exercise/42",               # unique within the file
     "prompt": "def add(a, b):\\n    \\"\\"\\"Add.\\"\\"\\"\\n",   # what the model continues
     "entry_point": "add",                   # the function check() receives
     "test": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n",
     "canonical_solution": "    return a + b\\n"}   # optional: a known-good completion

A completion is scored by running ``prompt + completion`` then ``test`` then
``check(<entry_point>)`` in the sandbox (HumanEval's convention). Extra keys are kept in
``Problem.extra`` (e.g. provenance) and written back unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("task_id", "prompt", "entry_point", "test")


@dataclass
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Any, where: str) -> Problem:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing} (a problem needs {list(REQUIRED)})")
        for key in (*REQUIRED, "canonical_solution"):
            value = record.get(key)
            if key in record and value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        known = {*REQUIRED, "canonical_solution"}
        return cls(task_id=record["task_id"], prompt=record["prompt"], entry_point=record["entry_point"],
                   test=record["test"], canonical_solution=record.get("canonical_solution"),
                   extra={k: v for k, v in record.items() if k not in known})

    def to_record(self) -> dict[str, Any]:
        record = {"task_id": self.task_id, "prompt": self.prompt, "entry_point": self.entry_point,
                  "test": self.test}
        if self.canonical_solution is not None:
            record["canonical_solution"] = self.canonical_solution
        return {**record, **self.extra}


def read_problems_jsonl(path: Path) -> list[Problem]:
    """Read a problems JSONL (or .jsonl.gz): all or nothing, one ValueError naming every bad line."""
    from textbooklm.jsonl import parse_jsonl

    return parse_jsonl(path, lambda where, record: Problem.from_record(record, where), id_key="task_id")


def write_problems_jsonl(path: Path, problems: list[Problem]) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps(p.to_record()) + "\n")
