"""Both stages end to end through the pipeline: a real HTTP teacher (scripted replies), the real sandbox,
real Parquet outputs; every rejection reason that the replies provoke, and the evals format."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from textbooklm.code_tasks import solution_program
from textbooklm.config import PipelineConfig
from textbooklm.pipeline import run_pipeline
from textbooklm.problems import read_problems_jsonl
from textbooklm.sandbox import Limits, Program, run_programs
from textbooklm.store import Dataset

pytestmark = pytest.mark.slow


@pytest.fixture
def config(teacher_table):
    def make(server, **sections) -> PipelineConfig:
        return PipelineConfig.model_validate(
            {"run": {"workers": 1, "seed": 3}, "teachers": {"t": teacher_table(server)}, **sections}
        )

    return make


def test_exercises_stage_verifies_rejects_and_writes_the_problems_file(scripted_server, tmp_path, config):
    cfg = config(scripted_server, exercises={"teacher": "t", "count": 12, "per_round": 5, "min_tests": 2,
                                              "sandbox": {"timeout_s": 2.0}})
    record = run_pipeline(cfg, tmp_path)
    out = tmp_path / "exercises"
    kept, rejected = Dataset(out), Dataset(out / "rejected")
    assert kept.num_rows + rejected.num_rows == 12
    reasons = Counter(rejected.column("reason"))
    assert set(reasons) <= {"tests-failed", "no-tests", "near-duplicate", "duplicate"}
    assert reasons["tests-failed"] >= 1 and reasons["no-tests"] >= 1 and kept.num_rows >= 1

    rows = list(kept.iter_records())
    for r in rows:
        assert r["text"] == r["prompt"] + r["completion"]
        assert r["prompt"].rstrip().endswith('"""') and f"def {r['entry_point']}(" in r["prompt"]
        prov = json.loads(r["provenance"])["synth"]
        assert prov["verification"]["status"] == "passed" and prov["teacher"]["model"] == "scripted"
        assert prov["name"]["name"] == r["entry_point"] and len(prov["prompt_hash"]) == 16
    for r in rejected.iter_records():
        prov = json.loads(r["provenance"])["synth"]
        if r["reason"] == "tests-failed":
            assert prov["verification"]["status"] == "failed" and "AssertionError" in r["detail"]
        assert prov["reply"] == r["text"]

    problems = read_problems_jsonl(out / "problems.jsonl")
    assert sorted(p.entry_point for p in problems) == sorted(r["entry_point"] for r in rows)
    # The evals' own way of running a completion passes every kept exercise's canonical solution.
    results = run_programs([Program(id=p.task_id, code=solution_program(p, p.canonical_solution or ""),
                                    test=p.test, entry_point=p.entry_point) for p in problems], Limits(), workers=1)
    assert all(r.passed for r in results)

    line = record["stages"]["exercises"]["line"]
    assert line.startswith(f"exercises: 12 candidate exercises -> {kept.num_rows} kept, {rejected.num_rows} dropped")
    assert "; 12 teacher replies, 0 documented corpus functions;" in line
    stats = record["stages"]["exercises"]["stats"]
    assert (stats["in"], stats["kept"], stats["dropped"]) == (12, kept.num_rows, rejected.num_rows)
    assert stats["dropped_by_reason"] == dict(reasons)
    assert f"tests-failed {reasons['tests-failed']}" in line
    div = json.loads((out / "diversity.json").read_text())
    assert div["overall"]["coverage"]["names"]["available"] == 12 and len(div["rounds"]) == 3

    hits = len(scripted_server.hits)
    again = run_pipeline(cfg, tmp_path)  # finished: nothing re-runs, nothing is sent
    assert len(scripted_server.hits) == hits and again["stages"]["exercises"]["line"] == line


def test_agreement_and_timeouts(scripted_server, tmp_path, config):
    names = tmp_path / "names.txt"
    names.write_text("slow_count(items: list)\ncount_a(items: list)\ncount_b(items: list)\n")
    cfg = config(scripted_server, exercises={"teacher": "t", "count": 3, "names_file": str(names), "solutions": 2,
                                              "min_tests": 2, "sandbox": {"timeout_s": 1.0}})
    run_pipeline(cfg, tmp_path)
    out = tmp_path / "exercises"
    rejected = {r["entry_point"]: r for r in Dataset(out / "rejected").iter_records()}
    assert rejected["slow_count"]["reason"] == "timeout"
    for r in Dataset(out).iter_records():
        agreement = json.loads(r["provenance"])["synth"]["agreement"]
        assert agreement == {"solutions": 2, "agreeing": 2, "failures": []}
    solution_hits = [h for h in scripted_server.hits if "Complete this Python function" in h.prompt]
    assert len(solution_hits) == Dataset(out).num_rows + sum(
        r["reason"] == "disagree" for r in rejected.values())


def test_a_teacher_exercise_whose_tests_return_x_passes_is_rejected_as_weak(scripted_server, tmp_path, config):
    names = tmp_path / "names.txt"
    names.write_text("weak_cap(n)\n")
    cfg = config(scripted_server, exercises={"teacher": "t", "count": 1, "names_file": str(names), "min_tests": 2})
    record = run_pipeline(cfg, tmp_path)
    rejected = list(Dataset(tmp_path / "exercises" / "rejected").iter_records())
    assert [r["reason"] for r in rejected] == ["weak-tests"] and Dataset(tmp_path / "exercises").num_rows == 0
    assert "return n" in rejected[0]["detail"]
    sep = json.loads(rejected[0]["provenance"])["synth"]["separation"]
    assert sep["trivial_passed"] == ["return n"] and sep["mutants"] >= 1
    assert json.loads(rejected[0]["provenance"])["synth"]["verification"]["status"] == "passed"
    assert "1 rejected as weak-tests" in record["stages"]["exercises"]["line"]


def test_textbooks_stage_runs_code_blocks_and_drops_failing_ones(scripted_server, tmp_path, config):
    tpl = tmp_path / "tpl.txt"
    tpl.write_text('Write about "$topic" for $audience as a $style.$words_line\n')
    fail_tpl = tmp_path / "fail.txt"
    fail_tpl.write_text('Write about "$topic" (fail) for $audience.\n')
    cfg = config(scripted_server, textbooks={"teacher": "t", "count": 5, "per_round": 2, "template": str(tpl),
                                              "diversity": {"drop_near_duplicates": False}})
    record = run_pipeline(cfg, tmp_path / "a")
    rows = list(Dataset(tmp_path / "a" / "textbooks").iter_records())
    assert len(rows) == 5
    for r in rows:
        prov = json.loads(r["provenance"])["synth"]
        seed = json.loads(r["seed"])
        assert prov["seed"] == seed and seed["topic"] and len(seed["words"]) == 2
        code = prov["code"]
        assert (code["python"], code["runnable"], code["passed"], code["failed"]) == (2, 2, 2, 0)
        assert [b["status"] for b in code["results"]] == ["passed", "passed"]  # block 2 uses block 1's `total`
    line = record["stages"]["textbooks"]["line"]
    assert ("textbooks: 5 textbooks asked -> 5 kept, 0 dropped; python blocks 10: 10 parse, 10 runnable, "
            "10 ran ok") in line
    div = json.loads((tmp_path / "a" / "textbooks" / "diversity.json").read_text())
    assert div["overall"]["coverage"]["audiences"]["used"] >= 3 and div["overall"]["coverage"]["topics"]["used"] == 5
    # The scripted replies differ only in their topic line: the accounting must call them near duplicates.
    assert div["overall"]["near_duplicate_rate"] >= 0.6 and "near-dup rate 80%" in line
    assert div["overall"]["top_openings"][0][0].startswith("# About ")

    # The same replies with a failing block: kept with the failure recorded, or rejected when asked to.
    cfg = config(scripted_server, textbooks={"teacher": "t", "count": 3, "template": str(fail_tpl),
                                              "drop_failing_code": True})
    run_pipeline(cfg, tmp_path / "b")
    rej = list(Dataset(tmp_path / "b" / "textbooks" / "rejected").iter_records())
    assert Counter(r["reason"] for r in rej)["code-failed"] >= 1
    failed = next(r for r in rej if r["reason"] == "code-failed")
    assert "block 2: failed: ValueError" in failed["detail"]
    assert Dataset(tmp_path / "b" / "textbooks").num_rows + len(rej) == 3


def test_a_stub_only_textbook_block_is_not_counted_as_run(scripted_server, tmp_path, config):
    tpl = tmp_path / "stubs.txt"
    tpl.write_text('Write about "$topic" (stubs) for $audience.\n')
    cfg = config(scripted_server, textbooks={"teacher": "t", "count": 2, "template": str(tpl),
                                              "diversity": {"drop_near_duplicates": False}})
    record = run_pipeline(cfg, tmp_path / "s")
    for r in Dataset(tmp_path / "s" / "textbooks").iter_records():
        code = json.loads(r["provenance"])["synth"]["code"]
        assert [b["status"] for b in code["results"]] == ["passed", "passed", "passed"]  # the sandbox's verdicts
        assert [b["exercised"] for b in code["results"]] == [True, True, False]
        assert code["results"][2]["not_exercised"] == "defines load but nothing calls it"
        assert (code["runnable"], code["passed"], code["defined_only"]) == (3, 2, 1)
    assert "6 runnable, 4 ran ok executing their code, 2 only define code nothing calls" in \
        record["stages"]["textbooks"]["line"]


def test_cli_runs_one_stage_with_overrides(scripted_server, teacher_table, tmp_path):
    from typer.testing import CliRunner

    from textbooklm.cli import app

    t = teacher_table(scripted_server)
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        "[run]\nworkers = 1\n\n[teachers.t]\n" + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in t.items()) + '\n[exercises]\nteacher = "t"\ncount = 40\n'
    )
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["synth", "exercises", "--out", str(out), "--config", str(toml), "--count", "3",
                                   "--min-tests", "1"])
    assert res.exit_code == 0, res.output
    assert Dataset(out / "exercises").num_rows + Dataset(out / "exercises" / "rejected").num_rows == 3
    res = CliRunner().invoke(app, ["synth", "textbooks", "--out", str(out), "--teacher", "nope"])
    assert res.exit_code != 0 and "nope" in res.output


def test_round_store_rejects_a_teacher_reply_with_a_lone_surrogate(tmp_path):
    """A teacher's JSON reply may hold "\\ud800"; the round is written, that record rejected."""
    from textbooklm.store import Dataset
    from textbooklm.synth.rounds import RoundStore
    from textbooklm.synth.textbooks_stage import REJECTED_SCHEMA, SCHEMA

    store = RoundStore(tmp_path, SCHEMA, REJECTED_SCHEMA)
    kept = [{"id": "a", "text": "fine", "seed": "{}", "provenance": "{}"},
            {"id": "b", "text": "emoji half \ud83d", "seed": "{}", "provenance": "{}"}]
    result = {"kept": 2}
    store.write(0, kept, [], result)
    assert result["kept"] == 1
    good, rejected = store.read(0)
    assert [r["id"] for r in good] == ["a"]
    assert rejected[0]["reason"] == "invalid-unicode" and rejected[0]["text"] == "emoji half \\ud83d"
    from textbooklm.synth.config import DiversityConfig

    summary = store.finish(1, DiversityConfig(drop_near_duplicates=False))
    assert summary["rejected_by_reason"] == {"invalid-unicode": 1}
    assert Dataset(tmp_path).num_rows == 1


def test_the_next_rounds_requests_are_in_flight_while_a_round_is_checked(scripted_server, tmp_path, config):
    """Round 1's requests reach the server before round 0 is checked and written, and round 0's check does
    not wait for round 1's replies (2 s each here); with pipeline = false, round 1 is asked only after."""
    scripted_server.state.latency_s = 2.0
    for pipeline in (True, False):
        out = tmp_path / f"p{pipeline}"
        n_hits = len(scripted_server.hits)
        cfg = config(scripted_server, textbooks={"teacher": "t", "count": 4, "per_round": 2, "pipeline": pipeline})
        run_pipeline(cfg, out)
        hits = scripted_server.hits[n_hits:]
        marker0 = (out / "textbooks" / "_work" / "markers" / "round-00000.json").stat().st_mtime
        round1 = sorted(h.t for h in hits)[2:4]
        if pipeline:
            assert max(round1) < marker0 < min(round1) + 2.0, (round1, marker0)
        else:
            assert min(round1) > marker0
