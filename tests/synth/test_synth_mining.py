"""Exercises mined from a fixture module: which functions are candidates, and the verdict of running
each one in the real sandbox (kept with tests from execution, or rejected with its reason); then each
step of a mining round on its own (plan, probe, judge, verify, separate, finish), on typed candidates."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.synth.candidate import Candidate, split_rows
from textbooklm.synth.config import SeparationConfig
from textbooklm.synth.corpus_exercises import (
    finish_round,
    judge,
    judge_round,
    mine_round,
    observed_check,
    plan_round,
    probe_program,
    probe_round,
    read_probe,
    separate_round,
    verify_round,
)
from textbooklm.synth.exercises_stage import REJECTED_SCHEMA, SCHEMA
from textbooklm.synth.input_gen import GeneratedInput
from textbooklm.synth.mining import free_names, mine_functions
from textbooklm.synth.rounds import sample_id
from textbooklm.synth.separation import SeparationRun

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


# --- a mining round's steps, each alone (corpus_exercises.py: plan, probe, judge, verify, separate, finish) ---

CAPPED = '''def capped(value: int, unit: str = "m") -> int:
    """The value, capped at a thousand (unit is only a label)."""
    if value > 10 * 100:
        return 10 * 100
    return value
'''


def _parquet_roundtrip(rows: list[dict], schema: pa.Schema, path: Path) -> list[dict]:
    """Rows written as the exercises stage writes them, and read back (a row that does not fit fails here)."""
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return pq.read_table(path).to_pylist()


def test_plan_makes_every_documented_function_a_candidate_and_runs_nothing(tmp_path):
    files = [{"id": "f1", "text": fixture_text(), "path": "mining_module.py"},
             {"id": "bad", "text": "def broken(:\n", "path": "broken.py"}]
    cands, counts = plan_round(3, files, min_lines=3, max_lines=60, max_per_file=4, inputs_per_function=6, seed=0)
    # mining.py's rejections come already rejected, then the file's first four others; three over the cap.
    assert [(c.fields.get("entry_point") or c.mine.function.name, c.reason) for c in cands] == [
        ("read_first_line", "io"), ("roll", "randomness"), ("scaled", "uses-globals"), ("add_numbers", None),
        ("clamp", None), ("count_words", None), ("always_fails", None)]
    assert [c.index for c in cands] == list(range(7)) and all(c.round == 3 and c.request is None for c in cands)
    assert (counts["candidates"], counts["over-per-file-cap"], counts["unparsable-files"], counts["files"]) == (
        4, 3, 1, 2)
    add = cands[3]
    assert [i.origin for i in add.mine.inputs[:2]] == ["doctest", "doctest"] and len(add.mine.inputs) == 6
    assert add.notes == {"stage": "exercises", "source": "corpus", "round": 3,
                         "mined": add.mine.function.provenance()}
    assert add.mine.tests == [] and add.parsed is None and not add.fields  # nothing judged, no row yet
    again, _ = plan_round(3, files, min_lines=3, max_lines=60, max_per_file=4, inputs_per_function=6, seed=0)
    assert [[i.args for i in c.mine.inputs] for c in again[3:]] == [[i.args for i in c.mine.inputs] for c in cands[3:]]

    kept, rejected = split_rows(cands[:3])
    assert kept == []
    back = _parquet_roundtrip(rejected, REJECTED_SCHEMA, tmp_path / "r.parquet")
    first = back[0]
    assert first["text"].startswith("def read_first_line(path):") and (first["prompt"], first["test"]) == ("", "")
    assert first["id"] == sample_id(f"f1:read_first_line:{first['text']}") and first["detail"] == "calls open()"
    assert json.loads(first["provenance"]) == {"synth": {
        "stage": "exercises", "source": "corpus", "round": 3,
        "mined": {"source_path": "mining_module.py", "source_id": "f1", "function": "read_first_line", "lineno": 51}}}


@pytest.mark.slow
def test_probe_and_judge_steps_give_each_live_candidate_tests_or_a_reason(pool):
    files = [{"id": "f1", "text": fixture_text(), "path": "mining_module.py"}]
    cands, _ = plan_round(0, files, min_lines=3, max_lines=60, max_per_file=20, inputs_per_function=8, seed=0)
    live = [c for c in cands if c.alive]
    probes = probe_round(cands, pool, 0.2)  # the statically rejected ones are not run
    assert len(probes) == len(live) == 7
    counts = judge_round(cands, probes, 3)
    by = {c.mine.function.name: c for c in live}
    assert {n: c.reason for n, c in by.items()} == {
        "add_numbers": None, "clamp": None, "count_words": None, "always_fails": "raises",
        "remember": "non-deterministic", "spin": "too-slow", "half": "doctest-failed"}
    assert counts["generated"] == sum(len(c.mine.inputs) for c in live)
    assert counts["tests"] == sum(len(c.mine.tests) for c in live if c.alive)
    add = by["add_numbers"]
    assert list(add.notes) == ["stage", "source", "round", "mined", "inputs", "doctest", "tests"]
    assert add.notes["doctest"] == [0, 2] and add.notes["tests"] is add.mine.tests and not add.fields
    assert {"args": "2, 3", "origin": "doctest", "expected": "5"} in add.mine.tests
    # A rejected one has its row: no tests, so an empty check; its id names its file and function.
    fails = by["always_fails"]
    assert fails.fields["test"] == "" and fails.fields["id"] == sample_id(f"f1:always_fails:{fails.fields['text']}")
    assert fails.detail == "raised on all 8 inputs"
    assert "inputs" not in cands[0].notes and cands[0].reason == "io"  # a static rejection is left alone


@pytest.mark.slow
def test_verify_runs_the_stored_exercise_and_rejects_one_whose_tests_fail(pool):
    files = [{"id": "f1", "text": fixture_text(), "path": "mining_module.py"}]
    cands, _ = plan_round(0, files, min_lines=3, max_lines=60, max_per_file=3, inputs_per_function=8, seed=0)
    judge_round(cands, probe_round(cands, pool, 0.2), 3)
    add, clamp, words = [c for c in cands if c.alive]
    clamp.mine.tests[0] = {**clamp.mine.tests[0], "expected": "-999"}  # a wrong expected value: must fail
    assert verify_round(cands, pool) == [add, words]
    assert clamp.reason == "tests-failed" and "AssertionError" in clamp.detail
    assert clamp.fields["test"] == clamp.mine.check and "== -999" in clamp.fields["test"]
    v = add.notes["verification"]
    assert v["status"] == "passed" and v["n_tests"] == len(add.mine.tests) and add.ex.test == add.mine.check


def _verified(pool: SandboxPool, text: str) -> list[Candidate]:
    cands, _ = plan_round(0, [{"id": "c", "text": text, "path": "capped.py"}], min_lines=3, max_lines=60,
                          max_per_file=5, inputs_per_function=16, seed=0)
    judge_round(cands, probe_round(cands, pool, 0.25), 2)
    return verify_round(cands, pool)


@pytest.mark.slow
def test_separate_rejects_weak_tests_or_grows_them_in_place_and_finish_makes_the_rows(pool, tmp_path):
    with SandboxPool(Limits(timeout_s=1.0, memory_mb=1024), workers=2) as candidates:
        weak = _verified(pool, CAPPED)
        separate_round(weak, SeparationRun(SeparationConfig(extra_inputs=0), candidates, 0), pool,
                       per_call_s=0.25, seed=0)
        strong = _verified(pool, CAPPED)
        n_before = len(strong[0].mine.tests)
        separate_round(strong, SeparationRun(SeparationConfig(), candidates, 0), pool, per_call_s=0.25, seed=0)
    (w,), (s,) = weak, strong
    assert w.reason == "weak-tests" and "return value" in w.detail
    assert s.alive and len(s.mine.tests) > n_before  # strengthened: an input past the cap was added
    assert s.notes["verification"]["n_tests"] == len(s.mine.tests)
    assert s.notes["separation"]["strengthened"]["tests_added"] == len(s.mine.tests) - n_before

    finish_round(weak + strong)
    kept, rejected = split_rows(weak + strong)
    kept = _parquet_roundtrip(kept, SCHEMA, tmp_path / "k.parquet")
    rejected = _parquet_roundtrip(rejected, REJECTED_SCHEMA, tmp_path / "r.parquet")
    assert kept[0]["id"] == sample_id(kept[0]["text"]) and kept[0]["text"] == CAPPED
    assert kept[0]["test"] == observed_check(s.mine.tests) and "candidate(" in kept[0]["test"]
    prov = json.loads(kept[0]["provenance"])["synth"]
    assert list(prov) == ["stage", "source", "round", "mined", "inputs", "doctest", "tests", "verification",
                          "separation"]
    assert len(prov["tests"]) == len(s.mine.tests)
    assert rejected[0]["reason"] == "weak-tests" and rejected[0]["id"] == sample_id(f"c:capped:{CAPPED}")
