"""Textbooks judged by the run's LLM judge (``[textbooks] judge = true``), through the pipeline.

The teacher is the scripted server on 127.0.0.1; when the judge asks for label logprobs it answers
with a distribution decided by the textbook's topic line, so the test knows which textbooks the
judge rates high, low, or cannot rate (no logprobs and an unparsable reply: ``judge-failed``).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.echo_server import EchoServer

from textbooklm.config import PipelineConfig
from textbooklm.pipeline import run_pipeline
from textbooklm.run import stage_hashes
from textbooklm.run_check import check_run
from textbooklm.store import Dataset

pytestmark = pytest.mark.slow


def verdict_for(prompt: str) -> str:
    """What the scripted judge thinks of the text in a judge prompt: high, low, or none (no logprobs)."""
    topic = re.search(r"# About (.*)", prompt)
    if topic is None:
        return "high"  # a corpus file, judged by the judge stage itself
    return ("high", "low", "none")[zlib.crc32(topic.group(1).encode()) % 3]


def judging_handler(scripted: type) -> type:
    """The synth tests' scripted handler, answering the judge's label-logprob requests as verdict_for says."""

    class JudgingHandler(scripted):
        @staticmethod
        def _completion(state: Any, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
            reply = scripted._completion(state, body, logprobs_ok)
            prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
            if body.get("logprobs") and "educational value" in prompt and verdict_for(prompt) != "none":
                high = 0.9 if verdict_for(prompt) == "high" else 0.1
                top = [{"token": t, "logprob": math.log(p), "bytes": None}
                       for t, p in sorted((("high", high), ("low", 1 - high)), key=lambda tp: -tp[1])]
                reply["choices"][0]["logprobs"] = {"content": [dict(top[0], top_logprobs=top)]}
            return reply

    return JudgingHandler


@pytest.fixture
def judging_server(scripted_server: EchoServer) -> Iterator[EchoServer]:
    scripted_server._httpd.RequestHandlerClass = judging_handler(scripted_server._httpd.RequestHandlerClass)
    yield scripted_server


def _recipe(server: EchoServer, teacher_table, corpus: Path, **textbooks: Any) -> PipelineConfig:
    for i in range(3):
        (corpus / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(6)))
    return PipelineConfig.model_validate({
        "run": {"workers": 1, "seed": 3},
        "teachers": {"t": teacher_table(server)},
        "corpus": {"sources": [{"kind": "folder", "path": str(corpus)}]},
        "judge": {"judges": ["heuristic", "llm"], "teacher": "t", "llm": {"sample": 2, "prompt": "phi1"}},
        "textbooks": {"teacher": "t", "count": 9, "per_round": 5, "top_p": 0.9,
                      "diversity": {"drop_near_duplicates": False}, **textbooks},
    })


def test_judged_textbooks_keep_the_high_and_name_the_low_and_the_unscored(judging_server, teacher_table, tmp_path):
    (tmp_path / "src").mkdir()
    cfg = _recipe(judging_server, teacher_table, tmp_path / "src", judge=True)
    record = run_pipeline(cfg, tmp_path / "run")
    kept = list(Dataset(tmp_path / "run" / "textbooks").iter_records())
    rejected = list(Dataset(tmp_path / "run" / "textbooks" / "rejected").iter_records())
    assert len(kept) + len(rejected) == 9
    expected = Counter(verdict_for(r["text"]) for r in kept + rejected)
    assert expected["high"] and expected["low"] and expected["none"], expected  # the seed gives all three
    for r in kept:
        judge = json.loads(r["provenance"])["synth"]["judge"]
        assert verdict_for(r["text"]) == "high" and judge["score"] >= judge["threshold"] == 0.5
        assert judge["prompt"] == "phi1" and judge["path"] == "choices"
    reasons = {verdict_for(r["text"]): r["reason"] for r in rejected}
    assert reasons == {"low": "low-educational-value", "none": "judge-failed"}
    low = next(r for r in rejected if r["reason"] == "low-educational-value")
    assert re.search(r"judge score 0\.10 < 0\.50 \(phi1 prompt, scripted\)", low["detail"])
    line = record["stages"]["textbooks"]["line"]
    assert f"{len(kept)} kept" in line and "judged by the run's llm judge (phi1 prompt, scripted)" in line
    assert f"low-educational-value {expected['low']}" in line
    # The judge's requests have their own ledger: the textbooks' spend and the judge's never overwrite each other.
    from textbooklm.teacher.cache import RequestCache

    cache = RequestCache(tmp_path / "run" / "_cache" / "teacher_cache.sqlite")
    writer, judge = cache.load_ledger("textbooks", "scripted"), cache.load_ledger("textbooks.judge", "scripted")
    cache.close()
    judged = len(kept) + sum(r["reason"] in ("low-educational-value", "judge-failed") for r in rejected)
    assert writer["completed"] == 9 and writer["failed"] == 0
    assert judge["completed"] + judge["failed"] >= judged and judge["failed"] == expected["none"]

    # A stricter bar re-runs the stage; the teacher's and the judge's replies come from the run's cache.
    sent = len(judging_server.hits)
    cfg.textbooks.judge_min_score = 0.95
    run_pipeline(cfg, tmp_path / "run")
    assert Dataset(tmp_path / "run" / "textbooks").num_rows == 0 and len(judging_server.hits) == sent


def test_judging_joins_the_hash_only_when_on_and_needs_an_llm_judge(judging_server, teacher_table, tmp_path):
    (tmp_path / "src").mkdir()
    off = _recipe(judging_server, teacher_table, tmp_path / "src")
    on = _recipe(judging_server, teacher_table, tmp_path / "src", judge=True)
    changed_judge = off.model_copy(deep=True)
    changed_judge.judge.llm.sample = 3
    assert stage_hashes(off)["textbooks"] == stage_hashes(changed_judge)["textbooks"]  # not judged: independent
    assert stage_hashes(off)["textbooks"] != stage_hashes(on)["textbooks"]
    changed_on = on.model_copy(deep=True)
    changed_on.judge.llm.sample = 3
    assert stage_hashes(on)["textbooks"] != stage_hashes(changed_on)["textbooks"]

    on.judge.judges = ["heuristic"]
    on.judge.teacher = None
    problems = check_run(on, "cfg.toml")
    assert any("textbooks.judge: judged textbooks need the run's LLM judge" in p for p in problems), problems


def test_judged_textbooks_checked_on_the_executor_keep_what_driver_checks_keep(judging_server, teacher_table,
                                                                                tmp_path):
    """The judge runs in the checking worker (its own teacher and cache file): the same verdicts and rows, and
    every judge request still sent once."""
    (tmp_path / "src").mkdir()
    cfg = _recipe(judging_server, teacher_table, tmp_path / "src", judge=True)
    run_pipeline(cfg, tmp_path / "driver")
    sent = Counter(h.prompt for h in judging_server.hits)
    judging_server.state.hits.clear()
    cfg.run.workers = 2
    cfg.textbooks.checks = "executor"
    run_pipeline(cfg, tmp_path / "executor")

    def rows(run: str, part: str) -> list[tuple]:
        folder = tmp_path / run / "textbooks" / part
        return [(r["id"], r.get("reason"), json.dumps(json.loads(r["provenance"])["synth"]["judge"]))
                for r in Dataset(folder).iter_records()]

    assert rows("executor", "") == rows("driver", "") and rows("executor", "rejected") == rows("driver", "rejected")
    assert any(reason == "low-educational-value" for _, reason, _ in rows("executor", "rejected"))
    assert Counter(h.prompt for h in judging_server.hits) == sent
    from textbooklm.teacher.cache import cache_files

    assert len(cache_files(tmp_path / "executor" / "_cache")) > 1  # the workers' judges wrote their own files
