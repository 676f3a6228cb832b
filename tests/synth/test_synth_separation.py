"""Tests that separate right from trivial (issue 23 item 5): trivial candidates and mutants of the reference
are run against an exercise's tests in the real sandbox; weak tests are strengthened or rejected."""

from __future__ import annotations

import ast
import json

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.synth.config import SeparationConfig
from textbooklm.synth.corpus_exercises import mine_round
from textbooklm.synth.mutants import make_mutants
from textbooklm.synth.separation import Exercise, SeparationRun, check_separation, score_distribution
from textbooklm.synth.strengthen import cover
from textbooklm.synth.trivial import expected_values, trivial_candidates

CLAMP = '''def clamp(x: int, hi: int = 10) -> int:
    """Clamp x to at most hi."""
    if x > hi:
        return hi
    return x
'''
# A cap the generated inputs never reach (their ints stay below ~200): every mined test hands ``value``
# back, so ``return value`` passes them all; the ignored ``unit`` keeps the identity-output rule from seeing it.
CAPPED = '''def capped(value: int, unit: str = "m") -> int:
    """The value, capped at a thousand (unit is only a label)."""
    if value > 10 * 100:
        return 10 * 100
    return value
'''


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(Limits(timeout_s=3.0, memory_mb=1024), workers=2) as p:
        yield p


def test_trivial_candidates_cover_arguments_none_the_common_constant_and_the_empty_value():
    func = ast.parse(CLAMP).body[0]
    test = "def check(candidate):\n    assert candidate(3) == 3\n    assert candidate(12) == 10\n" \
           "    assert candidate(11) == 10\n"
    assert expected_values(test) == ["3", "10", "10"]
    names = [t.name for t in trivial_candidates(func, test)]
    assert names == ["return x", "return hi", "return None", "return 10", "return 0"]
    src = trivial_candidates(func, test)[0].source
    assert src.startswith("def clamp(x: int, hi: int=10) -> int:") and src.rstrip().endswith("return x")


def test_mutants_are_distinct_deterministic_and_capped():
    func = ast.parse(CLAMP).body[0]
    a, b = make_mutants(func, 8, seed=3), make_mutants(func, 8, seed=3)
    assert a == b and 0 < len(a) <= 8
    assert len({m.source for m in a}) == len(a) and all(m.source != ast.unparse(func) + "\n" for m in a)
    assert {m.kind for m in a} == {"compare", "branch", "statement"}  # clamp has no int constant in its body
    assert any(m.description == "line 3: > -> <=" for m in a)
    assert len(make_mutants(func, 2, seed=3)) == 2 and make_mutants(func, 0) == []


def test_tests_that_return_x_passes_are_weak_and_strong_tests_are_not(pool):
    weak = Exercise(CLAMP, "clamp", "def check(candidate):\n    assert candidate(3) == 3\n"
                    "    assert candidate(5) == 5\n")
    strong = Exercise(CLAMP, "clamp", "def check(candidate):\n    assert candidate(3) == 3\n"
                      "    assert candidate(12) == 10\n    assert candidate(10) == 10\n"
                      "    assert candidate(3, 2) == 2\n    assert candidate(11, 11) == 11\n")
    w, s = check_separation([weak, strong], pool, n_mutants=8, seed=0)
    assert "return x" in w.trivial_passed and w.weakness(0.5) is not None
    assert "return x" in w.weakness(0.5)
    assert s.trivial_passed == [] and s.score is not None and s.score >= 0.5 and s.weakness(0.5) is None
    assert s.killed + len(s.survivors) == s.mutants


def test_a_mined_exercise_that_return_value_passes_is_strengthened(pool):
    files = [{"id": "c", "text": CAPPED, "path": "capped.py"}]
    args = dict(min_tests=2, inputs_per_function=16, per_call_s=0.25, min_lines=3, max_lines=60, max_per_file=5,
                sandbox=pool, seed=0)
    # Without the check (as before): kept, and its tests are passed by `return value`.
    before, _, _ = mine_round(0, files, **args)
    assert [r["entry_point"] for r in before] == ["capped"]
    trivial = "def capped(value, unit='m'):\n    return value\n"
    assert pool.run([Program("t", trivial, before[0]["test"], "capped")])[0].passed

    with SandboxPool(Limits(timeout_s=1.0, memory_mb=1024), workers=2) as candidates:
        kept, rejected, result = mine_round(0, files, **args,
                                            separation=SeparationRun(SeparationConfig(), candidates, 0))
    # With it: strengthened (an input past the cap, a variant of a test's own input, was added).
    assert [r["entry_point"] for r in kept] == ["capped"], [r["detail"] for r in rejected]
    prov = json.loads(kept[0]["provenance"])["synth"]["separation"]
    assert prov["strengthened"]["tests_added"] >= 1
    assert "return value" in prov["strengthened"]["before"]["trivial_passed"]
    assert prov["trivial_passed"] == [] and prov["mutation_score"] >= 0.5
    assert not pool.run([Program("t", trivial, kept[0]["test"], "capped")])[0].passed
    assert pool.run([Program("r", kept[0]["text"], kept[0]["test"], "capped")])[0].passed
    assert result["separation_s"] >= 0


def test_no_strengthening_rejects_weak_tests(pool):
    files = [{"id": "c", "text": CAPPED, "path": "capped.py"}]
    with SandboxPool(Limits(timeout_s=1.0, memory_mb=1024), workers=2) as candidates:
        kept, rejected, _ = mine_round(0, files, min_tests=2, inputs_per_function=16, per_call_s=0.25, min_lines=3,
                                       max_lines=60, max_per_file=5, sandbox=pool, seed=0,
                                       separation=SeparationRun(SeparationConfig(extra_inputs=0), candidates, 0))
    assert kept == []
    row = next(r for r in rejected if r["entry_point"] == "capped")
    assert row["reason"] == "weak-tests" and "return value" in row["detail"]
    sep = json.loads(row["provenance"])["synth"]["separation"]
    assert "return value" in sep["trivial_passed"] and "strengthened" not in sep


def test_cover_picks_the_fewest_separating_inputs():
    assert cover([{0}, {0, 1}, set(), {2}]) == [1, 3]
    assert cover([set(), set()]) == []
    assert score_distribution([1.0, 0.9, 0.5, 0.2, None]) == {"1": 1, "0.8-1": 1, "0.5-0.8": 1, "<0.5": 1, "none": 1}
