"""Teacher replies -> exercise parts, or a named reason."""

from __future__ import annotations

import pytest

from textbooklm.synth.exercise import (
    AMBIGUOUS,
    NO_CODE,
    NO_DOCSTRING,
    NO_FUNCTION,
    NO_SOLUTION,
    NO_TESTS,
    SYNTAX_ERROR,
    TOO_FEW_TESTS,
    WRONG_NAME,
    ExerciseError,
    parse_exercise,
)

PROSE_AROUND = '''Sure! Here is a Python exercise for you.

```python
import math

def _square(x):
    return x * x

def hypotenuse(a: float, b: float) -> float:
    """Return the length of the hypotenuse of a right triangle with legs a and b."""
    return math.sqrt(_square(a) + _square(b))

print(hypotenuse(3, 4))
assert hypotenuse(3, 4) == 5.0
```

You can test it more like this:

```python
def test_hypotenuse():
    assert hypotenuse(6, 8) == 10.0

if __name__ == "__main__":
    for a, b, c in [(5, 12, 13)]:
        assert hypotenuse(a, b) == c
```
I hope this helps you learn!'''


def test_prose_around_code_helpers_and_tests_in_many_places():
    ex = parse_exercise(PROSE_AROUND, "hypotenuse", min_tests=3)
    assert ex.prompt.startswith("import math\n\ndef _square(x):")
    assert ex.prompt.endswith('"""Return the length of the hypotenuse of a right triangle with legs a and b."""\n')
    assert ex.completion == "    return math.sqrt(_square(a) + _square(b))\n"
    assert ex.helpers == ["_square"]
    assert ex.n_tests == 3
    assert ex.test.startswith("def check(candidate):\n")
    assert "assert candidate(3, 4) == 5.0" in ex.test and "assert candidate(6, 8) == 10.0" in ex.test
    assert "for a, b, c in [(5, 12, 13)]:" in ex.test
    assert "hypotenuse" not in ex.test and "print" not in ex.test
    assert ex.dropped_statements == 1  # the print
    compile(ex.prompt + ex.completion + "\n" + ex.test, "ex", "exec")


def test_unittest_style_and_unfenced_reply():
    reply = '''def is_even(n):
    """True when n is even."""
    return n % 2 == 0

class TestIsEven(unittest.TestCase):
    def test_it(self):
        self.assertTrue(is_even(2))
        self.assertFalse(is_even(3))
        self.assertEqual(is_even(0), True)
That's the exercise.'''
    ex = parse_exercise(reply, "is_even", min_tests=3)
    assert ex.test.splitlines()[1:] == [
        "    assert candidate(2)", "    assert not candidate(3)", "    assert candidate(0) == True",
    ]


@pytest.mark.parametrize(
    ("reply", "reason", "detail"),
    [
        ("I cannot write code today.", NO_CODE, "no Python code block"),
        ("```python\ndef f(x:\n    return 1\n```", SYNTAX_ERROR, "SyntaxError"),
        ("```python\nx = 1\nassert x == 1\n```", NO_FUNCTION, "defines no function"),
        ('```python\ndef g(x):\n    """d"""\n    return x\n\nassert g(1) == 1\n```', WRONG_NAME,
         "asked for f, the code defines g"),
        ("```python\ndef f(x):\n    return x\n\ndef f(x):\n    return 2\n\nassert f(1) == 2\n```", AMBIGUOUS,
         "2 times, none with docstring and body"),
        ("```python\ndef f(x):\n    return x\n\nassert f(1) == 1\n```", NO_DOCSTRING, "no docstring"),
        ('```python\ndef f(x):\n    """Do it."""\n    pass\n\nassert f(1) == 1\n```', NO_SOLUTION, "no body"),
        ('```python\ndef f(x):\n    """Do it."""\n    return x\n\nprint(f(1))\n```', NO_TESTS, "no assert calls f"),
        ('```python\ndef f(x):\n    """Do it."""\n    return x\n\nassert 1 == 1\n```', NO_TESTS, "no assert calls f"),
    ],
)
def test_rejections_name_their_reason(reply, reason, detail):
    with pytest.raises(ExerciseError) as info:
        parse_exercise(reply, "f")
    assert info.value.reason == reason
    assert detail in info.value.detail


def test_too_few_tests_and_several_functions():
    reply = '''```python
def helper_a(x):
    return x + 1

def helper_b(x):
    return x - 1

def shift(x):
    """Shift x up then down."""
    return helper_b(helper_a(x))

assert shift(1) == 1
```'''
    with pytest.raises(ExerciseError) as info:
        parse_exercise(reply, "shift", min_tests=2)
    assert info.value.reason == TOO_FEW_TESTS and "1 assert(s)" in info.value.detail
    ex = parse_exercise(reply, "shift", min_tests=1)
    assert ex.helpers == ["helper_a", "helper_b"]
    with pytest.raises(ExerciseError) as info:
        parse_exercise(reply, "helper_c")
    assert info.value.reason == WRONG_NAME and "helper_a, helper_b, shift" in info.value.detail


def test_redefinition_takes_the_first_complete_one_and_a_cut_off_block_keeps_its_whole_statements():
    reply = """```python
def f(x):
    \"\"\"Add one.\"\"\"
    return x + 1

assert f(1) == 2
assert f(2) == 3
```
A "better" version:
```python
def f(x):
    return x + 1 if x else None

assert f(5) == 6
assert f(int("7"
"""
    ex = parse_exercise(reply, "f", min_tests=3)
    assert ex.completion == "    return x + 1\n"
    assert ex.n_tests == 3 and "candidate(5) == 6" in ex.test and "int(" not in ex.test
