"""Scoring samples: every completion through the sandbox, then pass@k per task.

Writes ``<samples>.results.jsonl`` (one verdict per sample) and ``<samples>.results.json``
(pass@k with n and lm-eval-harness's standard error, the share of empty completions and why the rest
failed, counts per status, and every limit and setting used, including the sandbox isolation).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from textbooklm.code_tasks import solution_program
from textbooklm.evals.outcomes import describe_outcomes, is_empty
from textbooklm.evals.passk import mean_pass_at_k, pass_at_k_stderr
from textbooklm.jsonl import read_jsonl
from textbooklm.problems import Problem
from textbooklm.sandbox import Limits, Program, SandboxPool


def read_samples(path: Path) -> list[dict[str, Any]]:
    samples = []
    for where, record in read_jsonl(path):
        if not isinstance(record, dict) or "task_id" not in record or not isinstance(record.get("completion"), str):
            raise ValueError(f"{where}: a sample needs 'task_id' and a string 'completion'")
        samples.append(record)
    return samples


def to_programs(problems: list[Problem], samples: list[dict[str, Any]], where: str = "samples") -> list[Program]:
    by_id = {p.task_id: p for p in problems}
    programs = []
    for i, s in enumerate(samples):
        problem = by_id.get(s["task_id"])
        if problem is None:
            raise ValueError(f"{where}: sample {i} names task_id {s['task_id']!r}, which the task does not have")
        programs.append(Program(id=f"{s['task_id']}#{s.get('completion_id', i)}",
                                code=solution_program(problem, s["completion"]), test=problem.test,
                                entry_point=problem.entry_point))
    return programs


def score(problems: list[Problem], samples: list[dict[str, Any]], limits: Limits, workers: int | None,
          ks: tuple[int, ...] = (1, 10, 100), progress=None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every sample; return per-sample records and the summary (pass@k, counts, settings)."""
    programs = to_programs(problems, samples)
    with SandboxPool(limits, workers=workers) as pool:
        results = pool.run(programs, on_result=(lambda _r: progress(1)) if progress else None)
        isolation, n_workers = pool.isolation, pool.workers
    per_task: dict[str, list[bool]] = defaultdict(list)
    records = []
    for s, r in zip(samples, results, strict=True):
        per_task[s["task_id"]].append(r.passed)
        records.append({"task_id": s["task_id"], "completion_id": s.get("completion_id"), "status": r.status,
                        "passed": r.passed, "error": r.error, "duration_s": r.duration_s,
                        "empty": is_empty(s["completion"])})
    counts = [(len(v), sum(v)) for v in per_task.values()]
    pass_k = mean_pass_at_k(counts, ks)
    per_problem_n = sorted({n for n, _ in counts})
    summary = {
        "pass_at_k": pass_k, "pass_at_k_stderr": pass_at_k_stderr(counts, ks),
        "problems": len(per_task), "samples": len(samples),
        "n": per_problem_n[0] if len(per_problem_n) == 1 else per_problem_n,  # samples per problem
        **describe_outcomes(samples, records, pass_k.get("pass@1")),
        "per_problem": [{"task_id": t, "n": len(v), "passed": sum(v)} for t, v in per_task.items()],
        "status_counts": dict(Counter(r.status for r in results)),
        "limits": limits.model_dump(), "workers": n_workers, "sandbox_isolation": isolation,
    }
    return records, summary
