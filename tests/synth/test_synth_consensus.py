"""Consensus tests: input extraction from messy replies, agreement through the real sandbox, and the
exercises stage end to end against a real local HTTP teacher whose replies are scripted."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest
from fakes.echo_server import EchoServer, _Handler

from textbooklm.config import PipelineConfig
from textbooklm.lazy_services import LazySandbox
from textbooklm.pipeline import run_pipeline
from textbooklm.sandbox import Limits
from textbooklm.store import Dataset
from textbooklm.synth.config import ExercisesConfig
from textbooklm.synth.consensus import (
    Outcome,
    call_program,
    consensus_tests,
    decide,
    extra_code,
    literal,
    outcome_of,
    same_value,
    solution_code,
)
from textbooklm.synth.exercise import ExerciseError, parse_exercise
from textbooklm.synth.exercise_verify import program_of


def inputs_of(code: str, name: str = "f", min_tests: int = 1) -> list[str]:
    reply = f'```python\ndef {name}(s):\n    """Reverse s."""\n    return s[::-1]\n\n{code}\n```\n'
    return parse_exercise(reply, name, min_tests, tests_from="consensus").inputs


# -- input extraction (no execution) -----------------------------------------------------------------

def test_inputs_come_from_asserts_with_wrong_values_prints_and_bare_calls():
    code = ('assert f("hello") == "lhg"\nassert f("hello") == "lhg"\nprint(f([1, 2]))\nf(s="ab")\n'
            'x = f("zz")\nassert not f("")')
    assert inputs_of(code) == ["'hello'", "[1, 2]", "s='ab'", "'zz'", "''"]  # distinct, in source order


def test_nested_calls_variables_main_guard_and_test_functions():
    code = ('word = "abc"\nlonger = word + "d"\nprint(f(f("xy")))\nprint(f(longer))\n'
            'for w in ["p", "q"]:\n    print(f(w))\n'
            'def test_f():\n    assert f(tuple("ab")) == 1\n'
            'if __name__ == "__main__":\n    print(f(unknown_name))\n    print(f(str(12)))\n')
    # f(f("xy")) gives its inner call; the loop variable and the undefined name are not self-contained.
    assert inputs_of(code) == ["'xy'", "'abc' + 'd'", "tuple('ab')", "str(12)"]


def test_a_variable_assigned_twice_is_not_substituted():
    assert inputs_of('v = "a"\nv = "b"\nprint(f(v))\nprint(f("c"))') == ["'c'"]


def test_no_calls_or_too_few_distinct_inputs_are_named_rejections():
    with pytest.raises(ExerciseError) as exc:
        inputs_of("# no calls at all\nresult = 3")
    assert exc.value.reason == "no-test-inputs"
    with pytest.raises(ExerciseError) as exc:
        inputs_of('assert f("a") == "x"\nassert f("a") == "y"', min_tests=2)
    assert exc.value.reason == "too-few-tests" and "1 distinct input" in exc.value.detail
    # Teacher mode still reads the asserts (and rejects a reply that only prints).
    with pytest.raises(ExerciseError) as exc:
        parse_exercise('```python\ndef f(s):\n    """D."""\n    return s\n\nprint(f(1))\n```', "f")
    assert exc.value.reason == "no-tests"


def test_solution_code_keeps_the_first_complete_definition_only():
    reply = ('```python\nimport math\ndef f(s):\n    """Doc only."""\n\ndef f(s):\n    return s[::-1]\n\n'
             'def f(s):\n    return 0\n\nprint(f("ab"))\nassert f("ab") == "zz"\n```')
    code = solution_code(reply, "f")
    assert code.count("def f(") == 1 and "return s[::-1]" in code and "import math" in code
    assert "print" not in code and "assert" not in code
    with pytest.raises(ExerciseError):
        solution_code('```python\ndef g(s):\n    return s\n```', "f")


def test_values_compare_as_literals():
    assert literal("{'a': [1, 2.5, None]}") == (True, {"a": [1, 2.5, None]})
    assert literal("<object at 0x1>")[0] is False and literal("nan")[0] is False
    assert same_value(Outcome("value", "{'a', 'b'}"), Outcome("value", "{'b', 'a'}"))
    assert not same_value(Outcome("value", "True"), Outcome("value", "1"))
    assert not same_value(Outcome("raises", "ValueError"), Outcome("raises", "ValueError"))


# -- agreement through the real sandbox --------------------------------------------------------------

SOLUTIONS = {
    "slice": "def f(s):\n    return s[::-1]\n",
    "join": "def f(s):\n    return ''.join(reversed(s))\n",
    "loop": "def f(s):\n    out = ''\n    for c in s:\n        out = c + out\n    return out\n",
    "buggy": "def f(s):\n    return s[::-1] if len(s) < 4 else s\n",
}


@pytest.mark.slow
def test_agreeing_solutions_give_verified_tests_and_disagreeing_ones_are_dropped():
    reply = ('```python\ndef f(s):\n    """Reverse s."""\n    return s[::-1]\n\n'
             'assert f("hello") == "lhg"\nprint(f("ab"))\nf(7)\nprint(f(range(3)))\n```')
    ex = parse_exercise(reply, "f", 2, tests_from="consensus")
    assert ex.inputs == ["'hello'", "'ab'", "7", "range(3)"]
    own_code = ex.prompt + ex.completion
    sandbox = LazySandbox(Limits(timeout_s=2.0), workers=2)
    try:
        runs = {key: [outcome_of(r) for r in sandbox.run(
            [call_program(str(i), extra_code(ex, code), "f", a) for i, a in enumerate(ex.inputs)])]
            for key, code in SOLUTIONS.items()}
        own = [outcome_of(r) for r in sandbox.run([call_program(str(i), own_code, "f", a)
                                                    for i, a in enumerate(ex.inputs)])]
        assert own[0] == Outcome("value", "'olleh'") and own[2] == Outcome("raises", "TypeError")
        assert own[3].kind == "value" and own[3].text == "range(2, -1, -1)"

        good = decide(own, [runs["join"], runs["loop"]])
        assert good.agreed == [0, 1] and good.dropped == Counter({"raises": 1, "not-literal": 1})
        ex.test = consensus_tests([ex.inputs[i] for i in good.agreed], [own[i] for i in good.agreed])
        assert ex.test == "def check(candidate):\n    assert candidate('hello') == 'olleh'\n" \
                          "    assert candidate('ab') == 'ba'\n"
        assert "lhg" not in ex.test  # the teacher's asserted value is never used
        verdict = sandbox.run([program_of(ex, "v")])[0]
        assert verdict.status == "passed"

        bad = decide(own, [runs["join"], runs["buggy"]])  # buggy differs on 'hello' only
        assert bad.agreed == [1] and bad.dropped["disagree"] == 1
        missing = decide(own, [runs["join"], [None] * 4])  # an unusable solution agrees on nothing
        assert missing.agreed == [] and missing.dropped["disagree"] == 2
    finally:
        sandbox.close()


@pytest.mark.slow
def test_a_solution_that_loops_on_one_input_loses_only_that_input():
    code = "def f(n):\n    while n == 3:\n        pass\n    return n * 2\n"
    sandbox = LazySandbox(Limits(timeout_s=1.0), workers=2)
    try:
        out = [outcome_of(r) for r in sandbox.run([call_program(str(n), code, "f", str(n)) for n in (1, 3, 5)])]
    finally:
        sandbox.close()
    assert out[0] == Outcome("value", "2") and out[2] == Outcome("value", "10")
    assert out[1] == Outcome("failed", "timeout")


def test_consensus_needs_two_solutions():
    assert ExercisesConfig(tests_from="consensus").n_solutions == 3 and ExercisesConfig().n_solutions == 1
    with pytest.raises(ValueError, match="solutions >= 2"):
        ExercisesConfig(tests_from="consensus", solutions=1)


# -- end to end: the stage against a local HTTP teacher ----------------------------------------------

EXERCISE = '''```python
def {name}(s: str) -> str:
    """Return s reversed."""
    return {body}

{calls}
```
'''


def consensus_reply(prompt: str) -> str:
    """Exercise replies by name prefix; every other solution is a right one."""
    m = re.search(r"for `(\w+)\(", prompt)
    if m is None:
        name = re.search(r"def (\w+)\(", prompt).group(1)  # a request for another solution
        return f"```python\ndef {name}(s):\n    return ''.join(reversed(s))\n\nprint({name}('x'))\n```"
    name = m.group(1)
    calls = f'assert {name}("hello") == "lhg"\nprint({name}("ab"))\n{name}("")'
    if name.startswith("wrongcode"):
        return EXERCISE.format(name=name, body="s[::-1] + 'x'", calls=calls)
    if name.startswith("noinputs"):
        return EXERCISE.format(name=name, body="s[::-1]", calls="# done")
    return EXERCISE.format(name=name, body="s[::-1]", calls=calls)  # right code, a wrong assert


class ConsensusHandler(_Handler):
    @staticmethod
    def _completion(state: Any, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
        text = consensus_reply(prompt)
        return {"id": "c", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.slow
def test_stage_with_consensus_tests(monkeypatch, tmp_path, teacher_table):
    names = tmp_path / "names.txt"
    names.write_text("reverse_a(s: str)\nreverse_b(s: str)\nwrongcode_c(s: str)\nnoinputs_d(s: str)\n")
    srv = EchoServer(latency_s=0.0)
    srv._httpd.RequestHandlerClass = ConsensusHandler
    with srv:
        table = teacher_table(srv)
        monkeypatch.setenv(table["api_key_env"], "sk-synth-test")
        cfg = PipelineConfig.model_validate({
            "run": {"workers": 1, "seed": 1}, "teachers": {"t": table},
            "exercises": {"teacher": "t", "count": 4, "names_file": str(names), "tests_from": "consensus",
                          "min_tests": 2, "solution_max_tokens": 64, "generate_inputs": False,
                          "diversity": {"drop_near_duplicates": False}}})
        record = run_pipeline(cfg, tmp_path / "run")
        out = tmp_path / "run" / "exercises"
        kept = {r["entry_point"]: r for r in Dataset(out).iter_records()}
        rejected = {r["entry_point"]: r for r in Dataset(out / "rejected").iter_records()}
        assert set(kept) == {"reverse_a", "reverse_b"}
        assert rejected["wrongcode_c"]["reason"] == "disagree" and rejected["noinputs_d"]["reason"] == "no-test-inputs"
        test = kept["reverse_a"]["test"]
        assert "candidate('hello') == 'olleh'" in test and "candidate('ab') == 'ba'" in test and "lhg" not in test
        prov = json.loads(kept["reverse_a"]["provenance"])["synth"]
        c = prov["consensus"]
        assert (c["tests_from"], c["n_solutions"], c["inputs_found"], c["inputs_agreed"]) == ("consensus", 3, 3, 3)
        assert len(c["solutions"]) == 2 and all(s["status"] == "ok" and len(s["request_key"]) > 8
                                                for s in c["solutions"])
        assert prov["verification"]["status"] == "passed" and prov["verification"]["n_tests"] == 3

        # One exercise request per name, plus 2 more solutions for each of the 3 that had inputs.
        hits = srv.hits
        solution_hits = [h for h in hits if "Complete this Python function" in h.prompt]
        assert len(hits) == 4 + 2 * 3 and len(solution_hits) == 6
        assert all(h.body.get("max_tokens") == 64 for h in solution_hits)
        line = record["stages"]["exercises"]["line"]
        assert "-> 2 kept, " in line and "2 got consensus tests from 3 solutions" in line
        assert "inputs: 9 found, 6 agreed; dropped disagree 3" in line

        again = run_pipeline(cfg, tmp_path / "run")  # finished: nothing re-runs, nothing is sent
        assert len(srv.hits) == len(hits) and again["stages"]["exercises"]["line"] == line

        # With generated inputs, the reply without calls gets inputs from its signature (s: str), and the
        # agreeing solutions give their values: it is kept too.
        cfg = cfg.model_copy(update={"exercises": cfg.exercises.model_copy(update={"generate_inputs": True})})
        run_pipeline(cfg, tmp_path / "run2")
        kept = {r["entry_point"]: r for r in Dataset(tmp_path / "run2" / "exercises").iter_records()}
        assert set(kept) == {"reverse_a", "reverse_b", "noinputs_d"}
        c = json.loads(kept["noinputs_d"]["provenance"])["synth"]["consensus"]
        assert c["inputs_found"] == 8 and set(c["input_origins"]) == {"annotation"}
        assert "candidate('Hello World') == 'dlroW olleH'" in kept["noinputs_d"]["test"]
