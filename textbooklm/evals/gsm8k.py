"""GSM8K through code, as phi-1.5 evaluated it: the model writes a program whose result is the answer.

Each question becomes a problem in the generic format (``textbooklm.problems``): the prompt is
a ``solution()`` signature with the question as its docstring, and the test compares what
``solution()`` returns with the reference number. Generation and sandboxed execution then reuse the
code-evaluation machinery unchanged, so model-written programs never run in this process.

Reads the standard GSM8K JSONL: ``{"question": ..., "answer": "... #### 72"}``.
"""

from __future__ import annotations

import re
from pathlib import Path

from textbooklm.evals.choice_tasks import TaskFormatError, read_records
from textbooklm.problems import Problem

_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def reference_answer(answer: str) -> float:
    """The number after ``####`` in a GSM8K answer (commas removed)."""
    match = _FINAL.search(answer)
    if not match:
        raise ValueError("no '#### <number>' in the answer")
    return float(match.group(1).replace(",", ""))


def gsm8k_problem(question: str, answer: float, task_id: str) -> Problem:
    doc = question.strip().replace('"""', "'''").replace("\\", "\\\\")
    body = "\n    ".join(doc.splitlines())
    prompt = f'def solution():\n    """{body}\n    Return the final numeric answer.\n    """\n'
    test = f"def check(candidate):\n    assert abs(float(candidate()) - {answer!r}) < 1e-4\n"
    return Problem(task_id=task_id, prompt=prompt, entry_point="solution", test=test,
                   extra={"answer": answer})


def load_gsm8k(path: str | Path) -> list[Problem]:
    problems = []
    for i, rec in enumerate(read_records(path)):
        try:
            problems.append(gsm8k_problem(rec["question"], reference_answer(rec["answer"]), f"gsm8k/{i}"))
        except (KeyError, ValueError, TypeError) as exc:
            raise TaskFormatError(f"{path}: record {i + 1} is not GSM8K format ({exc})") from None
    return problems
