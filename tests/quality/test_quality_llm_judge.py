"""The LLM judge against a real OpenAI-compatible HTTP server on 127.0.0.1 (the teacher's echo server)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fakes.echo_server import EchoServer
from quality_fixtures import base_config, make_corpus_folder

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.quality.config import LLMJudgeConfig
from textbooklm.quality.llm_judge import judge_records
from textbooklm.quality.prompts import load_template
from textbooklm.store import Dataset
from textbooklm.teacher import TeacherConfig, build_teacher

KEY_ENV = "TEXTBOOKLM_TEST_QUALITY_KEY"
# The echo server's first-token distribution over the digits (weights 0.05 0.05 0.15 0.4 0.2 0.05):
EXPECTED_GRADE = (1 * 0.05 + 2 * 0.15 + 3 * 0.4 + 4 * 0.2 + 5 * 0.05) / 0.9


@pytest.fixture
def server(monkeypatch) -> Iterator[EchoServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test-quality")
    with EchoServer() as srv:
        yield srv


def teacher_cfg(server: EchoServer) -> dict:
    return {"backend": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, "api_key_env": KEY_ENV,
            "max_retries": 0, "timeout_s": 5.0}


def test_choices_generate_fallback_and_failures(server, tmp_path):
    teacher = build_teacher(TeacherConfig(**teacher_cfg(server)), tmp_path / "cache", stage="judge")
    texts = ["def add(a, b):\n    return a + b\n", "x = 1\n" * 2000]
    # fineweb-edu with logprobs: the expected value over the digit probabilities
    edu = LLMJudgeConfig(prompt="fineweb-edu", max_file_tokens=64)
    out = judge_records(teacher, texts, edu, load_template(edu))
    assert [o["how"] for o in out] == ["choices", "choices"]
    assert out[0]["raw"] == pytest.approx(EXPECTED_GRADE, abs=1e-3)
    assert out[0]["score"] == pytest.approx(EXPECTED_GRADE / 5, abs=1e-3)
    assert out[1]["cut"] and not out[0]["cut"]
    # 2000 lines cut to 64 tokens, 4 a line; no tokenizer known here, so 1/1.5 of them as margin
    assert max(h.prompt.count("x = 1") for h in server.hits) == 10
    # phi1 labels (high/low) are not among the server's top tokens: falls back to a reply, which the
    # echo server fills with the prompt's first words: no verdict in it -> counted as unparseable
    phi1 = LLMJudgeConfig(prompt="phi1")
    out = judge_records(teacher, texts[:1], phi1, load_template(phi1))
    assert out[0]["how"] == "generate" and out[0]["score"] is None and out[0]["reason"] == "no-score"
    assert out[0]["path"] == "generate after no logprobs" and "no_choice_logprobs" in out[0]["fallback"]
    # a custom template whose reply (the echo) ends in a parseable verdict
    tpl = tmp_path / "t.txt"
    tpl.write_text("Educational score: 4 for {code}")
    gen = LLMJudgeConfig(prompt=str(tpl), scale="0-5", method="generate")
    out = judge_records(teacher, texts[:1], gen, load_template(gen))
    assert out[0] == {"score": 0.8, "raw": 4.0, "reason": None, "how": "generate", "reply": out[0]["reply"],
                      "path": "generate", "cut": False}
    # a request that fails (server error, no retries) is kept with its reason
    server.inject("500", count=1)
    out = judge_records(teacher, ["def other():\n    pass\n"], edu, load_template(edu))
    assert out[0]["score"] is None and out[0]["reason"].startswith("request-failed: server_error")
    # the cache: judging the same files again sends nothing
    before = len(server.hits)
    judge_records(teacher, texts, edu, load_template(edu))
    assert len(server.hits) == before
    teacher.close()


def test_judge_stage_with_two_judges(server, tmp_path):
    folder = make_corpus_folder(tmp_path / "code", n_good=12, n_bad=12)
    raw = base_config(folder, teachers={"echo": teacher_cfg(server)}, judge={
        "judges": ["heuristic", "llm"], "teacher": "echo", "label_from": "llm",
        "llm": {"prompt": "fineweb-edu", "sample": 10},
    })
    server.inject("500", count=1)  # one record's request fails: rejected with its reason
    run_pipeline(parse_config(raw), tmp_path / "run")
    out = Dataset(tmp_path / "run" / "judge")
    rows = list(out.iter_records())
    rejected = list(Dataset(tmp_path / "run" / "judge" / "rejected").iter_records())
    assert len(rows) == 9 and len(rejected) == 1
    assert rejected[0]["reason"] == "unjudged" and "server_error" in rejected[0]["detail"]
    for r in rows:
        prov = json.loads(r["provenance"])
        assert "corpus" in prov and prov["judge"]["label_from"] == "llm"
        assert prov["judge"]["llm"]["model"] == "gpt-4o-mini" and prov["judge"]["llm"]["prompt"] == "fineweb-edu"
        assert r["score"] == r["llm_score"] and r["heuristic_score"] is not None
        assert r["label"] == int(r["score"] >= 0.6)
    agree = json.loads((tmp_path / "run" / "judge" / "agreement.json").read_text())
    assert agree["n"] == 9
    summary = out.manifest["summary"]
    assert "1 unscored: request-failed 1" in summary["line"] and "agreement on 9" in summary["line"]
    assert summary["heuristic"]["n"] == 24
    # every record's path is counted (the failed one was on the choices path), with the server's words
    assert summary["llm"]["paths"] == {"choices": 10} and "paths: choices 10" in summary["line"]
    # in = the label judge's sample: 9 labelled (kept) + 1 unjudged (dropped), as the ledger counted them
    counts = summary["counts"]
    assert (counts["in"], counts["kept"], counts["dropped"]) == (10, 9, 1)
    assert counts["dropped_by_reason"] == {"unjudged": 1} and summary["unjudged"] == {"request-failed": 1}
    assert summary["line"].startswith("judge: 10 files sampled for llm labels -> 9 kept, 1 dropped (unjudged 1); ")
    assert summary["labelled"] == 9 and summary["positives"] == counts["counters"]["positives"]
    assert "first: request-failed: server_error: http_500: internal error" in summary["line"]
    # re-running the unchanged config sends nothing and changes nothing
    hits = len(server.hits)
    run_pipeline(parse_config(raw), tmp_path / "run")
    assert len(server.hits) == hits


def test_judge_stage_needs_a_known_teacher(tmp_path):
    folder = make_corpus_folder(tmp_path / "code", n_good=3, n_bad=3)
    raw = base_config(folder, judge={"judges": ["llm"], "label_from": "llm", "teacher": "nope"})
    with pytest.raises(ValueError, match=r"judge.teacher: no teacher named 'nope': add \[teachers.nope\]"):
        run_pipeline(parse_config(raw), tmp_path / "run")  # refused by the run check, before anything runs
    assert not (tmp_path / "run" / "corpus").exists()
