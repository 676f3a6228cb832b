"""Type-aware input generation: each annotation kind, inference without annotations, doctest inputs first,
mutations, determinism. Nothing is executed: the inputs are checked as literals of the right type."""

from __future__ import annotations

import ast

import pytest

from textbooklm.synth.input_gen import (
    Kind,
    body_constants,
    doctest_calls,
    generate_inputs,
    kind_of_annotation,
    mutations,
    parameters,
)


def func(src: str) -> ast.FunctionDef:
    node = ast.parse(src).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def values(src: str, limit: int = 12) -> list[tuple]:
    """Each generated input as the tuple of its positional argument values."""
    out = []
    for inp in generate_inputs(func(src), limit=limit):
        call = ast.parse(f"_({inp.args})", mode="eval").body
        out.append(tuple(ast.literal_eval(a) if not (isinstance(a, ast.Call) and a.func.id == "set") else set()
                         for a in call.args))
    return out


@pytest.mark.parametrize("annotation, kind", [
    ("int", "int"), ("float", "float"), ("bool", "bool"), ("str", "str"), ("bytes", "bytes"),
    ("list[int]", "list[int]"), ("List[str]", "list[str]"), ("Sequence[float]", "list[float]"),
    ("Iterable[int]", "list[int]"), ("dict[str, int]", "dict[str, int]"), ("Mapping[str, list[int]]",
                                                                         "dict[str, list[int]]"),
    ("set[str]", "set[str]"), ("tuple[int, str]", "tuple[int, str]"), ("tuple[int, ...]", "tuple[int]"),
    ("Optional[int]", "optional[int]"), ("int | None", "optional[int]"), ("Union[str, int]", "str"),
    ("'list[int]'", "list[int]"), ("typing.List[int]", "list[int]"), ("SomeClass", None),
])
def test_annotation_kinds(annotation, kind):
    node = ast.parse(annotation, mode="eval").body
    got = kind_of_annotation(node)
    assert (str(got) if got else None) == kind


@pytest.mark.parametrize("annotation, check", [
    ("int", lambda v: type(v) is int),
    ("float", lambda v: isinstance(v, float)),
    ("bool", lambda v: isinstance(v, bool)),
    ("str", lambda v: isinstance(v, str)),
    ("bytes", lambda v: isinstance(v, bytes)),
    ("list[int]", lambda v: isinstance(v, list) and all(type(e) is int for e in v)),
    ("list[str]", lambda v: isinstance(v, list) and all(isinstance(e, str) for e in v)),
    ("dict[str, int]", lambda v: isinstance(v, dict) and all(isinstance(k, str) and type(x) is int
                                                             for k, x in v.items())),
    ("tuple[int, str]", lambda v: isinstance(v, tuple) and len(v) == 2 and type(v[0]) is int
     and isinstance(v[1], str)),
    ("Optional[int]", lambda v: v is None or type(v) is int),
])
def test_generated_values_have_the_annotated_type(annotation, check):
    got = values(f"def f(x: {annotation}):\n    '''Doc.'''\n    return x\n")
    assert len(got) >= (2 if annotation == "bool" else 4)
    assert all(check(v[0]) for v in got), got
    assert len({repr(v) for v in got}) == len(got)  # distinct


def test_optional_includes_none_and_bool_gives_both():
    assert (None,) in values("def f(x: int | None):\n    '''D.'''\n    return x\n")
    assert set(values("def f(flag: bool):\n    '''D.'''\n    return flag\n")) == {(True,), (False,)}


def test_unannotated_parameters_are_typed_from_usage_default_and_name():
    f = func("def f(s, n, items, d, flag=False, ratio=0.5):\n    '''D.'''\n    s = s.strip()\n"
             "    for i in range(n):\n        pass\n    items.append(1)\n    return d.get(s)\n")
    kinds = {p.name: (str(p.kind), p.kind_origin) for p in parameters(f)}
    assert kinds == {"s": ("str", "usage"), "n": ("int", "usage"), "items": ("list[int]", "usage"),
                     "d": ("dict[str, int]", "usage"), "flag": ("bool", "default"), "ratio": ("float", "default")}
    g = func("def g(text, count, words):\n    '''D.'''\n    return 1\n")
    by_name = {p.name: str(p.kind) for p in parameters(g)}
    assert by_name == {"text": "str", "count": "int", "words": "list[str]"}


def test_doctest_calls_come_first_and_seed_the_pools():
    src = ('def f(text: str, n: int = 2) -> str:\n    """Repeat.\n\n    >>> f("ab", 3)\n    \'ababab\'\n'
           '    >>> word = "xy"\n    >>> f(word)\n    \'xyxy\'\n    """\n    return text * n\n')
    assert doctest_calls(ast.get_docstring(func(src)), "f") == ["'ab', 3", "'xy'"]
    got = generate_inputs(func(src), limit=10)
    assert [g.args for g in got[:2]] == ["'ab', 3", "'xy'"] and [g.origin for g in got[:2]] == ["doctest"] * 2
    assert "doctest-value" in {g.origin for g in got}  # "ab" / "xy" reused with other values
    assert len(got) == 10 and len({g.args for g in got}) == 10


def test_body_constants_reach_the_inputs():
    src = "def f(name: str):\n    '''Doc.'''\n    return name.replace('-', '_')\n"
    f = func(src)
    assert body_constants(f) == ["-", "_"]
    assert any("-" in v[0] for v in values(src))


def test_mutations_are_type_aware():
    assert mutations(5) == [6, 4, -5, 10]
    assert mutations("abc")[:2] == ["cba", "abcabc"]
    assert [3, 2, 1] in mutations([1, 2, 3])
    assert mutations(True) == [False]
    assert {"b": 2} in mutations({"a": 1, "b": 2})


def test_generation_is_deterministic_and_bounded():
    src = "def f(a: list[int], b: dict[str, int], *, key: str = 'x'):\n    '''Doc.'''\n    return a\n"
    one = generate_inputs(func(src), limit=7, seed=3)
    assert one == generate_inputs(func(src), limit=7, seed=3) and len(one) == 7
    assert all("key=" not in g.args or g.args.count("key=") == 1 for g in one)


def test_no_inputs_without_parameters_and_kind_str():
    assert generate_inputs(func("def f():\n    '''D.'''\n    return 1\n")) == []
    assert str(Kind("dict", (Kind("str"), Kind("list", (Kind("int"),))))) == "dict[str, list[int]]"
