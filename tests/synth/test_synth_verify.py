"""Verification in the real sandbox: known-good exercises pass, known-bad ones fail with the right status."""

from __future__ import annotations

import pytest

from textbooklm.lazy_services import LazySandbox
from textbooklm.sandbox import Limits
from textbooklm.synth.exercise import parse_exercise
from textbooklm.synth.exercise_verify import alternative_program, program_of

pytestmark = pytest.mark.slow


def exercise(body: str, tests: str = "assert f([1, 2, 3]) == 6\nassert f([]) == 0\n"):
    reply = f'```python\ndef f(items):\n    """Sum the items."""\n{body}\n\n{tests}```\n'
    return parse_exercise(reply, "f", min_tests=2)


def test_known_good_and_known_bad_exercises():
    cases = {
        "good": exercise("    return sum(items)"),
        "good-loop": exercise("    total = 0\n    for x in items:\n        total += x\n    return total"),
        "wrong": exercise("    return sum(items) + 1"),
        "crash": exercise("    return items[10]"),
        "bad-test": exercise("    return sum(items)", "assert f([1]) == 1\nassert f(undefined_name) == 0\n"),
        "loop": exercise("    while True:\n        pass"),
        "memory": exercise("    junk = bytearray(2 * 1024 ** 3)\n    return len(junk)"),
    }
    sandbox = LazySandbox(Limits(timeout_s=1.5, memory_mb=512), workers=2)
    try:
        results = dict(zip(cases, sandbox.run([program_of(ex, k) for k, ex in cases.items()]), strict=True))
    finally:
        sandbox.close()
    status = {k: r.status for k, r in results.items()}
    assert status == {"good": "passed", "good-loop": "passed", "wrong": "failed", "crash": "failed",
                      "bad-test": "failed", "loop": "timeout", "memory": "memory"}
    assert "AssertionError" in results["wrong"].error
    assert "IndexError" in results["crash"].error
    assert "NameError" in results["bad-test"].error


def test_other_solutions_agree_or_disagree():
    ex = exercise("    return sum(items)")
    same = alternative_program(ex, "```python\ndef f(items):\n    return sum(x for x in items)\n```", "a")
    other = alternative_program(ex, "Here:\n```python\ndef f(items):\n    return max(items, default=0)\n```", "b")
    assert alternative_program(ex, "```python\ndef g(items):\n    return 0\n```", "c") == \
        "the solution does not define f"
    assert alternative_program(ex, "no code", "d").startswith("no-code")
    sandbox = LazySandbox(Limits(timeout_s=2.0), workers=1)
    try:
        a, b = sandbox.run([same, other])
    finally:
        sandbox.close()
    assert a.passed and b.status == "failed"
