"""A repr that does not depend on the hash seed, for values written into tests.

Why: a mined test is ``assert candidate(<args>) == <value>`` with both sides written as Python source.
``repr({'b', 'a'})`` lists a set's elements in hash order, and a str's hash changes with
``PYTHONHASHSEED`` (random per interpreter by default), so the same function gives a different test
text in every run (issue 24: 1 of 162 demo exercises). Sets are printed with their elements sorted by
their own stable repr, dicts with their items sorted the same way (a dict built by iterating over a
set inherits its order; ``==`` ignores dict order, so the test means the same). Containers are
walked; every other value is its plain ``repr``.

The same function runs on both sides: here (for generated inputs) and, as source text, inside the
sandbox probe that prints a function's results (:data:`STABLE_REPR_SOURCE`), so the text does not
depend on the sandbox fixing the seed either.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any


def stable_repr(value: Any, _depth: int = 0) -> str:
    """``repr(value)`` with set elements and dict items in sorted order (exact built-in types only)."""
    if _depth > 40:
        return repr(value)
    t = type(value)
    if t is set or t is frozenset:
        inner = sorted(stable_repr(v, _depth + 1) for v in value)
        if not inner:
            return "set()" if t is set else "frozenset()"
        body = "{" + ", ".join(inner) + "}"
        return body if t is set else "frozenset(" + body + ")"
    if t is dict:
        items = sorted((stable_repr(k, _depth + 1), stable_repr(v, _depth + 1)) for k, v in value.items())
        return "{" + ", ".join(k + ": " + v for k, v in items) + "}"
    if t is list:
        return "[" + ", ".join(stable_repr(v, _depth + 1) for v in value) + "]"
    if t is tuple:
        parts = [stable_repr(v, _depth + 1) for v in value]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return repr(value)


def _plain_source() -> str:
    """The function's source without annotations (the sandbox has no ``Any``) or docstring."""
    tree = ast.parse(inspect.getsource(stable_repr))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    func.returns = None
    for a in func.args.args:
        a.annotation = None
    func.body = func.body[1:]
    return ast.unparse(tree) + "\n"


STABLE_REPR_SOURCE = _plain_source()
