"""Teacher throughput: (a) the openai backend against a local server, (b) batched SmolLM2 on the CPU.

(a) The echo server runs in its own process with 50 ms per request and 64 request slots, so its
    capacity is 64 / 0.05 = 1280 requests/s. The Teacher (64 concurrent, SQLite cache on, as a stage
    runs it) sends 2,000 requests; we report achieved req/s as a fraction of that capacity (target
    >= 0.9) and against the anchor, a sequential loop of the plain `openai` client.
(b) SmolLM2-135M-Instruct on the CPU: the local backend's batched generation against the anchor,
    one-prompt-at-a-time `model.generate` from transformers, on the same prompts (target >= 3x).

(a) also prints the CPU each side spent per request (client: this process; server: its process)
    and how long each waited for a core, since on a small machine the two share the cores and CPU,
    not the network, sets the rate; and a ceiling: the SDK alone (a bare AsyncOpenAI loop on the same
    transport, 64 workers, nothing else), which no client built on the SDK can beat on this machine.

(c) ``--base-url URL --model NAME``: any OpenAI-compatible server (vLLM, llama.cpp, a hosted API):
    the Teacher (cache on, fresh) and a bare AsyncOpenAI loop on the same transport, at the same
    concurrency, on requests of the same shape, in ABBA order (each side twice, early and late, as
    the server drifts); the ratio of their mean rates, Teacher / bare, prints last. Against a
    real model the server is the bound, so the ratio says what the Teacher costs on top of it.

The ratio line prints last.  Usage: python benchmarks/bench_teacher.py [--requests 2000] [--prompts 16]
[--only http|local]; or python benchmarks/bench_teacher.py --base-url URL --model NAME
[--concurrency 8] [--requests 64] [--max-tokens 16] [--api-key-env VAR] [--bare-first]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

LATENCY_S = 0.05
SLOTS = 64
# The echo servers are test fakes: they live in tests/fakes, not in the package.
TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakes.echo_server", "--latency", str(LATENCY_S),
         "--max-concurrent", str(SLOTS)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)},
    )
    url = proc.stdout.readline().strip()
    return proc, url


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def runqueue_wait_s(pid: int) -> float | None:
    """Seconds a process (main thread) was runnable but waiting for a core (Linux schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def per_request_ms(before: float | None, after: float | None, n: int) -> str:
    return "n/a" if before is None or after is None else f"{(after - before) / n * 1000:.2f}"


def timed_teacher(url: str, n_requests: int, load: float, server_pid: int) -> float:
    """One Teacher run as a stage runs it (cache on); prints its line; returns req/s."""
    from textbooklm.teacher import Request, TeacherConfig, build_teacher

    capacity = SLOTS / LATENCY_S
    cfg = TeacherConfig(backend="openai", model="bench", base_url=url, api_key_env="BENCH_TEACHER_KEY",
                        concurrency=SLOTS, max_retries=2, timeout_s=30)
    reqs = [Request(messages=[{"role": "user", "content": f"request {i} about sorting"}], max_tokens=8)
            for i in range(n_requests)]
    with tempfile.TemporaryDirectory() as cache:
        teacher = build_teacher(cfg, cache, stage="bench")
        # Warm up (the teacher keeps its connections between batches), then time the rest: the
        # first SLOTS requests of the timed batch are cache hits, the others are sent.
        teacher.complete(reqs[:SLOTS], show_progress=False)
        cpu0, server_cpu0 = time.process_time(), process_cpu_s(server_pid)
        waits0 = runqueue_wait_s(os.getpid()), runqueue_wait_s(server_pid)
        start = time.perf_counter()
        results = teacher.complete(reqs, show_progress=False)
        elapsed = time.perf_counter() - start
        cpu, server_cpu1 = time.process_time() - cpu0, process_cpu_s(server_pid)
        waits1 = runqueue_wait_s(os.getpid()), runqueue_wait_s(server_pid)
        sent = n_requests - SLOTS
        ok = sum(r.ok for r in results)
        teacher.close()
    rate = sent / elapsed
    print(f"teacher (openai backend, {SLOTS} concurrent): {sent} requests in {elapsed:.2f} s = "
          f"{rate:,.0f} req/s = {rate / capacity:.2f} of server capacity ({capacity:,.0f} req/s); "
          f"{ok}/{n_requests} ok")
    print(f"  CPU per request: client {cpu / sent * 1000:.2f} ms, server "
          f"{per_request_ms(server_cpu0, server_cpu1, sent)} ms; waiting for a core per request: client "
          f"{per_request_ms(waits0[0], waits1[0], sent)} ms, server {per_request_ms(waits0[1], waits1[1], sent)} "
          f"ms ({os.cpu_count()} cores; load average before {load:.2f})")
    return rate


def bare_sdk(url: str, n_requests: int) -> None:
    """The ceiling on this machine: the SDK alone (AsyncOpenAI on the same transport, 64 workers,
    no cache, ledger, limits or retries). The Teacher's gap to it is what the Teacher itself costs."""
    import asyncio
    import importlib
    import importlib.util
    import json

    import openai

    http = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")

    from textbooklm.teacher import TeacherConfig
    from textbooklm.teacher.openai_backend import make_http_client
    from textbooklm.teacher.teacher import fewer_gc_passes

    cfg = TeacherConfig(backend="openai", model="bench", base_url=url, api_key_env="BENCH_TEACHER_KEY",
                        concurrency=SLOTS)

    async def run() -> tuple[float, float]:
        client = openai.AsyncOpenAI(api_key="bench-not-a-secret", base_url=url, max_retries=0, timeout=30,
                                    http_client=make_http_client(cfg))
        todo: list[int] = []

        async def worker() -> None:
            while todo:
                i = todo.pop()
                raw = await client.post("/chat/completions", cast_to=http.Response, body={
                    "model": "bench", "messages": [{"role": "user", "content": f"bare {i} about sorting"}],
                    "max_tokens": 8})
                assert json.loads(raw.content)["choices"]
        todo.extend(range(SLOTS))
        await asyncio.gather(*(worker() for _ in range(SLOTS)))  # warm up the connections
        todo.extend(range(n_requests))
        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(SLOTS)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        await client.close()
        return elapsed, cpu

    with fewer_gc_passes():
        elapsed, cpu = asyncio.run(run())
    rate = n_requests / elapsed
    print(f"ceiling (bare AsyncOpenAI loop, {SLOTS} concurrent, no cache/ledger/limits): {rate:,.0f} req/s = "
          f"{rate / (SLOTS / LATENCY_S):.2f} of server capacity; client CPU {cpu / n_requests * 1000:.2f} ms/request")


def bench_http(n_requests: int, n_sequential: int) -> tuple[float, float]:
    import openai

    os.environ["BENCH_TEACHER_KEY"] = "bench-not-a-secret"
    load = os.getloadavg()[0]  # before the benchmark adds its own
    proc, url = start_server()
    try:
        capacity = SLOTS / LATENCY_S
        rate = timed_teacher(url, n_requests, load, proc.pid)
        bare_sdk(url, n_requests - SLOTS)

        client = openai.OpenAI(api_key="bench-not-a-secret", base_url=url, max_retries=0)
        start = time.perf_counter()
        for i in range(n_sequential):
            client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": f"sequential {i}"}], max_tokens=8
            )
        seq_rate = n_sequential / (time.perf_counter() - start)
        client.close()
        print(f"anchor (sequential openai client loop): {seq_rate:,.1f} req/s")
        return rate / capacity, rate / seq_rate
    finally:
        proc.terminate()
        proc.wait(timeout=10)


PROMPTS = [
    "Write a Python function that returns the largest element of a list.",
    "Explain what a dictionary is in Python.",
    "What is a for loop?",
    "Write a function to check whether a number is prime.",
    "Describe recursion with a short example.",
    "How do you reverse a string in Python?",
    "What is the difference between a list and a tuple?",
    "Write a function that counts vowels in a string.",
    "Explain list comprehensions.",
    "What does the `return` statement do?",
    "Write a function computing the factorial of n.",
    "How do you read a file line by line in Python?",
    "What is a class in object-oriented programming?",
    "Write a function that merges two sorted lists.",
    "Explain what an exception is.",
    "How do you sort a list of tuples by the second element?",
]


def bench_local(n_prompts: int, max_new_tokens: int) -> float:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from textbooklm.teacher import Request, TeacherConfig, build_teacher

    prompts = (PROMPTS * (n_prompts // len(PROMPTS) + 1))[:n_prompts]
    cfg = TeacherConfig(backend="local", model="smollm2", batch_size=n_prompts, cache=False)
    teacher = build_teacher(cfg, None, stage="bench")
    backend = teacher.backend
    reqs = [Request(messages=[{"role": "user", "content": p}], max_tokens=max_new_tokens) for p in prompts]

    teacher.complete(reqs[:2], show_progress=False)  # warm-up
    start = time.perf_counter()
    results = teacher.complete(reqs, show_progress=False)
    batched_s = time.perf_counter() - start
    batched_tokens = sum(r.tokens_out for r in results)

    tok, lm = backend.tokenizer, backend.lm
    start = time.perf_counter()
    single_tokens = 0
    for r in reqs:
        ids = tok(backend.prompt_text(r), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = lm.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=tok.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        single_tokens += (new.index(tok.eos_token_id) + 1) if tok.eos_token_id in new else len(new)
    single_s = time.perf_counter() - start
    b_rate, s_rate = batched_tokens / batched_s, single_tokens / single_s
    print(f"teacher (local smollm2, batch of {n_prompts}): {batched_tokens} tokens in {batched_s:.1f} s = "
          f"{b_rate:.1f} tok/s")
    print(f"anchor (transformers generate, one prompt at a time): {single_tokens} tokens in {single_s:.1f} s "
          f"= {s_rate:.1f} tok/s")
    return b_rate / s_rate


def bench_external(url: str, model: str, n_requests: int, concurrency: int, max_tokens: int,
                   key_env: str, bare_first: bool = False) -> float:
    """(c) Teacher vs a bare AsyncOpenAI loop against an external server; returns the rate ratio."""
    import asyncio
    import importlib
    import importlib.util

    import openai

    from textbooklm.teacher import Request, TeacherConfig, build_teacher
    from textbooklm.teacher.openai_backend import make_http_client

    http = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
    cfg = TeacherConfig(backend="openai", model=model, base_url=url, api_key_env=key_env, concurrency=concurrency,
                        max_retries=2, timeout_s=600)
    key = os.environ.get(key_env) if key_env else None
    load = os.getloadavg()[0]

    runs = iter(range(1_000_000))

    def prompt(kind: str, i: int) -> str:  # same shape for both sides, different text (no shared prefix cache)
        return f"{kind} {i:05d}: write one sentence about sorting a list."

    def line(name: str, n: int, elapsed: float, ok: int, tokens_out: int) -> float:
        rate = n / elapsed
        print(f"{name}: {n} requests in {elapsed:.2f} s = {rate:.2f} req/s, {tokens_out / elapsed:.1f} tokens "
              f"out/s, {ok}/{n} ok ({concurrency} concurrent, max_tokens {max_tokens})")
        return rate

    def run_teacher() -> float:
        with tempfile.TemporaryDirectory() as cache:
            return _teacher_side(cache)

    def _teacher_side(cache: str) -> float:
        teacher = build_teacher(cfg, cache, stage="bench")
        warm = [Request(messages=[{"role": "user", "content": prompt("warm", i)}], max_tokens=max_tokens)
                for i in range(concurrency)]
        teacher.complete(warm, show_progress=False)
        run = next(runs)
        reqs = [Request(messages=[{"role": "user", "content": prompt(f"teacher{run}", i)}], max_tokens=max_tokens,
                        temperature=0.0) for i in range(n_requests)]
        start = time.perf_counter()
        results = teacher.complete(reqs, show_progress=False)
        elapsed = time.perf_counter() - start
        teacher.close()
        errors = {r.error for r in results if not r.ok}
        if errors:
            print(f"  teacher errors: {sorted(errors)[:3]}")
        return line("teacher", n_requests, elapsed, sum(r.ok for r in results), sum(r.tokens_out for r in results))

    async def bare() -> tuple[float, int, int]:
        client = openai.AsyncOpenAI(api_key=key or "no-key", base_url=url, max_retries=0, timeout=600,
                                    http_client=make_http_client(cfg))
        todo: list[str] = []
        done = {"ok": 0, "tokens": 0}

        async def worker() -> None:
            while todo:
                text = todo.pop()
                raw = await client.post("/chat/completions", cast_to=http.Response, body={
                    "model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                    "temperature": 0.0})
                body = json.loads(raw.content)
                done["ok"] += bool(body.get("choices"))
                done["tokens"] += int((body.get("usage") or {}).get("completion_tokens") or 0)
        todo.extend(prompt("bare-warm", i) for i in range(concurrency))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        done.update(ok=0, tokens=0)
        run = next(runs)
        todo.extend(prompt(f"bare{run}", i) for i in reversed(range(n_requests)))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        await client.close()
        return elapsed, done["ok"], done["tokens"]

    def run_bare() -> float:
        return line("bare AsyncOpenAI loop", n_requests, *asyncio.run(bare()))

    # ABBA order: the server drifts between runs (here whichever side ran first was ~15% faster), so
    # each side runs once early and once late and the rates are averaged.
    if bare_first:
        b1, t1, t2, b2 = run_bare(), run_teacher(), run_teacher(), run_bare()
    else:
        t1, b1, b2, t2 = run_teacher(), run_bare(), run_bare(), run_teacher()
    t_rate, b_rate = (t1 + t2) / 2, (b1 + b2) / 2
    print(f"  server {url}, model {model}; load average before {load:.2f} ({os.cpu_count()} cores)")
    return t_rate / b_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sequential", type=int, default=100, help="requests for the sequential anchor")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--only", choices=["http", "local"], help="run just (a) http or (b) local")
    parser.add_argument("--base-url", help="(c) only: an external OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="(c) the model name the server serves")
    parser.add_argument("--concurrency", type=int, default=8, help="(c) requests in flight, both sides")
    parser.add_argument("--max-tokens", type=int, default=16, help="(c) max_tokens per request")
    parser.add_argument("--api-key-env", default="", help="(c) variable holding the key; empty: none")
    parser.add_argument("--bare-first", action="store_true", help="(c) measure the bare loop first")
    args = parser.parse_args()
    if args.base_url:
        if not args.model:
            parser.error("--base-url needs --model")
        n = args.requests if args.requests != 2000 else 64
        ratio = bench_external(args.base_url, args.model, n, args.concurrency, args.max_tokens, args.api_key_env,
                               args.bare_first)
        print(f"teacher: {ratio:.2f} of a bare AsyncOpenAI loop's rate against {args.base_url} ({args.model}, "
              f"{n} requests, {args.concurrency} concurrent)")
        return
    parts = []
    if args.only != "local":
        frac, vs_seq = bench_http(args.requests, args.sequential)
        parts.append(f"{frac:.2f} of server capacity = {vs_seq:.1f}x a sequential loop "
                     f"({args.requests} requests, {SLOTS} concurrent, {LATENCY_S * 1000:.0f} ms)")
    if args.only != "http":
        speedup = bench_local(args.prompts, args.max_new_tokens)
        parts.append(f"smollm2 batched generation {speedup:.1f}x one-at-a-time ({args.prompts} prompts, CPU)")
    print("teacher: " + "; ".join(parts))


if __name__ == "__main__":
    main()
