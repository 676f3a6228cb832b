"""Type-aware test inputs for a function, from its signature alone (evalplus-style, nothing executed here).

Why: tests that come from executing a function need inputs, and neither a mined stdlib function nor a
weak teacher's reply reliably has example calls. An input is the source text of a call's arguments
(``"[3, 1, 2], key=None"``), written as Python literals so it stands alone in an ``assert``.

Where each parameter's values come from, most trusted first (each input records its ``origin``):

* ``doctest``: the arguments of the docstring's ``>>> f(...)`` examples, whole;
* ``doctest-value`` / ``default``: a literal that a doctest passed at that position, or the default;
* ``annotation``: seeds for the annotated type (``int``, ``list[str]``, ``dict[str, int]``,
  ``Optional[X]``, ``X | None``, ``Sequence``/``Iterable``/``Mapping``, ``tuple[...]``, ``set``,
  ``bytes``, ``bool``, ``float``), recursively for containers;
* ``usage`` / ``name``: without an annotation, the type the body implies (``s.lower()`` -> str,
  ``x.append`` -> list, ``d.items()`` -> dict, ``range(n)`` -> int; ``a[i]`` or ``len(a)`` alone -> list)
  or the parameter's name
  (``text``, ``n``, ``items``, ``is_*``), else the default's type; ``any`` as a last resort;
* ``mutation``: evalplus's type-aware mutations of the values above (int +-1, negation, doubling;
  str reversed, doubled, upper-cased, first character dropped; list reversed, extended, shortened,
  elements mutated; dict with a key dropped or added).

Combinations are drawn with a seeded generator, so the same function always gets the same inputs.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from textbooklm.synth.call_inputs import BUILTIN_NAMES, call_inputs, variable_bindings
from textbooklm.synth.stable_repr import stable_repr

MAX_VALUE_REPR = 200  # longer generated values are not used (a test should stay readable)


@dataclass(frozen=True)
class Kind:
    """A parameter's type as far as input generation cares: ``name`` plus element kinds."""

    name: str  # int float bool str bytes none list tuple set dict optional any
    args: tuple[Kind, ...] = ()

    def __str__(self) -> str:
        return self.name + (f"[{', '.join(map(str, self.args))}]" if self.args else "")


INT, FLOAT, BOOL, STR, BYTES, ANY = Kind("int"), Kind("float"), Kind("bool"), Kind("str"), Kind("bytes"), Kind("any")

_SIMPLE = {"int": INT, "float": FLOAT, "bool": BOOL, "str": STR, "bytes": BYTES, "bytearray": BYTES,
           "complex": FLOAT, "AnyStr": STR, "Text": STR, "Any": ANY, "object": ANY, "Number": INT,
           "Real": FLOAT, "Integral": INT, "SupportsInt": INT, "SupportsFloat": FLOAT, "None": Kind("none")}
_LISTS = {"list", "List", "Sequence", "MutableSequence", "Iterable", "Collection", "Iterator", "Reversible"}
_SETS = {"set", "Set", "frozenset", "FrozenSet", "AbstractSet", "MutableSet"}
_DICTS = {"dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "defaultdict", "Counter"}
_TUPLES = {"tuple", "Tuple"}


def kind_of_annotation(node: ast.expr | None) -> Kind | None:
    """The Kind an annotation names, or None when it names nothing this module can generate."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "list[int]" forward reference
        try:
            return kind_of_annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return None
    if isinstance(node, ast.Constant) and node.value is None:
        return Kind("none")
    if isinstance(node, ast.Attribute):  # typing.List, collections.abc.Sequence
        return kind_of_annotation(ast.Name(id=node.attr, ctx=ast.Load()))
    if isinstance(node, ast.Name):
        if node.id in _SIMPLE:
            return _SIMPLE[node.id]
        if node.id in _LISTS:
            return Kind("list", (ANY,))
        if node.id in _SETS:
            return Kind("set", (ANY,))
        if node.id in _DICTS:
            return Kind("dict", (STR, ANY))
        if node.id in _TUPLES:
            return Kind("tuple", (ANY,))
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
        return _union([kind_of_annotation(node.left), kind_of_annotation(node.right)])
    if isinstance(node, ast.Subscript):
        base = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        inner = [kind_of_annotation(i) if not (isinstance(i, ast.Constant) and i.value is Ellipsis) else None
                 for i in items]
        if base == "Optional":
            return _union([inner[0], Kind("none")])
        if base == "Union":
            return _union(inner)
        if base in _LISTS:
            return Kind("list", (inner[0] or ANY,))
        if base in _SETS:
            return Kind("set", (inner[0] or ANY,))
        if base in _DICTS:
            return Kind("dict", (inner[0] or STR, inner[1] if len(inner) > 1 and inner[1] else ANY))
        if base in _TUPLES:
            if len(items) == 2 and isinstance(items[1], ast.Constant) and items[1].value is Ellipsis:
                return Kind("tuple", (inner[0] or ANY,))  # tuple[int, ...]
            return Kind("tuple", tuple(k or ANY for k in inner))
        if base == "Literal":
            return None
        return None
    return None


def _union(kinds: list[Kind | None]) -> Kind | None:
    known = [k for k in kinds if k is not None]
    if not known:
        return None
    real = [k for k in known if k.name != "none"]
    if len(real) < len(known):
        return Kind("optional", (real[0] if real else ANY,))
    return real[0]


def kind_of_value(value: Any) -> Kind:
    """The Kind of a literal value (a default, a doctest argument)."""
    if isinstance(value, bool):
        return BOOL
    for t, k in ((int, INT), (float, FLOAT), (str, STR), (bytes, BYTES)):
        if isinstance(value, t):
            return k
    if value is None:
        return ANY
    if isinstance(value, (list, tuple, set, frozenset)):
        elem = kind_of_value(next(iter(value))) if value else ANY
        return Kind({list: "list", tuple: "tuple", set: "set", frozenset: "set"}[type(value)], (elem,))
    if isinstance(value, dict):
        if not value:
            return Kind("dict", (STR, ANY))
        k, v = next(iter(value.items()))
        return Kind("dict", (kind_of_value(k), kind_of_value(v)))
    return ANY


_STR_METHODS = {"lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                "endswith", "replace", "find", "rfind", "isdigit", "isalpha", "isalnum", "isspace", "isupper",
                "islower", "title", "capitalize", "encode", "partition", "rpartition", "casefold", "zfill",
                "center", "ljust", "rjust", "expandtabs", "translate", "format", "isidentifier", "isdecimal"}
_LIST_METHODS = {"append", "extend", "insert", "pop", "sort", "reverse", "remove"}
_DICT_METHODS = {"items", "keys", "values", "get", "setdefault", "update"}
_INT_CALLS = {"range", "bin", "hex", "oct", "chr"}
_SEQ_CALLS = {"list", "tuple", "sorted", "enumerate", "reversed", "sum", "zip", "any", "all", "frozenset"}


def kind_from_usage(func: ast.FunctionDef, param: str, _depth: int = 0) -> Kind | None:
    """The type a function body implies for a parameter it does not annotate (a loop over it also
    types its elements)."""
    votes: dict[str, int] = {}
    elems: list[Kind] = []

    def vote(k: str) -> None:
        votes[k] = votes.get(k, 0) + 1

    for n in ast.walk(func):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == param:
            if n.attr in _STR_METHODS:
                vote("str")
            elif n.attr in _LIST_METHODS:
                vote("list")
            elif n.attr in _DICT_METHODS:
                vote("dict")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _INT_CALLS:
            if any(isinstance(a, ast.Name) and a.id == param for a in n.args):
                vote("int")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _SEQ_CALLS:
            if any(isinstance(a, ast.Name) and a.id == param for a in n.args):
                vote("list")
        elif isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod,
                                                             ast.Pow, ast.RShift, ast.LShift, ast.BitAnd)):
            sides = (n.left, n.right)
            if any(isinstance(s, ast.Name) and s.id == param for s in sides) and any(
                    isinstance(s, ast.Constant) and type(s.value) is int for s in sides):
                vote("int")
        elif isinstance(n, ast.Compare) and isinstance(n.left, ast.Name) and n.left.id == param:
            for c in n.comparators:
                if isinstance(c, ast.Constant):
                    vote(kind_of_value(c.value).name)
        elif (isinstance(n, ast.Compare) and isinstance(n.left, ast.Subscript) and isinstance(n.left.value, ast.Name)
              and n.left.value.id == param and isinstance(n.left.slice, ast.Constant)
              and type(n.left.slice.value) is int):
            for c in n.comparators:  # argv[1] == '--fork': a list of str
                if isinstance(c, ast.Constant) and type(c.value) in (str, int):
                    vote("list")
                    elems.append(kind_of_value(c.value))
        elif isinstance(n, (ast.For, ast.comprehension)) and isinstance(n.iter, ast.Name) and n.iter.id == param:
            vote("list")
            if isinstance(n.target, ast.Name) and n.target.id != param and _depth < 1:
                elem = kind_from_usage(func, n.target.id, _depth + 1)  # for c in cols: c.center() -> list[str]
                if elem is not None and elem.name in ("str", "int", "float", "bytes"):
                    elems.append(elem)
    votes.pop("any", None)
    if not votes and _indexed(func, param):  # a[mid], len(a): a sequence, when nothing says which
        return Kind("list", (elems[0] if elems else INT,))
    if not votes:
        return None
    best = max(votes, key=lambda k: votes[k])
    return {"str": STR, "int": INT, "float": FLOAT, "bool": BOOL, "bytes": BYTES,
            "list": Kind("list", (elems[0] if elems else INT,)), "dict": Kind("dict", (STR, INT))}.get(best)


def _indexed(func: ast.FunctionDef, param: str) -> bool:
    """Whether the body subscripts ``param`` or takes its ``len``."""
    for n in ast.walk(func):
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == param:
            return True
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len" and n.args
                and isinstance(n.args[0], ast.Name) and n.args[0].id == param):
            return True
    return False


_NAME_HINTS: list[tuple[tuple[str, ...], Kind]] = [
    (("is_", "has_", "use_", "allow", "strict", "flag", "verbose", "reverse", "ignore"), BOOL),
    (("text", "string", "word", "name", "line", "prefix", "suffix", "sep", "char", "pattern", "label", "title",
      "s", "src", "source", "message", "msg", "key", "fmt", "sentence"), STR),
    (("n", "i", "j", "k", "m", "num", "count", "size", "width", "height", "length", "index", "idx", "start", "stop",
      "end", "step", "depth", "level", "limit", "base", "year", "month", "day", "value", "number", "x", "y", "a", "b",
      "lo", "hi", "low", "high", "offset", "pos", "digits", "bits", "total", "amount", "times"), INT),
    (("items", "values", "seq", "sequence", "lst", "list", "nums", "numbers", "elements", "arr", "array",
      "data", "iterable", "xs", "ints", "words", "strings", "lines", "names", "parts"), Kind("list", (INT,))),
    (("d", "dct", "mapping", "dict", "table", "counts", "kwargs_dict"), Kind("dict", (STR, INT))),
    (("ratio", "rate", "fraction", "alpha", "eps", "tol", "scale", "factor", "weight", "prob"), FLOAT),
]


def kind_from_name(param: str) -> Kind | None:
    p = param.lower()
    for names, kind in _NAME_HINTS:
        for h in names:
            if p == h or (h.endswith("_") and p.startswith(h)) or (len(h) > 2 and (p.endswith(h)
                                                                               or p.startswith(h + "_"))):
                if kind.name == "list" and p in ("words", "strings", "lines", "names", "parts"):
                    return Kind("list", (STR,))
                return kind
    if len(p) > 3 and p.endswith("s") and not p.endswith("ss"):
        return Kind("list", (INT,))
    return None


_SEEDS: dict[str, list[Any]] = {
    "int": [0, 1, 2, 3, 5, 10, -1, 7, 12, 100],
    "float": [0.0, 1.5, -2.25, 3.0, 0.1, 10.0],
    "bool": [True, False],
    "str": ["hello", "", "Hello World", "  spaced\tout ", "a,b,c", "123", "racecar", "a", "abc def", "Python"],
    "bytes": [b"", b"abc", b"hello world", b"\x00\xff"],
    "none": [None],
}


def seed_values(kind: Kind, depth: int = 0) -> list[Any]:
    """Typical values of a kind, simple ones first (empty containers included: edge cases)."""
    if kind.name in _SEEDS:
        return list(_SEEDS[kind.name])
    if kind.name == "optional":
        return [None, *seed_values(kind.args[0], depth)]
    if kind.name == "any":
        return [0, 3, "abc", [1, 2, 3], -2, "", [], 1.5]
    if depth >= 2:
        return []
    if kind.name in ("list", "set"):
        elems = seed_values(kind.args[0] if kind.args else ANY, depth + 1)
        elems = [e for e in elems if _hashable(e)] if kind.name == "set" else elems
        lists = [[], elems[1:2], elems[1:4], elems[3:0:-1] + elems[2:3], elems[:6]]
        return [set(v) if kind.name == "set" else v for v in lists]
    if kind.name == "tuple":
        if len(kind.args) > 1:  # fixed shape
            cols = [seed_values(a, depth + 1) for a in kind.args]
            if not all(cols):
                return []
            return [tuple(c[(i + j) % len(c)] for j, c in enumerate(cols)) for i in range(4)]
        elems = seed_values(kind.args[0] if kind.args else ANY, depth + 1)
        return [(), tuple(elems[1:3]), tuple(elems[:4])]
    if kind.name == "dict":
        keys = [k for k in seed_values(kind.args[0] if kind.args else STR, depth + 1) if _hashable(k)]
        vals = seed_values(kind.args[1] if len(kind.args) > 1 else ANY, depth + 1)
        if not keys or not vals:
            return [{}]
        return [{}, {keys[1 % len(keys)]: vals[1 % len(vals)]},
                {keys[i % len(keys)]: vals[(i + 2) % len(vals)] for i in range(1, 4)}]
    return []


def body_constants(func: ast.FunctionDef) -> list[Any]:
    """String, bytes and int constants of a function's body (not its docstring), in source order.

    evalplus seeds its mutations with them: a function that treats ``'-'`` specially is only tested
    by inputs that contain a ``'-'``.
    """
    doc = func.body[0] if func.body and isinstance(func.body[0], ast.Expr) else None
    out: list[Any] = []
    for n in ast.walk(ast.Module(body=[s for s in func.body if s is not doc], type_ignores=[])):
        if isinstance(n, ast.Constant) and type(n.value) in (str, bytes, int) and n.value not in out:
            if not isinstance(n.value, (str, bytes)) or 0 < len(n.value) <= 20:
                out.append(n.value)
    return out[:12]


def constant_values(kind: Kind, consts: list[Any]) -> list[Any]:
    """Values of ``kind`` built around a function's own constants (``'a-b'`` for a ``'-'``)."""
    if kind.name == "optional":
        return constant_values(kind.args[0], consts)
    if kind.name in ("str", "any"):
        strs = [c for c in consts if isinstance(c, str)]
        return [*strs[:4], *(f"ab{c}cd" for c in strs[:4]), *(f"{c}x{c}" for c in strs[:2])]
    if kind.name == "bytes":
        return [c for c in consts if isinstance(c, bytes)][:4]
    if kind.name == "int":
        ints = [c for c in consts if type(c) is int and abs(c) < 10**6]
        return [v for c in ints[:4] for v in (c, c + 1)]
    if kind.name == "list" and kind.args and kind.args[0].name in ("str", "int"):
        vals = constant_values(kind.args[0], consts)
        return [vals[:3], ["x", *vals[:2]]] if vals else []
    return []


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def mutations(value: Any) -> list[Any]:
    """evalplus-style type-aware mutations of one value."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, -value, value * 2]
    if isinstance(value, float):
        return [value / 2, value + 0.5, -value]
    if isinstance(value, str):
        return [value[::-1], value + value, value.upper(), value[1:], value + "x"]
    if isinstance(value, bytes):
        return [value[::-1], value + value, value[1:]]
    if isinstance(value, list):
        out = [value[::-1], value + value[:1], value[1:]]
        if value:
            out.append([mutations(value[0])[0], *value[1:]])
        return out
    if isinstance(value, tuple):  # element-wise: a tuple is often a fixed shape (int, str)
        return [value[:i] + (m,) + value[i + 1:] for i, e in enumerate(value[:3]) for m in mutations(e)[:1]]
    if isinstance(value, dict):
        out: list[Any] = []
        if value:
            out.append(dict(list(value.items())[1:]))
            k, v = next(iter(value.items()))
            out.append({**value, **{m: v for m in mutations(k)[:1] if _hashable(m)}})
        return out
    if isinstance(value, (set, frozenset)):
        return [set(sorted(value, key=stable_repr)[1:])] if value else []  # not hash order: same input every run
    return []


@dataclass
class Param:
    """One parameter: how it is passed, and what is known about its type and default."""

    name: str
    kind: Kind | None
    kind_origin: str
    default: Any = None
    has_default: bool = False
    keyword_only: bool = False
    pool: list[tuple[Any, str]] = field(default_factory=list)  # (value, origin)


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def parameters(func: ast.FunctionDef) -> list[Param]:
    """The parameters inputs are generated for (``*args`` and ``**kwargs`` are left empty)."""
    a = func.args
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    out = []
    for arg, d in [*zip(positional, defaults, strict=True), *zip(a.kwonlyargs, a.kw_defaults, strict=True)]:
        ok, value = _literal(d)
        kind, origin = kind_of_annotation(arg.annotation), "annotation"
        if kind is None:
            kind, origin = kind_from_usage(func, arg.arg), "usage"
        if kind is None and ok and value is not None:
            kind, origin = kind_of_value(value), "default"
        if kind is None:
            kind, origin = kind_from_name(arg.arg), "name"
        out.append(Param(arg.arg, kind, origin if kind else "any", value, d is not None and ok,
                         keyword_only=arg in a.kwonlyargs))
    return out


def _doctest_statements(docstring: str | None) -> list[ast.stmt]:
    if not docstring or ">>>" not in docstring:
        return []
    import doctest

    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:
        return []
    stmts: list[ast.stmt] = []
    for ex in examples:
        try:
            stmts += ast.parse(ex.source).body
        except SyntaxError:
            continue
    return stmts


def doctest_imports(docstring: str | None) -> list[str]:
    """The standard-library imports a docstring's examples make (``>>> import io``), as source lines."""
    import sys

    out = []
    for s in _doctest_statements(docstring):
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in s.names] if isinstance(s, ast.Import) else [s.module or ""]
            if all(m.split(".")[0] in sys.stdlib_module_names for m in mods) and not getattr(s, "level", 0):
                out.append(ast.unparse(s))
    return list(dict.fromkeys(out))


def doctest_calls(docstring: str | None, name: str) -> list[str]:
    """Argument texts of the docstring's ``>>> name(...)`` examples (with ``>>> x = ...`` substituted;
    names the examples import, such as ``io`` in ``f(io.BytesIO(b'x'))``, may be read: a test then needs
    :func:`doctest_imports` first)."""
    stmts = _doctest_statements(docstring)
    if not stmts:
        return []
    allowed = {name}
    for line in doctest_imports(docstring):
        allowed |= {(a.asname or a.name).split(".")[0] for a in ast.parse(line).body[0].names}  # type: ignore[attr-defined]
    return call_inputs(stmts, name, allowed, variable_bindings(stmts, allowed), limit=16)


def _args_text(values: list[tuple[Param, Any]]) -> str:
    parts = []
    for p, v in values:
        parts.append(f"{p.name}={stable_repr(v)}" if p.keyword_only else stable_repr(v))
    return ", ".join(parts)


def _ok_value(v: Any) -> bool:
    text = repr(v)
    if len(text) > MAX_VALUE_REPR:
        return False
    try:
        return ast.literal_eval(text) == v or isinstance(v, (set, frozenset))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return isinstance(v, (set, frozenset)) and all(_ok_value(e) for e in v)


@dataclass
class GeneratedInput:
    """One call's argument text and where it came from."""

    args: str
    origin: str


def generate_inputs(func: ast.FunctionDef, *, limit: int = 12, seed: int = 0,
                    doctests: list[str] | None = None) -> list[GeneratedInput]:
    """Distinct argument texts for calling ``func``: its doctest calls first, then generated ones."""
    name = func.name
    doctests = doctest_calls(ast.get_docstring(func), name) if doctests is None else doctests
    out: list[GeneratedInput] = []
    seen: set[str] = set()

    def add(text: str, origin: str) -> None:
        if text not in seen and len(out) < limit:
            seen.add(text)
            out.append(GeneratedInput(text, origin))

    for d in doctests:
        add(d, "doctest")
    params = parameters(func)
    if not params:
        return out
    # Doctest values at each position seed that parameter's pool.
    doc_values: dict[int, list[Any]] = {}
    for d in doctests:
        try:
            call = ast.parse(f"_({d})", mode="eval").body
        except SyntaxError:
            continue
        assert isinstance(call, ast.Call)
        for i, arg in enumerate(call.args):
            ok, v = _literal(arg)
            if ok and i < len(params):
                doc_values.setdefault(i, []).append(v)
        for kw in call.keywords:
            idx = next((i for i, p in enumerate(params) if p.name == kw.arg), None)
            ok, v = _literal(kw.value)
            if ok and idx is not None:
                doc_values.setdefault(idx, []).append(v)
    rng = random.Random(f"{seed}:{name}")
    mentions_bytes = bool(re.search(r"\bbytes?\b|bytes-like|bytestring|byte string", ast.get_docstring(func) or "",
                                    re.I))
    for i, p in enumerate(params):
        pool: list[tuple[Any, str]] = [(v, "doctest-value") for v in doc_values.get(i, [])]
        if p.has_default and p.default is not None:
            pool.append((p.default, "default"))
        kind = p.kind
        if kind is None and pool:
            kind = kind_of_value(pool[0][0])
        seeds = [(v, p.kind_origin) for v in seed_values(kind or ANY)]
        if p.kind_origin in ("name", "any") and mentions_bytes:  # "Encode bytes-like object s": try bytes too
            seeds = [x for pair in zip_longest(seeds, [(b, "docstring") for b in _SEEDS["bytes"]]) for x in pair
                     if x is not None]
        consts = [(v, "body-constant") for v in constant_values(kind or ANY, body_constants(func))]
        # Interleaved: the function's own constants early, so that the walk over the pool reaches them.
        pool += [x for pair in zip_longest(seeds[:4], consts[:6]) for x in pair if x is not None] + seeds[4:]
        muts = [(m, "mutation") for v, _ in pool[:6] for m in mutations(v)]
        rng.shuffle(muts)
        pool += muts[:8]
        p.pool = [(v, o) for v, o in pool if _ok_value(v)]
    required = [p for p in params if not p.has_default and not p.keyword_only]
    optional = [p for p in params if p.has_default or p.keyword_only]
    if any(not p.pool for p in required):
        return out
    # First all parameters at their first values, then each required parameter walks its pool (the others
    # at their first values) with every third draw a random mix (several parameters), then random mixes
    # only; optional parameters join in a third of the later draws.
    n_req = max(1, len(required))
    tries = 0
    while len(out) < limit and tries < limit * 8:
        t, tries = tries, tries + 1
        chosen: list[tuple[Param, Any]] = []
        origins: list[str] = []
        for j, p in enumerate(required):
            if t == 0:
                idx = 0
            elif t <= limit and (t % 3 or len(required) == 1):
                idx = (1 + (t - 1) // n_req) % len(p.pool) if j == (t - 1) % n_req else 0
            else:
                idx = rng.randrange(len(p.pool))
            v, o = p.pool[idx]
            chosen.append((p, v))
            origins.append(o)
        extra = [p for p in optional if p.pool and (not required or t > 0) and rng.random() < 0.33]
        for p in optional:
            if p in extra and not p.keyword_only and any(q not in extra for q in optional[:optional.index(p)]):
                extra.remove(p)  # positional defaults can only be given in order
        for p in extra:
            v, o = p.pool[rng.randrange(len(p.pool))]
            chosen.append((p, v))
            origins.append(o)
        if not chosen:
            break
        top = next((o for o in ("doctest-value", "mutation", "default", "annotation", "usage", "name", "any")
                    if o in origins), origins[0])
        add(_args_text(chosen), top)
    return out


def names_read(args_text: str) -> set[str]:
    """Non-builtin names an argument text reads (empty for the literals generated here)."""
    try:
        tree = ast.parse(f"_({args_text})", mode="eval")
    except SyntaxError:
        return {"<syntax-error>"}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id != "_"} - BUILTIN_NAMES
