"""Consensus tests: expected values from independent solutions that agree when run in the sandbox.

The idea of AlphaCode's clustering and CodeT: a weak teacher's asserted values are often wrong while
its code is often right, and independent samples that are wrong tend to be wrong in different ways.
So each input the reply wrote (call_inputs.py) is run through the exercise's own solution and through
``solutions - 1`` more solutions sampled from the prompt alone; an input becomes a test
``assert candidate(<input>) == <value>`` only when every solution returns the same value and that
value's repr is a Python literal (it must round-trip to be written into a test). The teacher's own
asserted values are never read.

Every call runs in the sandbox, one program per (solution, input), so a solution that loops or crashes
on one input loses only that input. Comparisons happen here, on repr texts parsed with
ast.literal_eval (safe: literals only), so ``{'a', 'b'}`` and ``{'b', 'a'}`` agree across processes.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from textbooklm.sandbox import Program
from textbooklm.sandbox import Result as SandboxResult
from textbooklm.synth.exercise import ExerciseError, ParsedExercise, reply_code
from textbooklm.synth.stable_repr import STABLE_REPR_SOURCE

MARK = "@@textbooklm-consensus@@"
MAX_REPR = 2000  # longer results are not turned into tests (unreadable, and slow to compare)

# Why an input is not a test (the counts go to provenance and the stage summary).
RAISES = "raises"  # the exercise's own solution raised on it
NO_RESULT = "no-result"  # timeout, crash, exit, or the result line never printed
NOT_LITERAL = "not-literal"  # the value's repr does not round-trip (objects, nan, too long)
DISAGREE = "disagree"  # another solution returned something else (or nothing)


@dataclass(frozen=True)
class Outcome:
    """What one call produced: kind value (text = repr), raises (text = exception type) or failed."""

    kind: str
    text: str


def call_program(pid: str, code: str, entry_point: str, args: str) -> Program:
    """``code``, then one call ``entry_point(args)`` whose repr (or exception type) is printed on a
    marked line as JSON (one line whatever the repr holds)."""
    test = (
        "def check(candidate):\n"
        "    import json as _json\n"
        + "".join(f"    {line}\n" for line in STABLE_REPR_SOURCE.splitlines()) +
        "    try:\n"
        f"        _value = candidate({args})\n"
        "    except Exception as _exc:\n"
        f"        print({MARK!r} + _json.dumps(['raises', type(_exc).__name__]), flush=True)\n"
        "    else:\n"
        f"        print({MARK!r} + _json.dumps(['value', stable_repr(_value)[:{MAX_REPR + 1}]]), flush=True)\n"
    )
    return Program(id=pid, code=code, test=test, entry_point=entry_point)


def outcome_of(result: SandboxResult) -> Outcome:
    marked = [ln for ln in result.stdout.splitlines() if ln.startswith(MARK)]
    if result.passed and marked:
        try:
            kind, text = json.loads(marked[-1][len(MARK):])
            return Outcome(str(kind), str(text))
        except (ValueError, TypeError):
            pass
    return Outcome("failed", result.status if not result.passed else "no result line")


def literal(text: str) -> tuple[bool, Any]:
    """(True, value) when ``text`` is a Python literal no longer than MAX_REPR, else (False, None)."""
    if len(text) > MAX_REPR:
        return False, None
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def same_value(a: Outcome, b: Outcome) -> bool:
    """Two value outcomes agree: equal literals of the same type (True is not 1), or equal reprs."""
    if a.kind != "value" or b.kind != "value":
        return False
    if a.text == b.text:
        return True
    ok_a, va = literal(a.text)
    ok_b, vb = literal(b.text)
    return ok_a and ok_b and type(va) is type(vb) and va == vb


def own_drop_reason(o: Outcome) -> str | None:
    """Why an input is unusable from the exercise's own solution's outcome alone (None: usable)."""
    if o.kind == "raises":
        return RAISES
    if o.kind != "value":
        return NO_RESULT
    return None if literal(o.text)[0] else NOT_LITERAL


def solution_code(reply: str, name: str) -> str:
    """The code of another solution: its imports and definitions, with the first complete
    definition of ``name`` (docstring optional, a real body required). Top-level statements (prints,
    the model's own asserts) are left out: only the function is being sampled. Raises ExerciseError."""
    code = reply_code(reply)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ExerciseError("syntax-error", str(exc)) from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]

    def has_body(f: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        return any(not (isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)))
                   for s in f.body)

    complete = [f for f in defs if has_body(f)]
    if not complete:
        raise ExerciseError("no-solution", f"the reply does not define {name} with a body")
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.ClassDef))
            or (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name != name) or n is complete[0]]
    return "\n\n".join(ast.unparse(n) for n in keep) + "\n"


def extra_code(ex: ParsedExercise, code: str) -> str:
    """Another solution as a program: the exercise's prompt and solution first (its imports and
    helpers), then the other solution's code, which redefines the entry point."""
    return ex.prompt + ex.completion + "\n\n" + code


def consensus_tests(inputs: list[str], agreed: list[Outcome]) -> str:
    """HumanEval-style ``check(candidate)`` from agreed (input, value) pairs."""
    return "def check(candidate):\n" + "".join(
        f"    assert candidate({a}) == {o.text}\n" for a, o in zip(inputs, agreed, strict=True))


@dataclass
class Decision:
    """The agreement verdict on one exercise's inputs."""

    agreed: list[int]  # indexes into the inputs that became tests
    dropped: Counter[str]  # reason -> inputs dropped

    def to_json(self) -> dict[str, Any]:
        return {"agreed": len(self.agreed), "dropped": dict(self.dropped)}


def decide(own: list[Outcome], others: list[list[Outcome | None]]) -> Decision:
    """Which inputs every solution agrees on. ``own[i]``: the exercise's solution on input i;
    ``others[k][i]``: solution k on input i (None: not run, e.g. the solution was unusable, which
    counts as disagreement: all solutions must agree)."""
    agreed: list[int] = []
    dropped: Counter[str] = Counter()
    for i, o in enumerate(own):
        reason = own_drop_reason(o)
        if reason is None and not all(s[i] is not None and same_value(o, s[i]) for s in others):  # type: ignore[arg-type]
            reason = DISAGREE
        if reason is None:
            agreed.append(i)
        else:
            dropped[reason] += 1
    return Decision(agreed, dropped)
