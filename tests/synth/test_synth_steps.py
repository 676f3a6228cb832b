"""Each step of a synth round on its own: plan, ask, parse, verify (own tests, agreement, separation),
the textbooks' screen and code run, and the dedup step's ledger. A real local HTTP teacher (scripted
replies), the real sandbox and real Parquet; teacher results are built as data where a step only reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from textbooklm.lazy_services import LazySandbox, LazyTeacher
from textbooklm.ledger import StageLedger
from textbooklm.synth.candidate import Candidate, ask, split_rows
from textbooklm.synth.config import DiversityConfig, ExercisesConfig, TextbooksConfig
from textbooklm.synth.corpus_exercises import Mined
from textbooklm.synth.exercise_verify import ExerciseTools, agree, separate, verify_own
from textbooklm.synth.exercises_stage import REJECTED_SCHEMA, SCHEMA, check_round, parse_round, plan_round
from textbooklm.synth.mining import mine_functions
from textbooklm.synth.names import FunctionName
from textbooklm.synth.prompts import EXERCISE_FIELDS, SOLUTION_FIELDS, TEXTBOOK_FIELDS, PromptTemplate
from textbooklm.synth.rounds import RoundStore, sample_id
from textbooklm.synth.seeds import Seed
from textbooklm.synth.separation import SeparationRun, candidate_limits
from textbooklm.synth.textbooks_stage import plan_round as plan_textbooks
from textbooklm.synth.textbooks_stage import run_code, screen_round
from textbooklm.teacher import Result, TeacherConfig

GOOD = '''```python
def {name}(items):
    """Return the number of items."""
    return len(items)

assert {name}([1, 2, 3]) == 3
assert {name}([]) == 0
```
'''
WRONG = GOOD.replace("return len(items)", "return len(items) + 1")
NO_TESTS = GOOD.split("assert")[0] + "```\n"
WEAK = '''```python
def {name}(n):
    """Return n, capped at a thousand."""
    if n > 1000:
        return 1000
    return n

assert {name}(3) == 3
assert {name}(5) == 5
```
'''
FNS = [FunctionName("count_a", "items: list", "lists", "user"), FunctionName("count_b", "items: list", "lists", "user"),
       FunctionName("weak_cap", "n", "numbers", "user")]


def _seeds(n: int) -> list[Seed]:
    return [Seed(i, "(from the function name)", "students", "", ["owl"] if i % 2 else []) for i in range(n)]


def _reply(template: str, name: str) -> str:
    return template.format(name=name)


@pytest.fixture
def tools(scripted_server, teacher_table, tmp_path):
    cfg = ExercisesConfig.model_validate({"teacher": "t", "count": 3, "min_tests": 2, "sandbox": {"timeout_s": 2.0}})
    teacher = LazyTeacher(TeacherConfig.model_validate(teacher_table(scripted_server)), tmp_path / "cache",
                          "exercises", "t")
    sandbox = LazySandbox(cfg.sandbox, workers=2)
    candidates = LazySandbox(candidate_limits(cfg.separation, cfg.sandbox), workers=2)
    t = ExerciseTools(cfg, teacher, sandbox, PromptTemplate.load("exercise", None, EXERCISE_FIELDS),
                      PromptTemplate.load("solution", None, SOLUTION_FIELDS), 3,
                      SeparationRun(cfg.separation, candidates, 3))
    yield t
    sandbox.close()
    candidates.close()
    teacher.close()


def _answered(tools: ExerciseTools, replies: list[str | None]) -> list[Candidate]:
    """Planned candidates whose replies are given (None: the teacher failed)."""
    cands = plan_round(0, FNS[:len(replies)], _seeds(len(replies)), tools.cfg, tools.template, 3, 0)
    for c, text in zip(cands, replies, strict=True):
        c.reply = Result(key="k", text=text or "", error=None if text is not None else "http-500: boom",
                         tokens_out=7, finish_reason="stop")
    return cands


def test_plan_builds_one_request_per_name_deterministically_and_sends_nothing(tools, scripted_server):
    a = plan_round(2, FNS, _seeds(3), tools.cfg, tools.template, 3, 10)
    b = plan_round(2, FNS, _seeds(3), tools.cfg, tools.template, 3, 10)
    assert [c.index for c in a] == [10, 11, 12] and all(c.round == 2 and c.alive for c in a)
    assert [c.request for c in a] == [c.request for c in b]  # same seed, same requests (resume re-plans them)
    assert len({c.request.seed for c in a}) == 3 and "`count_a(items: list)`" in a[0].prompt
    assert not scripted_server.hits and not tools.ask.built and all(c.reply is None for c in a)


def test_ask_gives_each_candidate_its_reply_and_a_second_ask_is_served_from_the_cache(tools, scripted_server):
    cands = ask(tools.ask, plan_round(0, FNS, _seeds(3), tools.cfg, tools.template, 3, 0))
    assert [c.reply.ok for c in cands] == [True] * 3
    assert "def count_a(" in cands[0].reply.text and "def weak_cap(" in cands[2].reply.text
    hits = len(scripted_server.hits)
    again = ask(tools.ask, plan_round(0, FNS, _seeds(3), tools.cfg, tools.template, 3, 0))
    assert len(scripted_server.hits) == hits and [c.reply.text for c in again] == [c.reply.text for c in cands]


def test_parse_keeps_exercises_and_names_why_a_reply_is_none(tools):
    cands = _answered(tools, [_reply(GOOD, "count_a"), _reply(NO_TESTS, "count_b"), None])
    parsed = parse_round(cands, tools)
    assert parsed == [cands[0]] and cands[0].alive and cands[0].ex.n_tests == 2
    assert (cands[1].reason, cands[2].reason) == ("no-tests", "teacher-error")
    assert cands[2].detail == "http-500: boom"
    notes = cands[0].notes
    assert notes["teacher"]["request_key"] == tools.ask.key(cands[0].request) and notes["index"] == 0
    assert notes["seed"] == {"audience": "students", "words": []} and notes["name"]["name"] == "count_a"


@pytest.mark.slow
def test_verify_steps_reject_failing_disagreeing_and_weak_exercises(tools):
    cands = _answered(tools, [_reply(GOOD, "count_a"), _reply(WRONG, "count_b"), _reply(WEAK, "weak_cap")])
    parsed = parse_round(cands, tools)
    passed = verify_own(parsed, tools.sandbox)
    assert passed == [cands[0], cands[2]] and cands[1].reason == "tests-failed"
    assert cands[1].notes["verification"]["status"] == "failed" and "AssertionError" in cands[1].detail
    agree(passed, tools)  # solutions = 1: nothing asked, nothing noted
    assert "agreement" not in cands[0].notes
    separate(parsed, tools.separation)
    assert cands[0].alive and cands[0].notes["separation"]["mutation_score"] == 1.0
    assert cands[2].reason == "weak-tests" and "return n" in cands[2].detail
    assert "separation" not in cands[1].notes  # a rejected candidate is not checked again

    tools.cfg = tools.cfg.model_copy(update={"solutions": 2})
    again = _answered(tools, [_reply(GOOD, "count_a")])
    agree(verify_own(parse_round(again, tools), tools.sandbox), tools)  # the scripted solution agrees
    assert again[0].notes["agreement"] == {"solutions": 2, "agreeing": 2, "failures": []}


@pytest.mark.slow
def test_check_round_turns_candidates_into_rows_and_a_marker(tools):
    cands = _answered(tools, [_reply(GOOD, "count_a"), _reply(WRONG, "count_b"), None])
    kept, rejected, marker = check_round(0, cands, tools)
    assert [r["entry_point"] for r in kept] == ["count_a"] and kept[0]["text"] == kept[0]["prompt"] + \
        kept[0]["completion"]
    assert kept[0]["id"] == sample_id(kept[0]["text"]) and "reason" not in kept[0]
    prov = json.loads(kept[0]["provenance"])["synth"]
    assert list(prov)[:3] == ["stage", "source", "round"] and prov["parse"]["n_tests"] == 2
    assert [r["reason"] for r in rejected] == ["tests-failed", "teacher-error"]
    assert json.loads(rejected[0]["provenance"])["synth"]["reply"] == rejected[0]["text"]
    assert rejected[1]["id"] == sample_id("exercises:2")  # no reply: an id from its place
    assert (marker["asked"], marker["parsed"], marker["passed_own_tests"], marker["kept"]) == (3, 2, 1, 1)
    assert marker["kept_seeds"] == [{"topic": "lists", "audience": "students", "words": []}]


def test_a_rejected_candidate_row_keeps_its_reason_and_a_short_detail():
    c = Candidate(round=0, index=4, seed=_seeds(1)[0], prompt="p", request=None)  # type: ignore[arg-type]
    c.fields = {"id": "x", "text": "t"}
    c.notes = {"stage": "exercises", "round": 0}
    kept, rejected = split_rows([c])
    assert kept == [{"id": "x", "text": "t", "provenance": '{"synth": {"stage": "exercises", "round": 0}}'}]
    c.reject("tests-failed", "x" * 900)
    kept, rejected = split_rows([c])
    assert not kept and rejected[0]["reason"] == "tests-failed" and len(rejected[0]["detail"]) == 500


def test_a_mined_candidate_is_a_candidate_without_request_and_a_teacher_one_has_no_mined_part():
    fn = mine_functions('def twice(x: int) -> int:\n    """Double x."""\n    y = 2 * x\n    return y\n', "t.py",
                        "f9")[0][0]
    c = Candidate.from_corpus(1, 0, Mined(fn))
    assert (c.seed, c.request, c.prompt, c.alive) == (None, None, "", True) and c.mine.function is fn
    assert c.mine.check == "def check(candidate):\n"  # no tests yet
    c.fields, c.notes = {"id": "i", "text": fn.code}, {"stage": "exercises", "mined": fn.provenance()}
    (row,), rejected = split_rows([c])
    assert not rejected and json.loads(row["provenance"])["synth"]["mined"]["function"] == "twice"
    with pytest.raises(ValueError, match="has no function name"):
        c.fn  # noqa: B018 - the property raises
    teacher = Candidate(round=0, index=2, seed=_seeds(1)[0], prompt="p", request=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidate 2 was not mined from the corpus"):
        teacher.mine  # noqa: B018


def test_textbook_screen_and_code_steps_without_a_sandbox():
    cfg = TextbooksConfig.model_validate({"teacher": "t", "count": 3, "run_code": False, "min_chars": 50})
    template = PromptTemplate.load("textbook", None, TEXTBOOK_FIELDS)
    seeds = [Seed(i, "Data structures > Lists", "students", "plain") for i in range(3)]
    cands = plan_textbooks(0, seeds, cfg, template, 3)
    texts = ["# Lists\n\n" + "Lists hold values in order. " * 4 + "\n\n```python\nprint([1, 2])\n```\n", "short", None]
    for c, text in zip(cands, texts, strict=True):
        c.reply = Result(key="k", text=text or "", error=None if text is not None else "timeout: slow",
                         finish_reason="stop")

    class Keys:  # the parse step reads who answered; a plain stand-in for the teacher's describe/key
        def describe(self):
            return {"name": "t", "backend": "openai", "model": "m"}

        def key(self, request):
            return "key"

    assert screen_round(cands, cfg, Keys(), template, None) == []  # no sandbox: no programs
    code = run_code(cands, [], cfg, None)
    assert cands[0].alive and cands[0].blocks[0]["status"] == "not-run" and code["python"] == 1
    assert (cands[1].reason, cands[2].reason) == ("too-short", "teacher-error")
    assert cands[0].fields["seed"] == json.dumps(seeds[0].to_json()) and cands[0].notes["code"]["python"] == 1


def _round_rows(texts: list[str]) -> list[dict]:
    return [{"id": sample_id(t), "prompt": "", "completion": "", "text": t, "entry_point": "f", "test": "",
             "provenance": json.dumps({"synth": {}})} for t in texts]


def test_dedup_records_each_round_once_in_the_ledger_and_is_idempotent(tmp_path: Path):
    store = RoundStore(tmp_path, SCHEMA, REJECTED_SCHEMA)
    bad = {**_round_rows(["broken"])[0], "reason": "tests-failed", "detail": "AssertionError"}
    store.write(0, _round_rows(["alpha one two three", "beta four five six"]), [bad], {"kept": 2})
    store.write(1, _round_rows(["alpha one two three", "gamma seven eight nine"]), [], {"kept": 2})
    ledger = StageLedger("exercises", tmp_path, "candidate exercises", REJECTED_SCHEMA)
    d = DiversityConfig(drop_near_duplicates=False)
    first = store.finish(2, d, ledger)
    assert (first["kept"], first["rejected"]) == (3, 2)
    assert first["rejected_by_reason"] == {"tests-failed": 1, "duplicate": 1}
    r1 = pq.read_table(tmp_path / "rejected" / "part-00001.parquet").to_pylist()
    assert [r["reason"] for r in r1] == ["duplicate"] and json.loads(r1[0]["provenance"])["synth"]["dedup"]
    parts = ledger.parts()
    assert [(p["key"], p["kept"], p["dropped"]) for p in parts] == [("part-00000.parquet", 2, 1),
                                                                   ("part-00001.parquet", 1, 1)]
    again = store.finish(2, d, ledger)  # a re-run after a kill: the same keys, nothing counted twice
    assert {k: again[k] for k in ("kept", "rejected")} == {"kept": 3, "rejected": 2}
    totals = ledger.totals()
    assert totals["in"] == totals["kept"] + totals["dropped"] == 5
    summary = ledger.finish(tail="t")
    assert summary["line"].startswith("exercises: 5 candidate exercises -> 3 kept, 2 dropped")
