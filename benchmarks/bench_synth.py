"""Synthesis at scale: the textbooks stage against a local server, at growing counts, and what that
says about phi-1's and phi-1.5's sizes.

Set-up: a local OpenAI-compatible server (tests/fakes/echo_server.py, its own process, asyncio
engine) that answers every prompt with a distinct ~1,200-word textbook holding one runnable Python
block, after ``--latency`` seconds (0.2), with ``--slots`` requests served at once (64): a capacity
of slots / latency = 320 requests/s. Each count runs the real stage (`textbooklm run --only
textbooks`, code blocks run in the sandbox, diversity measured, cross-round dedup) in a fresh
process and run folder, with ``per_round`` prompts per round and the teacher at ``--concurrency``.

Measured per count: stage wall, requests/s over the rounds (count / (stage seconds - finish
seconds)) and "steady" (the requests of rounds 1.. over the time from round 0's marker to the last
one: the pipeline's fill and drain left out, but round 1's requests started before round 0's marker, so
it overstates; the two bracket the rate a long run reaches), the driver's peak RSS (VmHWM of the stage
process; the sandbox workers are separate processes) and its peak VmRSS during the rounds and
during the finish (phases told apart by the round markers on disk), the finish step's seconds (from
the stage summary), the request cache's size, and the 1-minute load average at the start and end
(the box is shared: every figure is measured under that load).

Two ratios to a bare ``AsyncOpenAI`` loop (same concurrency and transport, same server, prompts of
the same shape, measured in the same run), both printed:

- at ``--latency`` (0.2 s): the server could do 320 requests/s, so here the checks bound the stage:
  the sandbox alone (the textbooks' own programs through a SandboxPool of the stage's size, no
  teacher) is measured too, and its programs/s over the bare loop's requests/s is the most the
  ratio can be on this box;
- at ``--slow-latency`` (2 s; a hosted model takes ~20 s a reply): the teacher is the bottleneck when
  the checks keep up, which is the case that scales to phi-1's sizes.

Then growth exponents (wall and RSS between counts) and the extrapolation to phi-1 (500k textbooks
+ 880k exercises) and phi-1.5 (13M textbooks) at a hosted model's pace (``--reply-s`` 20 s a reply,
the concurrency of configs/phi15.toml), from the slow-latency ratio over all rounds, per driver and for
8 drivers, the driver's memory, and the dollar cost at the config's price, synchronous vs the Batch
API (half price).

``--config configs/phi15.toml --count 100000`` instead runs that config's ``[textbooks]`` section
(its teacher pointed at the local server, executor local, a generated 20K-topic file when its
topics file is missing) once and prints wall, rate and RSS per phase.

The ratio line prints last. Usage: python benchmarks/bench_synth.py [--counts 1000,4000,16000]
[--full (adds 64000)] [--per-round 1024] [--latency 0.2] [--slow-latency 2] [--slots 64]
[--concurrency 64]
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
    """Requests/s of a bare AsyncOpenAI loop (same transport and connection pool the Teacher uses)."""
    import openai

    from textbooklm.teacher.config import TeacherConfig
    from textbooklm.teacher.openai_backend import make_http_client

    # the pool sized to the same concurrency as the stage's teacher (the default 16 would cap the loop at 16)
    cfg = TeacherConfig(backend="openai", model="fake", base_url=base_url, api_key_env="", concurrency=concurrency)
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
checks = "{checks}"
rounds_ahead = {ahead}
"""




def load() -> float:
    """The 1-minute load average (the box is shared: every figure is read against it)."""
    return os.getloadavg()[0]


def sandbox_alone(n: int, workers: int) -> dict:
    """Programs/s of the sandbox alone on the textbooks' own programs (the server's code block per prompt),
    through a SandboxPool with the stage's limits and size: the most the checks can do on this box."""
    sys.path.insert(0, str(TESTS))
    from fakes.echo_server import textbook_reply

    from textbooklm.codeblocks import extract_blocks
    from textbooklm.sandbox import Program, SandboxPool
    from textbooklm.synth.config import TextbooksConfig

    programs = []
    for i in range(n):
        text, _ = textbook_reply(f"sandbox-alone prompt {i}", 1200)
        block = next(b for b in extract_blocks(text) if b.runnable)
        programs.append(Program(id=str(i), code=block.code))
    before = load()
    start = time.perf_counter()
    with SandboxPool(TextbooksConfig(teacher="x", count=1).sandbox, workers=workers or None) as pool:
        results = pool.run(programs)
    wall = time.perf_counter() - start
    return {"programs_per_s": n / wall, "passed": sum(r.status == "passed" for r in results), "n": n,
            "load": (before, load()), "workers": pool.workers}


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _pss_kb(pid: int) -> int:
    """Proportional set size in kB (shared pages split between the processes sharing them), else VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return _rss_kb(pid)[0]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_rss_kb(pid: int) -> int:
    """Memory of a process and all its descendants in kB (the executor's workers, the fork server, the
    sandboxes), as PSS: workers forked from one server share pages, which a sum of VmRSS counts each time."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_kb(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return total


def run_config(cfg: Path, out: Path, count: int, per_round: int, time_limit: float | None = None) -> dict:
    """Run the textbooks stage of ``cfg`` in its own process; RSS sampled per phase (the round markers tell
    the rounds from the finish), VmRSS at each round's marker, steady-state rate from the markers' times."""
    n_rounds = -(-count // per_round)
    markers = out / "textbooks" / "_work" / "markers"
    start, load_start = time.perf_counter(), load()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("textbooklm")), "run", str(cfg), "--out", str(out),
                             "--only", "textbooks"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb = rounds_kb = finish_kb = tree_kb = 0
    cpu_s = 0.0
    trend: list[tuple[int, int]] = []  # (rounds done, VmRSS kB) when a marker appears
    stopped = False
    while proc.poll() is None:
        rss, hwm = _rss_kb(proc.pid)
        peak_kb = max(peak_kb, hwm)
        tree_kb = max(tree_kb, _tree_rss_kb(proc.pid))
        cpu_s = max(cpu_s, _cpu_s(proc.pid))  # the stage's own process (not its workers): the driver's load
        done = len(list(markers.glob("round-*.json"))) if markers.is_dir() else 0
        if done < n_rounds:
            rounds_kb = max(rounds_kb, rss)
        else:
            finish_kb = max(finish_kb, rss)
        if done and (not trend or trend[-1][0] != done):
            trend.append((done, rss))
        if time_limit is not None and time.perf_counter() - start > time_limit:
            proc.terminate()
            proc.wait()
            stopped = True
            break
        time.sleep(0.2)
    wall = time.perf_counter() - start
    times = sorted(p.stat().st_mtime for p in markers.glob("round-*.json")) if markers.is_dir() else []
    steady = ((min(count, len(times) * per_round) - per_round) / (times[-1] - times[0])
              if len(times) > 1 and times[-1] > times[0] else float("nan"))
    cache = sum(p.stat().st_size for p in (out / "_cache").rglob("*") if p.is_file())
    row = {"count": count, "wall_s": wall, "peak_rss_mb": peak_kb / 1024, "rounds_rss_mb": rounds_kb / 1024,
           "finish_rss_mb": finish_kb / 1024, "tree_rss_mb": tree_kb / 1024, "steady_req_per_s": steady,
           "cache_mb": cache / 1e6, "driver_cpu_s": cpu_s,
           "load": (load_start, load()), "trend": trend, "rounds_done": len(times), "n_rounds": n_rounds}
    if stopped:
        return {**row, "stopped": True}
    if proc.returncode != 0:
        raise SystemExit(f"the textbooks stage failed at count {count}: {proc.stderr.read()[-2000:]}")
    stage = json.loads((out / "textbooks" / "_stage.json").read_text())
    summary = stage.get("summary", {})
    finish_s = float(summary.get("finish_s") or 0.0)
    rounds_s = max(1e-9, float(stage["seconds"]) - finish_s)
    return {**row, "stage_s": float(stage["seconds"]), "finish_s": finish_s, "req_per_s": count / rounds_s,
            "kept": summary.get("kept", summary.get("counts", {}).get("kept"))}


def run_stage(url: str, count: int, per_round: int, concurrency: int, work: Path, checks: str = "driver",
              ahead: int = 1) -> dict:
    cfg = work / f"synth-{count}-{checks}-{ahead}.toml"
    cfg.write_text(CONFIG.format(url=url, count=count, per_round=per_round, concurrency=concurrency,
                                 max_tokens=MAX_TOKENS, checks=checks, ahead=ahead))
    row = run_config(cfg, work / f"run-{count}-{time.monotonic_ns()}", count, per_round)
    return {**row, "checks": checks, "ahead": ahead}


def exponent(a: float, b: float, n_a: int, n_b: int) -> float:
    return math.log(b / a) / math.log(n_b / n_a) if a > 0 and b > 0 and n_a != n_b else float("nan")


def _loads(row: dict) -> str:
    return f"load {row['load'][0]:.1f}-{row['load'][1]:.1f}"


def _trend(trend: list[tuple[int, int]], keep: int = 8) -> str:
    step = max(1, -(-len(trend) // keep))
    picked = trend[::step] + ([trend[-1]] if trend and (len(trend) - 1) % step else [])
    return ", ".join(f"{k}: {kb / 1024:.0f}" for k, kb in picked)


def print_row(row: dict) -> None:
    where = "" if row.get("checks", "driver") == "driver" and row.get("ahead", 1) == 1 else \
        f" [checks on the {row['checks']}, {row['ahead']} round(s) ahead]"
    print(f"textbooks {row['count']:>6}{where}: wall {row['wall_s']:.1f} s, rounds {row['req_per_s']:.1f} requests/s "
          f"(steady {row['steady_req_per_s']:.1f}), finish {row['finish_s']:.1f} s, driver peak RSS "
          f"{row['peak_rss_mb']:.0f} MB (rounds {row['rounds_rss_mb']:.0f}, finish {row['finish_rss_mb']:.0f}), "
          f"with its workers and sandboxes {row['tree_rss_mb']:.0f} MB PSS, "
          f"cache {row['cache_mb']:.1f} MB, kept {row['kept']}; driver CPU {row['driver_cpu_s']:.0f} s "
          f"({row['count'] / max(row['driver_cpu_s'], 1e-9):.0f} textbooks per driver CPU-second); {_loads(row)}",
          flush=True)
    print(f"  VmRSS MB after round (rounds done: MB): {_trend(row['trend'])}", flush=True)


def toml_value(v: object) -> str:
    """A TOML literal for the values a config section holds (JSON strings are valid TOML basic strings)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML literal for {v!r}")


def config_from(path: Path, url: str, count: int, work: Path) -> tuple[Path, dict, str]:
    """``path``'s [textbooks] section with ``count``, its teacher pointed at the local server (the teacher's
    concurrency and price kept), executor local; a generated 20K-topic tree when its topics file is missing.
    Returns the config written, the section and what was changed (printed with the figures)."""
    import tomllib

    doc = tomllib.loads(path.read_text())
    section = dict(doc["textbooks"])
    teacher = doc["teachers"][section["teacher"]]
    changes = [f"count {section['count']:,} -> {count:,}", f"teacher {teacher.get('model')} -> the local server",
               f"executor {doc.get('run', {}).get('executor', 'local')} -> local"]
    section["count"] = count
    seeds = dict(section.get("seeds") or {})
    topics = seeds.get("topics_file")
    if topics and not (ROOT / topics).exists() and not Path(topics).exists():
        generated = work / "topics-20k.txt"
        generated.write_text("".join(f"Area {a}\n" + "".join(f"  Subject {a}.{b}\n" + "".join(
            f"    Topic {a}.{b}.{c}\n" for c in range(20)) for b in range(50)) for a in range(20)))
        seeds["topics_file"] = str(generated)
        changes.append(f"{topics} (missing) -> 20,000 generated topics")
    if seeds.get("excerpt_fraction"):
        changes.append(f"excerpt_fraction {seeds['excerpt_fraction']} has no filter input with --only textbooks: none")
    section["seeds"] = seeds
    lines = ["[run]", f"seed = {int(doc.get('run', {}).get('seed', 0))}", "workers = 0", "",
             f"[teachers.{section['teacher']}]", 'backend = "openai"', 'model = "fake-textbooks"',
             f"base_url = {json.dumps(url)}", 'api_key_env = ""',
             f"concurrency = {int(teacher.get('concurrency', 64))}",
             f"price_preset = {json.dumps(teacher.get('price_preset', 'gpt-3.5-turbo'))}", "", "[textbooks]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in section.items()]
    cfg = work / f"{path.stem}-{count}.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg, section, "; ".join(changes)


def main_config(args: argparse.Namespace) -> None:
    """One run of a config's textbooks stage at ``--count`` against the local server."""
    server, url = start_server(args.latency, args.slots)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
            cfg, section, changes = config_from(Path(args.config), url, args.count, Path(tmp))
            print(f"{args.config} [textbooks]: {changes}; per_round {section.get('per_round')}, max_tokens "
                  f"{section.get('max_tokens')}; server latency {args.latency:g} s, {args.slots} slots", flush=True)
            row = run_config(cfg, Path(tmp) / "run", args.count, int(section.get("per_round", 8)), args.time_limit)
    finally:
        server.terminate()
        server.wait()
    if row.get("stopped"):
        done = min(args.count, row["rounds_done"] * int(section.get("per_round", 8)))
        print(f"stopped at the {args.time_limit:g} s limit: {row['rounds_done']}/{row['n_rounds']} rounds "
              f"({done:,} textbooks) in {row['wall_s']:.0f} s, steady {row['steady_req_per_s']:.1f} requests/s, "
              f"driver peak RSS {row['peak_rss_mb']:.0f} MB; {_loads(row)}")
        print(f"  VmRSS MB after round: {_trend(row['trend'], 12)}")
        if row["rounds_done"] >= row["n_rounds"]:
            print("every round was done: stopped during the finish step (its time and RSS not measured)")
        else:
            rate = row["steady_req_per_s"]
            print(f"at that rate all {args.count:,} would take {args.count / rate / 3600:.1f} h (not measured)")
        return
    print_row(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,4000,16000")
    ap.add_argument("--full", action="store_true", help="also 64000 textbooks")
    ap.add_argument("--per-round", type=int, default=1024)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--slow-latency", type=float, default=2.0, help="the teacher-bound ratio's server latency")
    ap.add_argument("--slow-count", type=int, default=4096, help="textbooks of the teacher-bound stage run")
    ap.add_argument("--checks-count", type=int, default=4096,
                    help="textbooks of each run comparing where the checks run (driver; executor 1 and 2 rounds ahead)")
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bare-requests", type=int, default=2000)
    ap.add_argument("--sandbox-programs", type=int, default=1024)
    ap.add_argument("--reply-s", type=float, default=20.0, help="a hosted model's seconds per reply (extrapolation)")
    ap.add_argument("--config", help="run this config's [textbooks] section once instead (with --count)")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--time-limit", type=float, default=None, help="--config: stop after this many seconds")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    flags = Path("/proc/cpuinfo").read_text()
    print(f"CPU: {cpu} (avx512f: {'avx512f' in flags}, amx: {'amx_tile' in flags}); {os.cpu_count()} cores; "
          f"load {load():.1f}", flush=True)
    if args.config:
        main_config(args)
        return
    counts = [int(c) for c in args.counts.split(",")] + ([64000] if args.full else [])
    sb = sandbox_alone(args.sandbox_programs, 0)
    print(f"sandbox alone: {sb['programs_per_s']:.1f} programs/s ({sb['passed']}/{sb['n']} passed, "
          f"{sb['workers']} workers, the stage's limits); load {sb['load'][0]:.1f}-{sb['load'][1]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        server, url = start_server(args.latency, args.slots)
        try:
            l0 = load()
            bare = [bare_rate(url, args.bare_requests, args.concurrency)]
            print(f"bare AsyncOpenAI loop at {args.latency:g} s: {bare[0]:.1f} requests/s (capacity "
                  f"{args.slots / args.latency:.0f}); load {l0:.1f}-{load():.1f}", flush=True)
            for count in counts:
                rows.append(run_stage(url, count, args.per_round, args.concurrency, Path(tmp)))
                print_row(rows[-1])
            placements = []  # where the checks run, at --latency: the same count, the same server
            for checks, ahead in (("driver", 1), ("executor", 1), ("executor", 2)):
                placements.append(run_stage(url, args.checks_count, args.per_round, args.concurrency, Path(tmp),
                                            checks, ahead))
                print_row(placements[-1])
            l0 = load()
            bare.append(bare_rate(url, args.bare_requests, args.concurrency))
            print(f"bare AsyncOpenAI loop again: {bare[1]:.1f} requests/s; load {l0:.1f}-{load():.1f}", flush=True)
        finally:
            server.terminate()
            server.wait()
        server, slow_url = start_server(args.slow_latency, args.slots)
        try:
            slow_n = max(args.concurrency * 8, 512)
            l0 = load()
            slow_bare = bare_rate(slow_url, slow_n, args.concurrency)
            print(f"bare AsyncOpenAI loop at {args.slow_latency:g} s: {slow_bare:.1f} requests/s (capacity "
                  f"{args.slots / args.slow_latency:.0f}); load {l0:.1f}-{load():.1f}", flush=True)
            slow = run_stage(slow_url, args.slow_count, args.per_round, args.concurrency, Path(tmp))
            print_row(slow)
            slow_ex = run_stage(slow_url, args.slow_count, args.per_round, args.concurrency, Path(tmp), "executor", 2)
            print_row(slow_ex)
        finally:
            server.terminate()
            server.wait()
    ceiling = sum(bare) / len(bare)
    lo, hi = rows[0], rows[-1]
    mid = rows[-2] if len(rows) > 1 else lo
    t_exp = exponent(lo["wall_s"], hi["wall_s"], lo["count"], hi["count"])
    m_exp = exponent(mid["peak_rss_mb"], hi["peak_rss_mb"], mid["count"], hi["count"])
    fast_ratio = sum(r["req_per_s"] for r in rows) / len(rows) / ceiling
    bound = sb["programs_per_s"] / ceiling
    slow_ratio, slow_steady = slow["req_per_s"] / slow_bare, slow["steady_req_per_s"] / slow_bare
    slow_ex_ratio = slow_ex["req_per_s"] / slow_bare
    placed = {(r["checks"], r["ahead"]): r["req_per_s"] / ceiling for r in placements}
    best = max(placed, key=lambda k: placed[k])
    print(f"at {args.latency:g} s, {args.checks_count} textbooks: checks on the driver {placed[('driver', 1)]:.2f}, "
          f"on the executor {placed[('executor', 1)]:.2f} (1 round ahead), {placed[('executor', 2)]:.2f} (2 ahead) of "
          f"the bare loop; the stage's process tree peaks at (PSS) "
          + ", ".join(f"{r['tree_rss_mb']:.0f}" for r in placements) + " MB; the driver process used "
          + ", ".join(f"{r['driver_cpu_s']:.0f}" for r in placements) + " CPU-s (what one driver could feed with the "
          "checks elsewhere: " + ", ".join(f"{r['count'] / max(r['driver_cpu_s'], 1e-9):.0f}" for r in placements)
          + " textbooks per driver CPU-second)")
    print(f"at {args.latency:g} s: stage {fast_ratio:.2f} of the bare loop's {ceiling:.0f} requests/s; the sandbox "
          f"alone does {sb['programs_per_s']:.0f} programs/s = {bound:.2f} of it, so on this box the ratio is "
          f"{'CPU-bound (the checks)' if bound < 0.8 else 'not bound by the sandbox'}")
    print(f"at {args.slow_latency:g} s: stage {slow_ratio:.2f} of the bare loop's {slow_bare:.1f} requests/s over "
          f"all rounds (fill and drain included: a lower bound), {slow_steady:.2f} from round 0's marker to the last "
          f"(an upper bound: round 1's requests start before round 0's marker); checks on the executor, 2 rounds "
          f"ahead: {slow_ex_ratio:.2f}")
    print(f"growth from {lo['count']} to {hi['count']}: wall exponent {t_exp:.2f}, peak RSS "
          f"{hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f}x; from {mid['count']} to {hi['count']}: peak RSS "
          f"{hi['peak_rss_mb'] / mid['peak_rss_mb']:.2f}x (exponent {m_exp:.3f}), cache "
          f"{hi['cache_mb'] / mid['cache_mb']:.2f}x, finish {hi['finish_s'] / max(mid['finish_s'], 1e-9):.2f}x")
    # Extrapolation: a driver keeps `concurrency` requests in flight at the teacher-bound efficiency over all
    # rounds (fill and drain included, so at most a few rounds' worth pessimistic at millions of requests).
    eff = slow_ratio
    per_driver = args.concurrency / args.reply_s * eff
    tokens_in, tokens_out = 300, 1600  # per textbook: seed prompt, ~1,200 words
    from textbooklm.teacher.config import PRICE_PRESETS

    price = PRICE_PRESETS["gpt-3.5-turbo"]
    lines = []
    for name, n in (("phi-1 (500k textbooks + 880k exercises)", 1_380_000), ("phi-1.5 (13M textbooks)", 13_000_000)):
        hours = n / per_driver / 3600
        usd = price.cost(n * tokens_in, n * tokens_out)
        mem_gb = hi["peak_rss_mb"] * (n / hi["count"]) ** max(m_exp, 0.0) / 1024
        lines.append(f"{name}: {hours:,.0f} h per driver, {hours / 8:,.0f} h with 8 drivers at {args.concurrency} "
                     f"in flight, {args.reply_s:g} s a reply and {eff:.2f} efficiency; driver RSS ~{mem_gb:.1f} GB "
                     f"if the {mid['count']}->{hi['count']} exponent holds; ${usd:,.0f} synchronous, "
                     f"${usd * 0.5:,.0f} batch")
    for line in lines:
        print(line)
    print(f"synth: {fast_ratio:.2f} of a bare AsyncOpenAI loop at {args.latency:g} s ({placed[best]:.2f} with checks "
          f"on the {best[0]}, {best[1]} ahead; sandbox alone {bound:.2f}), {slow_ratio:.2f} at {args.slow_latency:g} s "
          f"({slow_ex_ratio:.2f} on the executor; {slow_steady:.2f} from round 0's marker); memory "
          f"{hi['peak_rss_mb'] / mid['peak_rss_mb']:.2f}x from {mid['count']} to {hi['count']}; time exponent "
          f"{t_exp:.2f}; " + lines[-1])


if __name__ == "__main__":
    main()
