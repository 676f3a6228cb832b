"""Verified exercises: how many corpus mining verifies per CPU-minute, and what generated inputs add to
teacher exercises.

(a) Corpus mining on the running interpreter's standard library (site-packages left out): mining.py's
    static rules, input_gen.py's inputs and corpus_exercises.py's sandbox probes and verification,
    through one warm SandboxPool, then the separation check (trivial candidates and 8 mutants per
    verified exercise, strengthening of weak ones; separation.py) in a second pool with the
    candidates' short wall limit: its wall time and the kept exercises' mutation scores are printed.
    CPU time counts this process and every sandbox process (the pools' workers and their children,
    reaped when the pools close). Anchor: one verified exercise per
    CPU-second (60 per CPU-minute).
(b) Teacher exercises (consensus tests) on recorded replies (``benchmarks/data/exercise_replies.jsonl``:
    every reply a real run's teacher gave, exercise prompts and extra solutions alike), served by a
    local OpenAI-compatible server so the real exercises stage runs with the real sandbox and its
    speed does not depend on the teacher: verified rate with ``generate_inputs = false`` (inputs only
    from the reply's calls) and ``true`` (inputs generated from the signature when the reply gives
    too few). Ratio last: with / without.

Usage: python benchmarks/bench_exercises.py [--files N] [--workers W] [--replies FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from textbooklm.sandbox import Limits, SandboxPool
from textbooklm.synth.config import SeparationConfig
from textbooklm.synth.corpus_exercises import mine_round
from textbooklm.synth.separation import WEAK_TESTS, SeparationRun, candidate_limits, separation_summary

REPLIES = Path(__file__).parent / "data" / "exercise_replies.jsonl"
ANCHOR_PER_CPU_MINUTE = 60.0


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stdlib_files(limit: int | None) -> list[dict[str, Any]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.relative_to(root).parts:
            continue
        try:
            files.append({"id": str(p.relative_to(root)), "text": p.read_text(encoding="utf-8"),
                          "path": str(p.relative_to(root))})
        except (UnicodeDecodeError, OSError):
            continue
    return files[:limit] if limit else files


def bench_mining(files: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Mining as the demo runs it, the separation check included (its share of the wall time reported)."""
    cpu0, wall0 = _cpu(), time.perf_counter()
    cfg = SeparationConfig()
    limits = Limits(timeout_s=3.0, memory_mb=1024)
    with SandboxPool(limits, workers=workers) as pool, \
            SandboxPool(candidate_limits(cfg, limits), workers=workers) as candidates:
        kept, rejected, result = mine_round(0, files, min_tests=2, inputs_per_function=24, per_call_s=0.25,
                                            min_lines=3, max_lines=60, max_per_file=30, sandbox=pool, seed=0,
                                            separation=SeparationRun(cfg, candidates, 0))
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    provs = [json.loads(r["provenance"])["synth"] for r in kept]
    weak = sum(r["reason"] == WEAK_TESTS for r in rejected)
    return {"files": len(files), "candidates": result["mining"]["candidates"], "verified": len(kept),
            "tests": result["inputs"].get("tests", 0), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "separation_s": result["separation_s"], "separation": separation_summary(provs, weak, cfg)[0],
            "per_cpu_minute": round(len(kept) / (cpu / 60), 1) if cpu else 0.0}


def _recorded_server(path: Path) -> Any:
    """A local OpenAI-compatible server answering each recorded request (by prompt and seed) with its reply."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the echo server is a test fake
    from fakes.echo_server import EchoServer, _Handler

    table: dict[tuple[str, Any], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            table[(r["content"], r.get("seed"))] = r

    class Recorded(_Handler):
        @staticmethod
        def _completion(state: Any, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
            content = str((body.get("messages") or [{}])[-1].get("content", ""))
            rec = table.get((content, body.get("seed")))
            if rec is None:
                raise KeyError(f"{path}: no recorded reply for this request (seed {body.get('seed')}): "
                               f"{content[:80]!r}")
            return {"id": "rec", "object": "chat.completion", "created": int(time.time()), "model": "recorded",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": rec["text"]},
                                 "finish_reason": rec.get("finish_reason") or "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    srv = EchoServer(latency_s=0.0)
    srv._httpd.RequestHandlerClass = Recorded
    return srv


def bench_teacher(path: Path, exercises: dict[str, Any], workers: int) -> dict[str, Any]:
    from textbooklm.config import parse_config
    from textbooklm.pipeline import run_pipeline
    from textbooklm.store import Dataset

    os.environ["TEXTBOOKLM_BENCH_KEY"] = "sk-recorded"
    out: dict[str, Any] = {}
    with _recorded_server(path) as srv, tempfile.TemporaryDirectory() as tmp:
        for generate in (False, True):
            cfg = parse_config({
                "run": {"workers": workers, "seed": exercises.get("seed", 0)},
                "teachers": {"rec": {"backend": "openai", "model": "recorded", "base_url": srv.base_url,
                                     "api_key_env": "TEXTBOOKLM_BENCH_KEY", "max_retries": 0}},
                "exercises": {**exercises["config"], "teacher": "rec", "source": "teacher",
                              "generate_inputs": generate},
            })
            run_dir = Path(tmp) / f"gen-{generate}"
            t0 = time.perf_counter()
            record = run_pipeline(cfg, run_dir)
            kept = Dataset(run_dir / "exercises").num_rows
            asked = exercises["config"]["count"]
            m = re.search(r"inputs: (\d+) found, (\d+) agreed", record["stages"]["exercises"]["line"])
            out["with" if generate else "without"] = {
                "verified": kept, "asked": asked, "rate": round(kept / asked, 3),
                "inputs_found": int(m.group(1)) if m else 0, "inputs_agreed": int(m.group(2)) if m else 0,
                "wall_s": round(time.perf_counter() - t0, 1), "line": record["stages"]["exercises"]["line"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=None, help="Only the first N stdlib files (default: all).")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--replies", type=Path, default=REPLIES)
    args = ap.parse_args()
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"load average before: {' '.join(load)} ({os.cpu_count()} cores)")

    m = bench_mining(stdlib_files(args.files), args.workers)
    print(f"(a) corpus mining, stdlib: {m['files']} files, {m['candidates']} candidates run, {m['verified']} "
          f"verified ({m['tests']} tests) in {m['cpu_s']} CPU-s / {m['wall_s']} s wall on {args.workers} workers: "
          f"{m['per_cpu_minute']} verified per CPU-minute (anchor {ANCHOR_PER_CPU_MINUTE:.0f})\n"
          f"    separation check (trivial candidates, mutants, strengthening): {m['separation_s']} s of the "
          f"{m['wall_s']} s wall ({m['separation_s'] / max(m['wall_s'], 1e-9):.0%})\n    {m['separation'][2:]}")

    if not args.replies.is_file():
        print(f"(b) skipped: no recorded replies at {args.replies} (benchmarks/record_exercise_replies.py RUN)")
        return
    header = json.loads(args.replies.with_suffix(".json").read_text())
    t = bench_teacher(args.replies, header, args.workers)
    for k in ("without", "with"):
        r = t[k]
        print(f"(b) teacher exercises {k} generated inputs: {r['verified']} of {r['asked']} verified "
              f"({r['rate']:.0%}), {r['wall_s']} s\n    {r['line']}")
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"load average after: {' '.join(load)}")
    ratio_a = m["per_cpu_minute"] / ANCHOR_PER_CPU_MINUTE
    w, wo = t["with"], t["without"]
    ratio_b = (f"{w['verified'] / wo['verified']:.2f}x" if wo["verified"] else
               "no ratio (none verified without)" if not w["verified"] else "inf (none verified without)")
    print(f"ratio (a) mining vs anchor: {ratio_a:.2f}x; ratio (b) verified with / without generated inputs: "
          f"{w['verified']}/{wo['verified']} = {ratio_b} (inputs found {w['inputs_found']} vs {wo['inputs_found']}, "
          f"agreed {w['inputs_agreed']} vs {wo['inputs_agreed']})")


if __name__ == "__main__":
    main()
