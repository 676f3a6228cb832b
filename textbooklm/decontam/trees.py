"""Normalized function syntax trees: what the AST match rate compares.

Normalization (why: the match rate should see through cosmetic rewrites a model or a copyist makes):

* identifiers (variables, arguments, attributes, function names) become ``Name`` / ``Attr`` /
  ``arg``; literals become ``Const``; operators are folded into their node's label
  (``BinOp:Add``), so ``a + b`` and ``x * y`` still differ in one relabel;
* docstrings, type annotations and ``Load``/``Store`` context nodes are dropped;
* inside every statement list, statements that do not depend on each other are put in a canonical
  order (a topological sort of the statements' read/write dependencies, ties broken by the
  normalized text of the statement). Reordering independent statements therefore gives the same
  tree, and the ordered tree edit distance measures only real changes. Dependencies are
  conservative: name reads/writes, method calls and subscript stores count as writes to their
  base name, bare calls (``print(x)``) keep their order among themselves, and
  ``return``/``raise``/``break``/``continue``/``global`` are barriers nothing moves across.

A :class:`FunctionTree` holds the postorder arrays :mod:`textbooklm.decontam.ted` needs plus the
label counts the candidate index bounds the distance with.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field

from textbooklm.codeblocks import parsable_prefix, python_blocks
from textbooklm.decontam.ted import Prepared, keyroots_of, prepare, tree_edit_distance

_OPS = (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)
_BARRIERS = (ast.Return, ast.Raise, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers")

# Label strings -> small ints, shared by every tree in the process (the TED compares ints).
_LABEL_IDS: dict[str, int] = {}


def label_id(label: str) -> int:
    return _LABEL_IDS.setdefault(label, len(_LABEL_IDS))


@dataclass
class FunctionTree:
    """One normalized function: postorder labels, leftmost leaves, key roots and label counts."""

    name: str
    labels: list[int]
    lml: list[int]
    keyroots: list[int]
    counts: Counter = field(repr=False)
    source: str = field(default="", repr=False)
    statements: int = 0  # statements in its body (nested ones too, docstrings not): how much there is to match
    _prepared: Prepared | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def prepared(self) -> Prepared:
        if self._prepared is None:
            self._prepared = prepare(self.labels, self.lml, self.keyroots)
        return self._prepared


def match_rate(a: FunctionTree, b: FunctionTree) -> float:
    """tau = 1 - TED(a, b) / max(|a|, |b|): 1.0 for identical normalized trees, 0.0 for unrelated.

    Clamped at 0: a distance can exceed the larger size (a chain against a flat tree cannot be
    relabeled node for node), and "less than unrelated" means nothing.
    """
    dist = tree_edit_distance(a.prepared, b.prepared, a.size, b.size)
    return max(0.0, 1.0 - dist / max(a.size, b.size, 1))


def match_rate_upper_bound(a: FunctionTree, b: FunctionTree) -> float:
    """An upper bound on :func:`match_rate` from label counts alone (exact pruning, never misses).

    A mapping pairs each node at most once; unmapped nodes cost 1 and mapped pairs with different
    labels cost 1, so TED >= max(|a|, |b|) - |labels(a) & labels(b)| (multiset intersection).
    """
    common = sum(min(n, b.counts.get(lab, 0)) for lab, n in a.counts.items())
    return common / max(a.size, b.size, 1)


# -- normalization --------------------------------------------------------------------------------
def _label(node: ast.AST) -> str:
    name = type(node).__name__
    if isinstance(node, ast.Name):
        return "Name"
    if isinstance(node, ast.Constant):
        return "Const"
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        return f"{name}:{type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"UnaryOp:{type(node.op).__name__}"
    if isinstance(node, ast.BoolOp):
        return f"BoolOp:{type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        return "Compare:" + ",".join(type(op).__name__ for op in node.ops)
    if isinstance(node, ast.Attribute):
        return "Attr"
    if isinstance(node, ast.AnnAssign):
        return "Assign"
    return name


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _children(node: ast.AST) -> list[ast.AST | list[ast.stmt]]:
    """Child nodes in field order; statement lists come back as lists (to be canonically ordered)."""
    out: list[ast.AST | list[ast.stmt]] = []
    for fname, value in ast.iter_fields(node):
        if fname in ("annotation", "returns", "type_comment", "type_params", "ctx", "op", "ops"):
            continue
        if isinstance(node, ast.AnnAssign) and fname == "simple":
            continue
        if isinstance(value, list):
            if fname in _BLOCK_FIELDS and value and isinstance(value[0], (ast.stmt, ast.excepthandler)):
                body = value
                if fname == "body" and isinstance(node, (*_FUNCS, ast.ClassDef, ast.Module)) and _is_docstring(body[0]):
                    body = body[1:]
                out.append(list(body))
            else:
                out.extend(v for v in value if isinstance(v, ast.AST) and not isinstance(v, _OPS))
        elif isinstance(value, ast.AST) and not isinstance(value, _OPS):
            out.append(value)
    return out


@dataclass
class _Node:
    label: int
    key: str
    children: list[_Node]


def _effects(stmt: ast.AST) -> tuple[set[str], set[str], bool, bool]:
    """(reads, writes, ordered side effect, barrier) of one statement, nested code included."""
    reads: set[str] = set()
    writes: set[str] = set()
    effect = barrier = False
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            (reads if isinstance(node.ctx, ast.Load) else writes).add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                writes.add(base.id)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                writes.add(node.func.value.id)  # lst.append(x) mutates lst
            elif not isinstance(node.func, ast.Attribute):
                effect = effect or isinstance(stmt, ast.Expr) or _contains_bare_call(stmt)
        elif isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            effect = True
        elif isinstance(node, _BARRIERS):
            barrier = True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            writes.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (*_FUNCS, ast.ClassDef)):
            writes.add(node.name)
    if isinstance(stmt, _FUNCS + (ast.ClassDef,)):
        barrier = False  # a return inside a nested def does not leave this block
    return reads, writes, effect, barrier


def _contains_bare_call(stmt: ast.AST) -> bool:
    return any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in ast.walk(stmt))


def _canonical_order(stmts: list[ast.AST], nodes: list[_Node]) -> list[_Node]:
    """Topological order of the statements' dependencies, smallest normalized key first."""
    n = len(stmts)
    if n < 2:
        return nodes
    info = [_effects(s) for s in stmts]
    preds: list[set[int]] = [set() for _ in range(n)]
    for j in range(n):
        rj, wj, ej, bj = info[j]
        for i in range(j):
            ri, wi, ei, bi = info[i]
            if bi or bj or (ei and ej) or (wi & (rj | wj)) or (ri & wj):
                preds[j].add(i)
    done: set[int] = set()
    order: list[_Node] = []
    while len(order) < n:
        ready = [k for k in range(n) if k not in done and preds[k] <= done]
        k = min(ready, key=lambda idx: (nodes[idx].key, idx))
        done.add(k)
        order.append(nodes[k])
    return order


def _build(node: ast.AST) -> _Node:
    children: list[_Node] = []
    for child in _children(node):
        if isinstance(child, list):
            built = [_build(s) for s in child]
            block = _Node(label_id("Block"), "", _canonical_order(child, built))
            block.key = "Block(" + ",".join(c.key for c in block.children) + ")"
            children.append(block)
        else:
            children.append(_build(child))
    label = _label(node)
    key = label if not children else label + "(" + ",".join(c.key for c in children) + ")"
    return _Node(label_id(label), key, children)


def _postorder(root: _Node) -> tuple[list[int], list[int]]:
    labels: list[int] = []
    lml: list[int] = []
    # Iterative postorder (function bodies can nest deeper than is comfortable for recursion).
    stack: list[tuple[_Node, int]] = [(root, 0)]
    leftmost: list[int] = []
    while stack:
        node, state = stack.pop()
        if state == 0:
            stack.append((node, 1))
            leftmost.append(len(labels))  # the first postorder index inside this subtree
            for child in reversed(node.children):
                stack.append((child, 0))
        else:
            labels.append(node.label)
            lml.append(leftmost.pop())
    return labels, lml


def function_tree(func: ast.FunctionDef | ast.AsyncFunctionDef, source: str = "") -> FunctionTree:
    """The normalized tree of one function definition."""
    root = _build(func)
    labels, lml = _postorder(root)
    return FunctionTree(name=func.name, labels=labels, lml=lml, keyroots=keyroots_of(lml),
                        counts=Counter(labels), source=source, statements=count_statements(func))


def count_statements(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Statements inside ``func`` (nested blocks included, docstrings not).

    Why: a match rate of 1.0 between two one-statement functions (``return self.x == other.x`` and
    ``return set(s0) == set(s1)``) says they share a shape, not a source; decontam does not let such a
    match decide alone (``ast_min_statements``).
    """
    return sum(1 for node in ast.walk(func) if isinstance(node, ast.stmt) and node is not func
               and not _is_docstring(node))


def _parsed_pieces(text: str) -> list[tuple[str, ast.Module]]:
    """The parts of a sample worth parsing, parsed: the text itself if it is Python, else its fenced blocks."""
    try:
        return [(text, ast.parse(text))]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    out = []
    for code in fenced_code(text):
        try:
            out.append((code, ast.parse(code)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return out


def fenced_code(text: str) -> list[str]:
    """The Python blocks of markdown, by the one fence parser (``~~~``, ``{python}``, indented, unclosed).

    A block cut off at max_tokens keeps its longest parsable prefix, so its functions are still compared.
    """
    out = []
    for block in python_blocks(text):
        out.append(block.code if block.parses or block.closed else (parsable_prefix(block.code) or block.code))
    return out


def code_pieces(text: str) -> list[str]:
    """The parts of a sample worth parsing: the text itself if it is Python, else its fenced blocks."""
    try:
        ast.parse(text)
        return [text]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    return fenced_code(text)


def _segment(lines: list[str], node: ast.AST) -> str:
    """``ast.get_source_segment`` on lines split once per file (it re-splits the whole file per call,
    which made big files quadratic). Column offsets are UTF-8 byte offsets, as in the ast module."""
    start, end = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    if end >= len(lines):
        return ""
    first = lines[start].encode()
    if start == end:
        return first[node.col_offset : node.end_col_offset].decode(errors="replace")  # type: ignore[attr-defined]
    last = lines[end].encode()[: node.end_col_offset]  # type: ignore[attr-defined]
    return "".join([first[node.col_offset :].decode(errors="replace"), *lines[start + 1 : end],
                    last.decode(errors="replace")])


def parse_functions(text: str, max_functions: int = 32) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    """Every function definition (methods and nested ones too) in ``text`` or its code blocks."""
    found: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]] = []
    for piece, tree in _parsed_pieces(text):
        lines = piece.splitlines(keepends=True)
        for node in ast.walk(tree):
            if isinstance(node, _FUNCS):
                found.append((node, _segment(lines, node)))
                if len(found) >= max_functions:
                    return found
    return found


def function_trees(text: str, min_nodes: int = 12, max_nodes: int = 2000,
                   max_functions: int = 32) -> list[FunctionTree]:
    """Normalized trees of the functions in ``text`` whose size is within [min_nodes, max_nodes].

    Tiny functions (``return a + b``) are left out: at that size every function looks alike.
    """
    trees = []
    for func, source in parse_functions(text, max_functions):
        try:
            t = function_tree(func, source)
        except RecursionError:
            continue
        if min_nodes <= t.size <= max_nodes:
            trees.append(t)
    return trees
