"""Trivial candidates: functions that do no work, which an exercise's tests must all reject.

Why: tests whose expected values are mostly the same constant, or the input handed back, are passed
by code that computes nothing (issue 23: in the demo, ``return default`` passed all 21 tests of a
mined ``getattr_static``). Training on such an exercise teaches nothing, and scoring a model on it
rewards a guess. So, like the "trivial solution" checks of test-suite studies, each exercise's tests
are run against:

* ``return <param>`` for each parameter (identity on one argument);
* ``return None``;
* ``return <constant>`` for the most common expected value of its tests (a constant function passes
  ``== literal`` asserts only if every assert expects that value, so no less common constant passes
  where the most common one fails; MAX_CONSTANTS widens this for tests of other shapes);
* ``return <empty>``: the empty value of its return type (from the annotation, else from the type of
  most expected values): ``[]``, ``''``, ``{}``, ``()``, ``set()``, ``0``, ``0.0``, ``False``, ``b''``.

Each candidate keeps the reference's signature (defaults and all) and is written to run after the
exercise's own code, so it sees the same imports and helpers. Nothing is executed here.
"""

from __future__ import annotations

import ast
import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

from textbooklm.synth.consensus import literal

MAX_CONSTANTS = 1
_EMPTY_BY_TYPE = {"list": "[]", "List": "[]", "Sequence": "[]", "str": "''", "dict": "{}", "Dict": "{}",
                  "Mapping": "{}", "tuple": "()", "Tuple": "()", "set": "set()", "Set": "set()", "frozenset": "set()",
                  "int": "0", "float": "0.0", "bool": "False", "bytes": "b''"}
_EMPTY_BY_VALUE = {list: "[]", str: "''", dict: "{}", tuple: "()", set: "set()", int: "0", float: "0.0",
                   bool: "False", bytes: "b''"}


@dataclass(frozen=True)
class TrivialCandidate:
    """A do-nothing function: what it returns (``"return x"``) and its source."""

    name: str
    source: str


def expected_values(test: str) -> list[str]:
    """The literal sides of ``candidate(...) == <literal>`` comparisons in a test's asserts (source text,
    one per assert, in order)."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = []
    for n in ast.walk(tree):
        if not (isinstance(n, ast.Assert) and isinstance(n.test, ast.Compare) and len(n.test.ops) == 1
                and isinstance(n.test.ops[0], ast.Eq)):
            continue
        left, right = n.test.left, n.test.comparators[0]
        for call, other in ((left, right), (right, left)):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "candidate":
                text = ast.unparse(other)
                if literal(text)[0]:
                    out.append(text)
                break
    return out


def _empty_of(func: ast.FunctionDef, values: list[str]) -> str | None:
    ann = func.returns
    if isinstance(ann, ast.Subscript):
        ann = ann.value
    if isinstance(ann, ast.Attribute):
        ann = ast.Name(id=ann.attr)
    if isinstance(ann, ast.Name) and ann.id in _EMPTY_BY_TYPE:
        return _EMPTY_BY_TYPE[ann.id]
    types: Counter[type] = Counter()
    for v in values:
        ok, value = literal(v)
        if ok:
            types[type(value)] += 1
    for t, _n in types.most_common(1):
        return _EMPTY_BY_VALUE.get(t)
    return None


def _with_body(func: ast.FunctionDef, expr: str) -> str:
    """``func``'s signature (decorators dropped: a cache would not change a constant) returning ``expr``."""
    f = copy.deepcopy(func)
    f.decorator_list = []
    f.body = [ast.Return(value=ast.parse(expr, mode="eval").body)]
    return ast.unparse(ast.fix_missing_locations(f)) + "\n"


def trivial_candidates(func: ast.FunctionDef, test: str) -> list[TrivialCandidate]:
    """The trivial candidates for an exercise whose entry function is ``func`` (see the module docstring),
    without repeats (``return None`` and an Optional's empty value are one candidate)."""
    a = func.args
    params = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    if a.vararg:
        params.append(a.vararg.arg)
    values = expected_values(test)
    counts: Counter[Any] = Counter()
    text_of: dict[Any, str] = {}
    for v in values:
        key = _value_key(v)
        counts[key] += 1
        text_of.setdefault(key, v)
    exprs = [*params, "None", *(text_of[k] for k, _n in counts.most_common(MAX_CONSTANTS))]
    empty = _empty_of(func, values)
    if empty is not None:
        exprs.append(empty)
    out: list[TrivialCandidate] = []
    seen: set[str] = set()
    for e in exprs:
        if e in seen:
            continue
        seen.add(e)
        out.append(TrivialCandidate(f"return {e}"[:80], _with_body(func, e)))
    return out


def _value_key(text: str) -> Any:
    """Asserts expecting equal values (``1`` and ``1.0``) count as one constant: the same ``return`` passes both."""
    ok, value = literal(text)
    try:
        hash(value)
        return ("v", value) if ok else ("t", text)
    except TypeError:
        return ("t", text)
