"""Teacher exercises whose reply has no usable calls: inputs generated from the signature, values from
independent solutions that agree in the real sandbox (known-good and known-bad solution sets)."""

from __future__ import annotations

import pytest

from textbooklm.lazy_services import LazySandbox
from textbooklm.sandbox import Limits
from textbooklm.synth.consensus import call_program, consensus_tests, decide, extra_code, outcome_of
from textbooklm.synth.exercise import ExerciseError, parse_exercise
from textbooklm.synth.exercise_verify import program_of

REPLY = '''Here is the function:

```python
def count_vowels(text: str) -> int:
    """Count the vowels (a, e, i, o, u) in text, ignoring case."""
    return sum(1 for ch in text.lower() if ch in "aeiou")
```

It counts the vowels.
'''
GOOD = [
    "def count_vowels(text):\n    n = 0\n    for c in text:\n        if c in 'aeiouAEIOU':\n            n += 1\n"
    "    return n\n",
    "def count_vowels(text):\n    return len([c for c in text.casefold() if c in set('aeiou')])\n",
]
BAD = [
    GOOD[0],
    "def count_vowels(text):\n    return sum(c in 'aeio' for c in text.lower())\n",  # forgets the u
]


def test_a_reply_without_calls_gets_generated_inputs_only_when_asked():
    with pytest.raises(ExerciseError) as err:
        parse_exercise(REPLY, "count_vowels", 2, "consensus")
    assert err.value.reason == "no-test-inputs"
    ex = parse_exercise(REPLY, "count_vowels", 2, "consensus", generate=True)
    assert len(ex.inputs) == 8 and set(ex.input_origins) <= {"annotation", "body-constant", "mutation"}
    assert "'Hello World'" in ex.inputs and ex.test == ""


def agreed_tests(solutions: list[str]) -> tuple[list[str], str]:
    ex = parse_exercise(REPLY, "count_vowels", 2, "consensus", generate=True)
    sandbox = LazySandbox(Limits(timeout_s=2.0, memory_mb=512), workers=2)
    try:
        progs = [call_program(f"own{i}", ex.prompt + ex.completion, "count_vowels", a) for i, a in enumerate(ex.inputs)]
        own = [outcome_of(r) for r in sandbox.run(progs)]
        others = []
        for k, code in enumerate(solutions):
            progs = [call_program(f"s{k}-{i}", extra_code(ex, code), "count_vowels", a)
                     for i, a in enumerate(ex.inputs)]
            others.append([outcome_of(r) for r in sandbox.run(progs)])
        d = decide(own, others)
        agreed = [ex.inputs[i] for i in d.agreed]
        ex.test = consensus_tests(agreed, [own[i] for i in d.agreed])
        verdict = sandbox.run([program_of(ex, "verify")])[0]
        assert verdict.passed, verdict.error
    finally:
        sandbox.close()
    return agreed, ex.test


@pytest.mark.slow
def test_known_good_solutions_agree_on_every_generated_input():
    agreed, test = agreed_tests(GOOD)
    assert len(agreed) == 8
    assert "assert candidate('Hello World') == 3\n" in test


@pytest.mark.slow
def test_a_known_bad_solution_removes_the_inputs_it_gets_wrong():
    agreed, test = agreed_tests(BAD)
    # The solution that forgets the u disagrees exactly on the inputs holding a u.
    assert agreed == ["'hello'", "''", "'Hello World'", "'a,b,c'"]
    assert "'aeiou'" not in test
