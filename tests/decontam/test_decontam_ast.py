"""Tree edit distance, normalization and the exact shape bound the candidate index relies on."""

from __future__ import annotations

import ast
import itertools

from textbooklm.code_tasks import load_problems
from textbooklm.decontam.ted import keyroots_of, prepare, tree_edit_distance
from textbooklm.decontam.trees import function_tree, function_trees, match_rate, match_rate_upper_bound


def _tree(post: list[tuple[str, int]]):
    labels = [ord(c) for c, _ in post]
    lml = [m for _, m in post]
    return prepare(labels, lml, keyroots_of(lml)), len(labels)


def _ted(a, b) -> int:
    return tree_edit_distance(a[0], b[0], a[1], b[1])


def test_zhang_shasha_textbook_example():
    # f(d(a c(b)) e) vs f(c(d(a b)) e): Zhang & Shasha's example, distance 2.
    a = _tree([("a", 0), ("b", 1), ("c", 1), ("d", 0), ("e", 4), ("f", 0)])
    b = _tree([("a", 0), ("b", 1), ("d", 0), ("c", 0), ("e", 4), ("f", 0)])
    assert _ted(a, b) == 2
    assert _ted(b, a) == 2
    assert _ted(a, a) == 0


def test_ted_simple_operations():
    root_only = _tree([("r", 0)])
    two = _tree([("x", 0), ("r", 0)])  # r(x)
    three = _tree([("x", 0), ("y", 1), ("r", 0)])  # r(x y)
    relabel = _tree([("x", 0), ("z", 1), ("r", 0)])  # r(x z)
    assert _ted(root_only, two) == 1
    assert _ted(root_only, three) == 2
    assert _ted(three, relabel) == 1
    assert _ted(_tree([]), three) == 3


def _func(src: str):
    return function_tree(next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef)))


def test_renaming_and_literals_do_not_change_the_tree():
    a = _func("def f(xs, k):\n    total = 0\n    for x in xs:\n        total += x * k\n    return total\n")
    b = _func("def g(vals, m: int) -> int:\n    '''doc'''\n    s = 10\n    for v in vals:\n        s += v * m\n"
              "    return s\n")
    assert a.labels == b.labels
    assert match_rate(a, b) == 1.0


def test_independent_statements_are_canonically_ordered_but_dependent_ones_are_not():
    a = _func("def f(x, y):\n    p = x + 1\n    q = y * 2\n    return p - q\n")
    b = _func("def f(x, y):\n    q = y * 2\n    p = x + 1\n    return p - q\n")
    assert a.labels == b.labels
    # q depends on p here: moving it changes the program and must show up in the tree.
    c = _func("def f(x):\n    p = x + 1\n    q = p * 2\n    print(q)\n    return q\n")
    d = _func("def f(x):\n    q = x * 2\n    p = q + 1\n    print(p)\n    return p\n")
    assert c.labels != d.labels
    assert match_rate(c, d) < 1.0


def test_operators_are_part_of_the_label():
    a = _func("def f(a, b):\n    return a + b * a - b\n")
    b = _func("def f(a, b):\n    return a * b * a - b\n")
    assert 0 < match_rate(a, b) < 1


def test_shape_bound_never_underestimates_the_match_rate():
    funcs = [f for p in load_problems("humaneval")[:40] for f in function_trees(p.prompt + p.canonical_solution)]
    assert len(funcs) >= 30
    for a, b in itertools.islice(itertools.combinations(funcs, 2), 300):
        assert match_rate_upper_bound(a, b) >= match_rate(a, b) - 1e-12
        assert 0.0 <= match_rate(a, b) <= 1.0


def test_functions_are_found_in_markdown_code_blocks():
    text = ("# Sorting\nSome prose that is not Python at all.\n```python\ndef bubble(xs):\n    n = len(xs)\n"
            "    for i in range(n):\n        for j in range(n - i - 1):\n            if xs[j] > xs[j + 1]:\n"
            "                xs[j], xs[j + 1] = xs[j + 1], xs[j]\n    return xs\n```\n")
    trees = function_trees(text)
    assert [t.name for t in trees] == ["bubble"]
    assert function_trees("def tiny(a):\n    return a\n") == []  # under ast_min_nodes


def test_code_in_any_fence_style_is_compared():
    """decontam uses the one fence parser: ~~~, {python}, indented and unclosed fences all yield code."""
    from textbooklm.decontam.trees import code_pieces

    body = "def add(a, b):\n    return a + b\n"
    for text in (f"~~~python\n{body}~~~\n", f"``` {{python}}\n{body}```\n",
                 "1. a list item:\n\n    ```python\n    def add(a, b):\n        return a + b\n    ```\n",
                 f"Intro.\n```python\n{body}def cut(x):\n    return x +"):
        pieces = code_pieces("Some prose first.\n" + text)
        assert any("def add(a, b):" in p for p in pieces), text
