"""Benchmark: the data stages at 1x, 4x and 16x of a real corpus: how time and memory grow.

The corpus: a seeded sample of this interpreter's standard library (``--base-files``, 0 = all of it),
replicated with mutations so dedup has work: copy 0 is the files as they are; in every further copy a
file is, by a seeded draw, an exact copy (25%), a near copy (40%: a few lines edited), or a new file
(35%: most identifiers renamed for that copy, so it is no near duplicate of anything).

Each scale is one run of ``corpus -> judge (heuristic, a fixed sample as phi-1 judged 100k of 20M files)
-> classify (static embedder + random forest) -> filter (static) -> decontam (HumanEval, hashing)``;
each stage runs in its own process (``run_pipeline(only=[stage])``), so its peak memory is its own. A
sampler thread reads the resident memory of the stage's process ("parent") and of each of its worker
processes every 50 ms. Per stage: records/s and MB/s (of the stage's input), peak RSS of the parent and
of the largest worker, and from 1x to 16x the growth exponent of time (log t16/t1 / log 16: 1.0 =
linear) and of peak worker memory (0 = flat).

Then the same stages on the Ray executor (a local 2-node cluster from ``ray.cluster_utils.Cluster``)
at 1x (``--ray-scales`` for more): per-stage times and whether every stage's output equals the local
executor's (record ids and provenance of corpus, filter and decontam; classify's held-out metrics).

Last line: the worst stage's time exponent, and the extrapolation of the 16x run to phi-1's 35B tokens
(tokens ~ bytes / 4): per sharded stage (corpus, filter, decontam) t16 * (35B / tokens16) ** max(exponent,
1) (a measured exponent below 1 is start-up cost being amortised, so linear is the floor); judge and
classify read a fixed sample, so they are scaled from ``--judge-sample`` to phi-1's 100k judged files
(linearly); summed on 2 cores, and on a 64-core cluster with the sharded stages divided by 32 (assumes
they scale out linearly, which the flat per-worker memory supports; judge and classify not divided).

    python benchmarks/bench_scale.py [--base-files 300] [--scales 1,4,16] [--workers 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STAGES = ["corpus", "judge", "classify", "filter", "decontam"]
SHARDED = {"corpus", "filter", "decontam"}  # divided over cores in the cluster extrapolation
TARGET_TOKENS = 35e9
PHI1_JUDGED = 100_000  # files phi-1's GPT-4 judge labelled
_IDENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]{3,})\b")


# -- the corpus ------------------------------------------------------------------------------------
def stdlib_sample(n: int, seed: int = 0) -> list[Path]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    files = [f for f in files if "site-packages" not in f.parts]
    if n and n < len(files):
        files = sorted(random.Random(seed).sample(files, n))
    return files


def mutate(text: str, copy: int, rng: random.Random) -> str | None:
    """None: an exact copy; else a near copy (a few lines edited) or a new file (identifiers renamed)."""
    draw = rng.random()
    if draw < 0.25:
        return None
    lines = text.splitlines(keepends=True)
    if draw < 0.65 and lines:
        for i in rng.sample(range(len(lines)), max(1, len(lines) // 50)):
            lines[i] = lines[i].rstrip("\n") + f"  # edited in copy {copy}\n"
        return "".join(lines)
    return _IDENT.sub(lambda m: f"{m.group(1)}_c{copy}" if rng.random() < 0.7 else m.group(1), text)


def build_corpus(folder: Path, base: list[Path], scale: int, seed: int = 0) -> tuple[int, int]:
    """``scale`` copies of ``base`` under ``folder`` (copy 0 verbatim). Returns (files, bytes)."""
    n_files = n_bytes = 0
    for copy in range(scale):
        rng = random.Random(seed * 1000 + copy)
        for i, src in enumerate(base):
            data = src.read_bytes()
            if copy:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                changed = mutate(text, copy, rng) if text is not None else None
                if changed is not None:
                    data = changed.encode("utf-8", "surrogatepass")
            dest = folder / f"copy{copy:03d}" / f"{i:05d}_{src.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            n_files += 1
            n_bytes += len(data)
    return n_files, n_bytes


def config(corpus: Path, workers: int, executor: str = "local", ray_address: str | None = None,
           judge_sample: int = 600) -> dict:
    run = {"executor": executor, "workers": workers, "seed": 0}
    if ray_address:
        run["ray_address"] = ray_address
    return {
        "run": run,
        "corpus": {"files_per_shard": 100, "sources": [{"kind": "folder", "path": str(corpus)}]},
        "judge": {"judges": ["heuristic"], "heuristic": {"sample": judge_sample, "threshold": 0.7}},
        "classify": {"embedder": "static", "max_chars": 300, "heads": ["random_forest"]},
        "filter": {},
        "decontam": {"benchmarks": [{"task": "humaneval"}], "embedder": "hashing", "max_functions": 16},
    }


# -- one stage in its own process, with its memory sampled ----------------------------------------
DRIVER = """
import json, sys, time
from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
cfg = parse_config(json.loads(sys.argv[1]))
record = run_pipeline(cfg, sys.argv[2], only=[sys.argv[3]])
print("STAGE-RESULT " + json.dumps(record["stages"][sys.argv[3]]))
"""


def _rss_tree(pid: int, worker_match: str | None) -> tuple[int, int]:
    """(RSS of ``pid``, largest RSS among its descendants or, for Ray, among processes named ray::...)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        parent = proc.memory_info().rss
        kids = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    if worker_match:
        kids = [p for p in psutil.process_iter(["name", "cmdline"])
                if worker_match in " ".join(p.info["cmdline"] or [p.info["name"] or ""])]
    worker = 0
    for k in kids:
        try:
            worker = max(worker, k.memory_info().rss)
        except psutil.Error:
            pass
    return parent, worker


def run_stage(raw: dict, run_dir: Path, stage: str, worker_match: str | None = None) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(raw), str(run_dir), stage],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            parent, worker = _rss_tree(proc.pid, worker_match)
            peaks[0], peaks[1] = max(peaks[0], parent), max(peaks[1], worker)
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} failed in {run_dir}:\n{err[-3000:]}")
    line = next(x for x in out.splitlines() if x.startswith("STAGE-RESULT "))
    info = json.loads(line[len("STAGE-RESULT "):])
    return {"seconds": float(info["seconds"]), "parent_rss": peaks[0], "worker_rss": peaks[1],
            "line": info.get("line", "")}


def stage_input(run_dir: Path, stage: str, corpus_files: int, corpus_bytes: int) -> tuple[int, int]:
    """(records, bytes) a stage reads: the corpus folder for corpus, the kept corpus for the others."""
    from textbooklm.store import Dataset

    if stage == "corpus":
        return corpus_files, corpus_bytes
    name = {"judge": "corpus", "classify": "judge", "filter": "corpus", "decontam": "filter"}[stage]
    ds = Dataset(run_dir / name)
    schema = ds.schema()
    n_bytes = sum(b or 0 for b in ds.column("n_bytes")) if schema is not None and "n_bytes" in schema.names else 0
    return ds.num_rows, n_bytes


def run_all(raw: dict, run_dir: Path, files: int, n_bytes: int, worker_match: str | None = None) -> dict:
    out = {}
    for stage in STAGES:
        r = run_stage(raw, run_dir, stage, worker_match)
        r["records"], r["bytes"] = stage_input(run_dir, stage, files, n_bytes)
        out[stage] = r
        print(f"  {stage}: {r['seconds']:.1f} s, {r['records']} records, parent {r['parent_rss'] / 2**20:.0f} MB, "
              f"worker {r['worker_rss'] / 2**20:.0f} MB, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return out


def snapshot(run_dir: Path) -> dict:
    """What must be equal between executors: ids + provenance of the data stages, classify's metrics."""
    from textbooklm.store import Dataset

    snap = {}
    for name in ("corpus", "corpus/rejected", "judge", "filter", "filter/rejected", "decontam"):
        folder = run_dir / name
        if not (folder / "manifest.json").exists():
            continue
        ds = Dataset(folder)
        schema = ds.schema()
        cols = [c for c in ("id", "provenance") if schema is not None and c in schema.names]
        snap[name] = sorted(tuple(r[c] for c in cols) for r in ds.iter_records(cols))
    snap["classify"] = json.loads((run_dir / "classify" / "metrics.json").read_text())["heads"]
    return snap


# -- report ----------------------------------------------------------------------------------------
def exponent(a: float, b: float, ratio: float) -> float:
    return math.log(max(b, 1e-9) / max(a, 1e-9)) / math.log(ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-files", type=int, default=300, help="stdlib files at 1x (0 = the whole stdlib)")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--judge-sample", type=int, default=600, help="records the heuristic judge scores")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor part")
    parser.add_argument("--ray-scales", default="1", help="scales also run on the 2-node Ray cluster")
    parser.add_argument("--keep", type=Path, help="keep corpora and runs in this folder")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="the first N stages to run (e.g. 'corpus' alone; each needs the ones before it)")
    args = parser.parse_args()
    chosen = args.stages.split(",")
    if chosen != STAGES[: len(chosen)]:
        parser.error(f"--stages must be a prefix of {','.join(STAGES)}")
    STAGES[:] = chosen
    scales = [int(s) for s in args.scales.split(",")]
    base = stdlib_sample(args.base_files)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"base: {len(base)} stdlib files; scales {scales}; work in {root}", file=sys.stderr)

    results: dict[str, dict[int, dict]] = {"local": {}, "ray": {}}
    sizes: dict[int, tuple[int, int]] = {}
    loads: dict[str, list[float]] = {"local": [], "ray": []}
    for k in scales:
        corpus = root / f"corpus-{k}x"
        if corpus.exists():
            shutil.rmtree(corpus)
        sizes[k] = build_corpus(corpus, base, k)
        print(f"{k}x: {sizes[k][0]} files, {sizes[k][1] / 2**20:.1f} MB", file=sys.stderr)
        run_dir = root / f"run-{k}x-local"
        shutil.rmtree(run_dir, ignore_errors=True)
        loads["local"].append(os.getloadavg()[0])
        results["local"][k] = run_all(config(corpus, args.workers, judge_sample=args.judge_sample), run_dir,
                                      *sizes[k])
        loads["local"].append(os.getloadavg()[0])

    identical: dict[int, dict[str, bool]] = {}
    if not args.no_ray:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        try:
            for k in [int(s) for s in args.ray_scales.split(",")]:
                run_dir = root / f"run-{k}x-ray"
                shutil.rmtree(run_dir, ignore_errors=True)
                raw = config(root / f"corpus-{k}x", args.workers, "ray", cluster.address, args.judge_sample)
                loads["ray"].append(os.getloadavg()[0])
                results["ray"][k] = run_all(raw, run_dir, *sizes[k], worker_match="ray::")
                loads["ray"].append(os.getloadavg()[0])
                a, b = snapshot(root / f"run-{k}x-local"), snapshot(run_dir)
                identical[k] = {name: a.get(name) == b.get(name) for name in a}
        finally:
            cluster.shutdown()

    print(f"scale benchmark: stdlib x{scales} ({len(base)} files at 1x, mutated copies), {args.workers} workers, "
          f"{os.cpu_count()} cores; load average (1 min) {min(loads['local']):.1f}-{max(loads['local']):.1f} "
          "during the local runs")
    print("| executor | stage | scale | records in | MB in | seconds | records/s | MB/s | parent RSS MB | "
          "worker RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ex in ("local", "ray"):
        for stage in STAGES:
            for k, res in results[ex].items():
                r = res[stage]
                print(f"| {ex} | {stage} | {k}x | {r['records']} | {r['bytes'] / 2**20:.1f} | {r['seconds']:.1f} | "
                      f"{r['records'] / r['seconds']:.0f} | {r['bytes'] / 2**20 / r['seconds']:.2f} | "
                      f"{r['parent_rss'] / 2**20:.0f} | {r['worker_rss'] / 2**20:.0f} |")
    lo, hi = scales[0], scales[-1]
    growth = hi / lo
    mid = scales[-2] if len(scales) > 2 else lo
    print(f"| stage | time exponent {lo}x->{hi}x | {mid}x->{hi}x | worker memory {hi}x/{lo}x | "
          f"parent memory {hi}x/{lo}x |")
    print("|---|---|---|---|---|")
    exps = {}
    local = results["local"]
    for stage in STAGES:
        a, b = local[lo][stage], local[hi][stage]
        # time against the stage's own input growth (judge/classify read a fixed sample: exponent vs corpus size)
        exps[stage] = exponent(a["seconds"], b["seconds"], growth)
        wm = b["worker_rss"] / a["worker_rss"] if a["worker_rss"] else float("nan")
        e_mid = exponent(local[mid][stage]["seconds"], b["seconds"], hi / mid) if mid != lo else exps[stage]
        print(f"| {stage} | {exps[stage]:.2f} | {e_mid:.2f} | {wm:.2f} | "
              f"{b['parent_rss'] / max(a['parent_rss'], 1):.2f} |")
    for k, same in identical.items():
        print(f"ray (2-node local cluster) vs local at {k}x: " + ", ".join(f"{n} {'identical' if v else 'DIFFERENT'}"
                                                                         for n, v in same.items()))
    tokens_hi = sizes[hi][1] / 4
    factor = TARGET_TOKENS / tokens_hi
    hours2 = hours64 = 0.0
    for stage in STAGES:
        # Sharded stages: at least linear (a smaller measured exponent is fixed start-up cost being
        # amortised, not a sub-linear algorithm); judge and classify read a fixed sample: constant.
        if stage in SHARDED:
            t = local[hi][stage]["seconds"] * factor ** max(exps[stage], 1.0) / 3600
        else:  # phi-1 judged 100k files: the fixed-sample stages grow with the sample, not the corpus
            t = local[hi][stage]["seconds"] * PHI1_JUDGED / args.judge_sample / 3600
        hours2 += t
        hours64 += t / 32 if stage in SHARDED else t
    worst = max(STAGES, key=lambda s: exps[s])
    print(f"scale: worst stage {worst} grows with exponent {exps[worst]:.2f} ({lo}x->{hi}x); extrapolated to 35B "
          f"tokens ({factor:,.0f}x the {hi}x corpus; judge + classify on 100k files): {hours2:,.1f} 2-core hours, "
          f"{hours64:,.1f} hours on 64 cores "
          f"(load {max(loads['local']):.1f})")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
