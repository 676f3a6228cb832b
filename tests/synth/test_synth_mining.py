"""Exercises mined from a fixture module: which functions are candidates, and the verdict of running
each one in the real sandbox (kept with tests from execution, or rejected with its reason)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.synth.corpus_exercises import judge, mine_round, observed_check, probe_program, read_probe
from textbooklm.synth.input_gen import GeneratedInput
from textbooklm.synth.mining import free_names, mine_functions

FIXTURE = Path(__file__).parent / "fixtures" / "mining_module.py"


def fixture_text() -> str:
    return FIXTURE.read_text()


def test_static_mining_keeps_self_contained_functions_and_names_each_rejection():
    kept, rejected, counts = mine_functions(fixture_text(), "mining_module.py", "f1")
    assert {c.name for c in kept} == {"add_numbers", "clamp", "count_words", "always_fails", "remember", "spin",
                                      "half"}
    reasons = {r.name: r.reason for r in rejected}
    assert reasons == {"read_first_line": "io", "roll": "randomness", "scaled": "uses-globals"}
    assert "SCALE" in next(r.detail for r in rejected if r.name == "scaled")
    # The method is no candidate at all, the undocumented function is counted, neither is rejected.
    assert counts["functions"] == 11 and counts["documented"] == 10

    by_name = {c.name: c for c in kept}
    clamp = by_name["clamp"]
    assert clamp.prompt.startswith("LIMIT = 10\n\n\ndef clamp(x: int) -> int:")
    assert clamp.prompt.rstrip().endswith('"""') and clamp.completion.startswith("    if x < 0:")
    assert clamp.carried == ["LIMIT"]
    words = by_name["count_words"]
    assert words.prompt.startswith('import re\n\n\n_WORD = re.compile(r"[a-z]+")\n') and set(words.carried) == {
        "re", "_WORD"}
    assert words.provenance()["source_path"] == "mining_module.py" and words.provenance()["function"] == "count_words"
    # The exercise text runs on its own: everything it reads is carried or builtin.
    assert free_names(ast.parse(words.code).body[-1]) - {"int", "str", "len"} == {"_WORD"}


@pytest.mark.parametrize("src, reason", [
    ("def f(x):\n    '''Doc.'''\n    print(x)\n    return x\n", "io"),
    ("import os\n\ndef f(x):\n    '''Doc.'''\n    return os.path.join(os.getcwd(), x)\n", "io"),
    ("import os\n\ndef f(x):\n    '''Doc.'''\n    return os.path.exists(x)\n", "io"),
    ("import sys\n\ndef f(x):\n    '''Doc.'''\n    sys.stdout.write(x)\n", "io"),
    ("import time\n\ndef f(x):\n    '''Doc.'''\n    return time.time() + x\n", "io"),
    ("def f(x):\n    '''Doc.'''\n    return hash(x) + 1\n", "randomness"),
    ("import numpy\n\ndef f(x):\n    '''Doc.'''\n    return numpy.sum(x)\n", "non-stdlib-import"),
    ("from .sibling import g\n\ndef f(x):\n    '''Doc.'''\n    return g(x)\n", "uses-globals"),
    ("def f(x):\n    '''Doc.'''\n    global Y\n    Y = x\n", "uses-globals"),
    ("def f(x):\n    '''Doc.'''\n    yield x\n    yield x\n", "generator"),
    ("def f():\n    '''Doc.'''\n    x = 1\n    return x\n", "no-parameters"),
    ("@staticmethod\ndef f(x):\n    '''Doc.'''\n    return x\n", "decorated"),
    ("def f(x):\n    '''Doc.'''\n" + "    x += 1\n" * 70 + "    return x\n", "too-long"),
    ("def f(x): return x  # one line\n", None),  # no docstring: not a candidate
])
def test_static_rejection_reasons(src, reason):
    kept, rejected, _ = mine_functions(src)
    assert not kept
    assert [r.reason for r in rejected] == ([reason] if reason else [])


def test_pure_os_path_and_sys_constants_are_allowed():
    src = ("import os\nimport sys\nfrom os.path import splitext\n\n\n"
           "def f(p):\n    '''Doc.'''\n    return os.path.join(p, 'a' + os.sep), splitext(p), sys.maxsize\n")
    kept, rejected, _ = mine_functions(src)
    assert [c.name for c in kept] == ["f"] and not rejected
    assert kept[0].prompt.startswith("from os.path import splitext\nimport os\nimport sys\n")


def test_helpers_are_carried_in_source_order_with_their_dependencies():
    src = ("import math\n\nBASE = 3\n\n\ndef _square(v):\n    '''Square.'''\n    return v * v * BASE\n\n\n"
           "def hyp(a: float, b: float) -> float:\n    '''Hypotenuse.'''\n    total = _square(a) + _square(b)\n"
           "    return math.sqrt(total)\n")
    kept, _, _ = mine_functions(src)
    hyp = next(c for c in kept if c.name == "hyp")
    assert set(hyp.carried) == {"math", "_square", "BASE"}
    assert hyp.prompt.index("import math") < hyp.prompt.index("BASE = 3") < hyp.prompt.index("def _square")


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(Limits(timeout_s=3.0, memory_mb=512), workers=2) as p:
        yield p


@pytest.mark.slow
def test_mining_round_runs_the_original_functions_and_keeps_only_verified_ones(pool):
    files = [{"id": "f1", "text": fixture_text(), "path": "fixtures/mining_module.py"}]
    kept, rejected, result = mine_round(0, files, min_tests=3, inputs_per_function=10, per_call_s=0.2,
                                        min_lines=3, max_lines=60, max_per_file=20, sandbox=pool, seed=0)
    reasons = {r["entry_point"]: r["reason"] for r in rejected}
    assert reasons == {"read_first_line": "io", "roll": "randomness", "scaled": "uses-globals",
                       "always_fails": "raises", "remember": "non-deterministic", "spin": "too-slow",
                       "half": "doctest-failed"}
    assert {r["entry_point"] for r in kept} == {"add_numbers", "clamp", "count_words"}
    assert result["kept"] == 3 and result["mining"]["candidates"] == 7

    add = next(r for r in kept if r["entry_point"] == "add_numbers")
    prov = json.loads(add["provenance"])["synth"]
    assert prov["source"] == "corpus" and prov["mined"]["source_path"] == "fixtures/mining_module.py"
    assert prov["mined"]["function"] == "add_numbers" and prov["verification"]["status"] == "passed"
    assert prov["doctest"] == [0, 2]  # both doctest examples ran and passed
    origins = [t["origin"] for t in prov["tests"]]
    assert origins[:2] == ["doctest", "doctest"] and len(set(origins)) > 1
    assert "assert candidate(2, 3) == 5\n" in add["test"] and add["text"] == add["prompt"] + add["completion"]
    # Every test is the original function's observed value: the stored solution passes, a wrong one fails.
    wrong = add["prompt"] + "    return a - b\n"
    good, bad = pool.run([Program("g", add["text"], add["test"], "add_numbers"),
                          Program("b", wrong, add["test"], "add_numbers")])
    assert good.passed and bad.status == "failed"

    clamp = next(r for r in kept if r["entry_point"] == "clamp")
    values = {t["expected"] for t in json.loads(clamp["provenance"])["synth"]["tests"]}
    assert {"0", "10"} <= values  # the carried LIMIT = 10 is reached by the generated inputs
    half = next(r for r in rejected if r["entry_point"] == "half")
    assert "1 of 1 doctest examples failed" in half["detail"]


@pytest.mark.slow
def test_probe_verdicts_constant_identity_and_too_few(pool):
    src = ("def same(x):\n    '''Always 7.'''\n    y = x\n    return 7\n\n\n"
           "def ident(x):\n    '''Gives x back.'''\n    y = 1\n    return x\n\n\n"
           "def picky(x: int):\n    '''Only 1 and 2 work.'''\n"
           "    if x not in (1, 2):\n        raise ValueError(x)\n    return x * 10\n")
    kept, _, _ = mine_functions(src)
    inputs = [GeneratedInput(a, "test") for a in ("1", "2", "'a'", "[1]")]
    programs = [probe_program(c, inputs, c.name, 0.2) for c in kept]
    verdicts = {c.name: judge(inputs, read_probe(r), 3) for c, r in zip(kept, pool.run(programs), strict=True)}
    assert verdicts["same"].reason == "constant-output"
    assert verdicts["ident"].reason == "identity-output"
    assert verdicts["picky"].reason == "too-few-tests" and verdicts["picky"].dropped["raises"] == 2
    assert "2 of 4 inputs give a small literal value, at least 3 needed" in verdicts["picky"].detail


def test_observed_check_is_a_humaneval_check():
    text = observed_check([{"args": "1, 2", "origin": "doctest", "expected": "3"}])
    assert text == "def check(candidate):\n    assert candidate(1, 2) == 3\n"


@pytest.mark.slow
def test_doctest_inputs_may_use_what_the_doctest_imports(pool):
    src = ('def first_two(stream):\n    r"""Read two bytes.\n\n    >>> import io\n'
           "    >>> first_two(io.BytesIO(b'abc'))\n    b'ab'\n    >>> first_two(io.BytesIO(b'x'))\n    b'x'\n"
           '    """\n    data = stream.read(2)\n    return data\n')
    kept, rejected, _ = mine_round(0, [{"id": "d", "text": src, "path": "d.py"}], min_tests=2,
                                   inputs_per_function=6, per_call_s=0.2, min_lines=3, max_lines=60,
                                   max_per_file=5, sandbox=pool, seed=0)
    assert [r["entry_point"] for r in kept] == ["first_two"], [r["detail"] for r in rejected]
    assert kept[0]["test"].startswith("def check(candidate):\n    import io\n")
    assert "assert candidate(io.BytesIO(b'abc')) == b'ab'" in kept[0]["test"]
