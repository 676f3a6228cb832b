"""Mutants of an exercise's reference function: small wrong versions its tests should reject.

Why: an exercise is only worth training and evaluating on if its tests tell a right solution from
a nearly-right one. Mutation testing measures that (mutmut, and evalplus's use of mutants to score
test suites): change the reference in one small place, run the tests, and count the mutants they
"kill" (fail). Tests that pass most mutants check little of what the function does.

One mutation per mutant, of one of these kinds (all AST edits of the entry function only):

* ``compare``: a comparison flipped to its negation or its boundary twin (``<`` -> ``>=``, ``<`` -> ``<=``,
  ``==`` -> ``!=``, ``in`` -> ``not in``, ``is`` -> ``is not``);
* ``constant``: an int constant off by one (``n`` -> ``n + 1``, ``n`` -> ``n - 1``);
* ``branch``: an ``if``'s branches swapped (its test negated when it has no ``else``), or an ``x if c else y``
  swapped;
* ``statement``: one statement dropped (``pass`` where a block would be empty);
* ``operator``: ``+`` <-> ``-``, ``*`` -> ``//``, ``and`` <-> ``or``.

Which mutants are tried is decided here, without running anything: every site is listed, then up to
``limit`` are drawn round-robin over the kinds (seeded by the function's name, so the same function
always gets the same mutants). Some mutants are equivalent to the reference (dropping a redundant
statement); no test can kill those, which is why a mutation score is compared to a threshold, not
required to be 1.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

KINDS = ("compare", "constant", "branch", "statement", "operator")

_COMPARE_FLIPS: dict[type, list[type]] = {
    ast.Lt: [ast.GtE, ast.LtE], ast.LtE: [ast.Gt, ast.Lt], ast.Gt: [ast.LtE, ast.GtE], ast.GtE: [ast.Lt, ast.Gt],
    ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.In: [ast.NotIn], ast.NotIn: [ast.In], ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
}
_BINOP_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv}
_BOOLOP_SWAPS: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass(frozen=True)
class Mutant:
    """One mutated version of the entry function: its source and what was changed (for provenance)."""

    kind: str
    description: str  # e.g. "line 4: < -> >="
    source: str  # the whole mutated function (decorators included), to run after the exercise's code


# A site is (kind, description, edit): the edit mutates the function copy it is given, in place.
Edit = Callable[[ast.FunctionDef], None]


def _docstring(func: ast.FunctionDef) -> ast.stmt | None:
    first = func.body[0] if func.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def _nodes(func: ast.FunctionDef) -> list[ast.AST]:
    """The function and its body's nodes in a fixed walk order (the same in any deep copy), docstring left out."""
    doc = _docstring(func)  # signature, defaults and decorators are not mutated: only the body
    return [func, *(n for s in func.body if s is not doc for n in ast.walk(s))]


def _at(index: int, edit: Callable[[ast.AST], None]) -> Edit:
    """An edit of the ``index``-th node of a function copy's walk (so sites survive deep copies)."""
    return lambda f: edit(_nodes(f)[index])


def _sites(func: ast.FunctionDef) -> Iterator[tuple[str, str, Edit]]:
    nodes = _nodes(func)
    for i, n in enumerate(nodes):
        line = getattr(n, "lineno", func.lineno) - func.lineno + 1
        if isinstance(n, ast.Compare):
            for j, op in enumerate(n.ops):
                for new in _COMPARE_FLIPS.get(type(op), []):
                    def flip(node: ast.AST, j: int = j, new: type = new) -> None:
                        node.ops[j] = new()  # type: ignore[attr-defined]
                    yield ("compare", f"line {line}: {_op_text(op)} -> {_op_text(new())}", _at(i, flip))
        elif isinstance(n, ast.Constant) and type(n.value) is int:
            for delta in (1, -1):
                def shift(node: ast.AST, delta: int = delta) -> None:
                    node.value += delta  # type: ignore[attr-defined]
                yield ("constant", f"line {line}: {n.value} -> {n.value + delta}", _at(i, shift))
        elif isinstance(n, ast.If):
            def swap_if(node: ast.AST) -> None:
                assert isinstance(node, ast.If)
                if node.orelse:
                    node.body, node.orelse = node.orelse, node.body
                else:
                    node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
            what = "if/else branches swapped" if n.orelse else "if condition negated"
            yield ("branch", f"line {line}: {what}", _at(i, swap_if))
        elif isinstance(n, ast.IfExp):
            def swap_ifexp(node: ast.AST) -> None:
                node.body, node.orelse = node.orelse, node.body  # type: ignore[attr-defined]
            yield ("branch", f"line {line}: conditional expression's values swapped", _at(i, swap_ifexp))
        elif isinstance(n, ast.BinOp) and type(n.op) in _BINOP_SWAPS:
            def binop(node: ast.AST) -> None:
                node.op = _BINOP_SWAPS[type(node.op)]()  # type: ignore[attr-defined]
            yield ("operator", f"line {line}: {_op_text(n.op)} -> {_op_text(_BINOP_SWAPS[type(n.op)]())}",
                   _at(i, binop))
        elif isinstance(n, ast.BoolOp):
            def boolop(node: ast.AST) -> None:
                node.op = _BOOLOP_SWAPS[type(node.op)]()  # type: ignore[attr-defined]
            yield ("operator", f"line {line}: {_op_text(n.op)} -> {_op_text(_BOOLOP_SWAPS[type(n.op)]())}",
                   _at(i, boolop))
        for field in ("body", "orelse", "finalbody"):
            block = getattr(n, field, None)
            if not isinstance(block, list) or not block or not isinstance(block[0], ast.stmt):
                continue
            if isinstance(n, ast.ClassDef) or (n is not func and isinstance(n, (ast.FunctionDef,
                                                                                    ast.AsyncFunctionDef))):
                continue  # nested definitions: their statements are left alone
            for k, stmt in enumerate(block):
                if n is func and stmt is _docstring(func):
                    continue
                def drop(node: ast.AST, field: str = field, k: int = k) -> None:
                    b = getattr(node, field)
                    del b[k]
                    if all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in b):
                        b.append(ast.Pass())  # empty, or only the docstring left
                sline = stmt.lineno - func.lineno + 1
                yield ("statement", f"line {sline}: {type(stmt).__name__.lower()} dropped", _at(i, drop))


_OP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
            ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
            ast.FloorDiv: "//", ast.And: "and", ast.Or: "or"}


def _op_text(op: ast.AST) -> str:
    return _OP_TEXT.get(type(op), type(op).__name__)


def make_mutants(func: ast.FunctionDef, limit: int = 8, seed: int = 0) -> list[Mutant]:
    """Up to ``limit`` distinct mutants of ``func``, round-robin over the kinds (see the module docstring).

    A mutant whose source equals the reference's, repeats another's, or does not compile is skipped.
    """
    if limit <= 0:
        return []
    reference = ast.unparse(func)
    by_kind: dict[str, list[tuple[str, Edit]]] = {k: [] for k in KINDS}
    for kind, description, edit in _sites(func):
        by_kind[kind].append((description, edit))
    rng = random.Random(f"{seed}:{func.name}")
    for sites in by_kind.values():
        rng.shuffle(sites)
    out: list[Mutant] = []
    seen = {reference}
    while len(out) < limit and any(by_kind.values()):
        for kind in KINDS:
            if not by_kind[kind] or len(out) >= limit:
                continue
            description, edit = by_kind[kind].pop()
            mutated = copy.deepcopy(func)
            try:
                edit(mutated)
                source = ast.unparse(ast.fix_missing_locations(mutated))
                compile(source, "<mutant>", "exec")
            except (SyntaxError, ValueError, TypeError, IndexError, AssertionError, RecursionError):
                continue
            if source in seen:
                continue
            seen.add(source)
            out.append(Mutant(kind, description, source + "\n"))
    return out


def entry_function(code: str, name: str) -> ast.FunctionDef | None:
    """The last top-level ``def name`` of ``code`` (the definition that runs), or None."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return defs[-1] if defs else None
