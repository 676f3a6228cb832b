"""Synthesis at scale: the textbooks stage against a local server, at growing counts, and what that
says about phi-1's and phi-1.5's sizes.

Set-up: a local OpenAI-compatible server (tests/fakes/echo_server.py, its own process, asyncio
engine) that answers every prompt with a distinct ~1,200-word textbook holding one runnable Python
block, after ``--latency`` seconds (0.2), with ``--slots`` requests served at once (64): a capacity
of slots / latency = 320 requests/s. Each count runs the real stage (`textbooklm run --only
textbooks`, code blocks run in the sandbox, diversity measured, cross-round dedup) in a fresh
process and run folder, with ``per_round`` prompts per round and the teacher at ``--concurrency``.

Measured per count: stage wall, requests/s over the rounds, the driver's peak RSS (VmHWM of the
stage process; the sandbox workers are separate processes), the finish step's seconds (from the
stage summary), the request cache's size. Against the anchor, a bare ``AsyncOpenAI`` loop with the
same concurrency and transport on the same server and prompts of the same shape (the most any
client on this SDK gets here), measured in the same run before and after the counts.

Then growth exponents (wall and RSS between the smallest and largest count) and the extrapolation to
phi-1 (500k textbooks + 880k exercises) and phi-1.5 (13M textbooks) at a hosted model's pace
(``--reply-s`` 20 s a reply, the concurrency of configs/phi15.toml), per driver and for 8 drivers,
and the dollar cost at the config's price, synchronous vs the Batch API (half price).

The ratio line prints last. Usage: python benchmarks/bench_synth.py [--counts 1000,4000,16000]
[--full (adds 64000)] [--per-round 1024] [--latency 0.2] [--slots 64] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
MAX_TOKENS = 1600


def start_server(latency: float, slots: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "fakes.echo_server", "--latency", str(latency),
                             "--max-concurrent", str(slots), "--reply", "textbook", "--reply-tokens", "1200"],
                            stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


async def _bare(base_url: str, n: int, concurrency: int) -> float:
    """Requests/s of a bare AsyncOpenAI loop (same transport the Teacher uses)."""
    import openai

    from textbooklm.teacher.config import TeacherConfig
    from textbooklm.teacher.openai_backend import make_http_client

    cfg = TeacherConfig(backend="openai", model="fake", base_url=base_url, api_key_env="")
    client = openai.AsyncOpenAI(api_key="no-key", base_url=base_url, max_retries=0,
                                http_client=make_http_client(cfg))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await client.chat.completions.create(model="fake", max_tokens=MAX_TOKENS, messages=[
                {"role": "user", "content": f"Write a textbook section {i} on loops for beginners, bare"}])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    await client.close()
    return n / wall


def bare_rate(base_url: str, n: int, concurrency: int) -> float:
    return asyncio.run(_bare(base_url, n, concurrency))


CONFIG = """[run]
seed = 0
workers = 0

[teachers.fake]
backend = "openai"
model = "fake-textbooks"
base_url = "{url}"
api_key_env = ""
concurrency = {concurrency}
price_preset = "gpt-3.5-turbo"

[textbooks]
teacher = "fake"
count = {count}
per_round = {per_round}
max_tokens = {max_tokens}
min_chars = 200
"""


def run_stage(url: str, count: int, per_round: int, concurrency: int, work: Path) -> dict:
    cfg = work / f"synth-{count}.toml"
    cfg.write_text(CONFIG.format(url=url, count=count, per_round=per_round, concurrency=concurrency,
                                 max_tokens=MAX_TOKENS))
    out = work / f"run-{count}"
    start = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("textbooklm")), "run", str(cfg), "--out", str(out),
                             "--only", "textbooks"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb = 0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the textbooks stage failed at count {count}: {proc.stderr.read()[-2000:]}")
    stage = json.loads((out / "textbooks" / "_stage.json").read_text())
    summary = stage.get("summary", {})
    cache = sum(p.stat().st_size for p in (out / "_cache").rglob("*") if p.is_file())
    finish_s = float(summary.get("finish_s") or 0.0)
    rounds_s = max(1e-9, float(stage["seconds"]) - finish_s)
    return {"count": count, "wall_s": wall, "stage_s": float(stage["seconds"]), "finish_s": finish_s,
            "req_per_s": count / rounds_s, "peak_rss_mb": peak_kb / 1024, "cache_mb": cache / 1e6,
            "kept": summary.get("kept"), "tokens_out": None}


def exponent(a: float, b: float, n_a: int, n_b: int) -> float:
    return math.log(b / a) / math.log(n_b / n_a) if a > 0 and b > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,4000,16000")
    ap.add_argument("--full", action="store_true", help="also 64000 textbooks")
    ap.add_argument("--per-round", type=int, default=1024)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bare-requests", type=int, default=2000)
    ap.add_argument("--reply-s", type=float, default=20.0, help="a hosted model's seconds per reply (extrapolation)")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")] + ([64000] if args.full else [])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    flags = Path("/proc/cpuinfo").read_text()
    print(f"CPU: {cpu} (avx512f: {'avx512f' in flags}, amx: {'amx_tile' in flags}); {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.1f}")
    server, url = start_server(args.latency, args.slots)
    rows = []
    try:
        bare = [bare_rate(url, args.bare_requests, args.concurrency)]
        print(f"bare AsyncOpenAI loop: {bare[0]:.1f} requests/s (capacity {args.slots / args.latency:.0f})")
        with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
            for count in counts:
                row = run_stage(url, count, args.per_round, args.concurrency, Path(tmp))
                rows.append(row)
                print(f"textbooks {count:>6}: wall {row['wall_s']:.1f} s, rounds {row['req_per_s']:.1f} requests/s, "
                      f"finish {row['finish_s']:.1f} s, driver peak RSS {row['peak_rss_mb']:.0f} MB, "
                      f"cache {row['cache_mb']:.1f} MB, kept {row['kept']}", flush=True)
        bare.append(bare_rate(url, args.bare_requests, args.concurrency))
    finally:
        server.terminate()
        server.wait()
    ceiling = sum(bare) / len(bare)
    print(f"bare AsyncOpenAI loop again: {bare[1]:.1f} requests/s; mean {ceiling:.1f}")
    lo, hi = rows[0], rows[-1]
    t_exp = exponent(lo["wall_s"], hi["wall_s"], lo["count"], hi["count"])
    mem_ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
    mid = rows[1] if len(rows) > 2 else lo
    ratio = sum(r["req_per_s"] for r in rows) / len(rows) / ceiling
    # Extrapolation: a driver keeps `concurrency` requests in flight at the measured efficiency.
    per_driver = args.concurrency / args.reply_s * ratio
    tokens_in, tokens_out = 300, 1600  # per textbook: seed prompt, ~1,200 words
    from textbooklm.teacher.config import PRICE_PRESETS

    price = PRICE_PRESETS["gpt-3.5-turbo"]
    lines = []
    for name, n in (("phi-1 (500k textbooks + 880k exercises)", 1_380_000), ("phi-1.5 (13M textbooks)", 13_000_000)):
        hours = n / per_driver / 3600
        usd = price.cost(n * tokens_in, n * tokens_out)
        lines.append(f"{name}: {hours:,.0f} h per driver, {hours / 8:,.0f} h with 8 drivers at {args.concurrency} "
                     f"in flight and {args.reply_s:g} s a reply; ${usd:,.0f} synchronous, ${usd * 0.5:,.0f} batch")
    for line in lines:
        print(line)
    print(f"synth: {ratio:.2f} of a bare AsyncOpenAI loop; memory {hi['peak_rss_mb'] / mid['peak_rss_mb']:.2f}x from "
          f"{mid['count']} to {hi['count']} ({mem_ratio:.2f}x from {lo['count']}); time exponent {t_exp:.2f}; "
          + lines[-1])


if __name__ == "__main__":
    main()
