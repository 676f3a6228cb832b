"""The inputs a teacher wrote for its function: the arguments of its calls in asserts, prints and bare calls.

Why: a small teacher usually writes a right function and sensible example calls, but wrong expected
values (``assert reverse_string("hello") == "lhg"``), or prints instead of asserting. For consensus
tests only the *inputs* are taken from the reply; the expected values come from running several
independent solutions on them in the sandbox (see consensus.py). Nothing here executes anything.

An input is the source text of a call's arguments (``'"hello"'``, ``"[1, 2], key=len"``). It must be
self-contained so that ``candidate(<input>)`` can stand alone in a test: every name it reads is a
builtin, a name the exercise's prompt defines (imports, helpers), or a variable the reply assigned
exactly once (``words = ["a", "b"]`` then ``print(f(words))``), which is substituted. Calls whose
arguments call the function itself (``f(f(3))``: the inner ``f(3)`` is taken) or read anything else
(a loop variable, a parameter) are skipped.
"""

from __future__ import annotations

import ast
import builtins
import copy
from collections.abc import Iterable

BUILTIN_NAMES = frozenset(dir(builtins))
MAX_INPUTS = 8  # distinct inputs kept per exercise: each costs one sandbox run per solution


def _calls_to(node: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == name]


def _bound_inside(node: ast.AST) -> set[str]:
    """Names an expression binds itself (comprehension targets, lambda and walrus targets)."""
    bound: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
    return bound


def _free_names(node: ast.AST) -> set[str]:
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads - _bound_inside(node)


class _Substitute(ast.NodeTransformer):
    def __init__(self, bindings: dict[str, ast.expr], keep: set[str]) -> None:
        self.bindings, self.keep = bindings, keep

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802 - ast's naming
        if isinstance(node.ctx, ast.Load) and node.id in self.bindings and node.id not in self.keep:
            return copy.deepcopy(self.bindings[node.id])
        return node


def _substitute(node: ast.expr, bindings: dict[str, ast.expr]) -> ast.expr:
    return _Substitute(bindings, _bound_inside(node)).visit(copy.deepcopy(node))


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _walk_statements(stmts: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements in source order, descending into blocks (if/for/with/try) but not into definitions."""
    for s in stmts:
        yield s
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        for attr in ("body", "orelse", "finalbody"):
            yield from _walk_statements(getattr(s, attr, []) or [])
        for h in getattr(s, "handlers", []) or []:
            yield from _walk_statements(h.body)


def variable_bindings(stmts: Iterable[ast.stmt], allowed: set[str]) -> dict[str, ast.expr]:
    """``x = <self-contained expression>`` assignments, each name bound once (later ones resolved
    through earlier ones). A name assigned twice, by a loop, or to something that reads an unknown
    name is left unbound: its value at the call is not knowable without running the reply's code."""
    bindings: dict[str, ast.expr] = {}
    ambiguous: set[str] = set()
    for s in _walk_statements(stmts):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(s, ast.Assign):
            targets, value = s.targets, s.value
        elif isinstance(s, ast.AnnAssign) and s.value is not None:
            targets, value = [s.target], s.value
        elif isinstance(s, (ast.AugAssign, ast.For, ast.AsyncFor)):
            ambiguous |= _names_in(s.target)
            continue
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            ambiguous |= {n for i in s.items if i.optional_vars for n in _names_in(i.optional_vars)}
            continue
        if value is None:
            continue
        if len(targets) != 1 or not isinstance(targets[0], ast.Name):
            ambiguous |= {n for t in targets for n in _names_in(t)}
            continue
        target = targets[0].id
        if target in bindings or target in ambiguous:
            ambiguous.add(target)
            continue
        resolved = _substitute(value, {k: v for k, v in bindings.items() if k not in ambiguous})
        if _free_names(resolved) <= allowed:
            bindings[target] = resolved
        else:
            ambiguous.add(target)
    return {k: v for k, v in bindings.items() if k not in ambiguous}


def call_inputs(stmts: list[ast.stmt], name: str, allowed: set[str],
                bindings: dict[str, ast.expr] | None = None, limit: int = MAX_INPUTS) -> list[str]:
    """Distinct self-contained argument texts of the calls to ``name`` in ``stmts`` (source order).

    ``allowed``: names an input may read besides builtins (the prompt's imports and helpers).
    """
    ok = allowed | BUILTIN_NAMES
    bindings = bindings or {}
    seen: list[str] = []
    for stmt in stmts:
        for call in _calls_to(stmt, name):
            parts = [*call.args, *(k.value for k in call.keywords)]
            if any(_calls_to(p, name) for p in parts):
                continue  # f(f(3)): the inner call is taken on its own
            args = [_substitute(a, bindings) for a in call.args]
            kws = [ast.keyword(arg=k.arg, value=_substitute(k.value, bindings)) for k in call.keywords]
            if any(not _free_names(p) <= ok for p in [*args, *(k.value for k in kws)]):
                continue
            text = ast.unparse(ast.Call(func=ast.Name(id="_", ctx=ast.Load()), args=args, keywords=kws))[2:-1]
            if text not in seen:
                seen.append(text)
            if len(seen) >= limit:
                return seen
    return seen


def defined_names(stmts: Iterable[ast.stmt]) -> set[str]:
    """Names that imports and definitions among ``stmts`` bind (what a prompt's head provides)."""
    names: set[str] = set()
    for s in stmts:
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in s.names}
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(s.name)
    return names
