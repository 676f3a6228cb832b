"""Benchmark: the corpus stage's dedup end to end against datatrove's 4 MinHash stages, on the same JSONL.

datatrove's MinHash deduplication is what FineWeb was built with, so it is what a user would run
instead of ``textbooklm corpus``. Both read the same folder of JSONL shards (bench_scale's mutated
stdlib at each scale: copy 0 verbatim, later copies 25% exact, 40% near, 35% renamed), with the same
worker count, 5-gram shingles and 16 bands x 8 rows, each in its own process tree, alternately (A B),
in one invocation of this script:

* textbooklm: ``run_pipeline(only=["corpus"])`` with every quality filter off (both tools must judge
  the same documents), reading the folder as one ``jsonl`` source, one shard per file;
* datatrove: ``MinhashDedupSignature -> MinhashDedupBuckets -> MinhashDedupCluster -> MinhashDedupFilter``
  on ``LocalPipelineExecutor`` (one task per JSONL file, 16 bucket tasks), run by the interpreter of a
  separate venv (``--datatrove-python``; datatrove is not a dependency of textbooklm). Without it the
  benchmark says so and stops.

Per tool and scale: wall seconds, CPU seconds of the whole process tree, docs/s, MB/s, peak RSS of the
driver ("parent") and of its largest descendant, and precision / recall of the removed set against the
planted truth: a document is a true duplicate when its exact 5-gram shingle Jaccard (whitespace tokens,
as textbooklm shingles; 32-bit shingle hashes) with an earlier document of its group reaches 0.8. A group
is one stdlib file and all its copies, merged with any other stdlib file it is a near duplicate of.
Then the removed-set agreement (Jaccard of the two removed sets) and, last, the speed ratio per scale.

    python benchmarks/bench_datatrove.py [--base-files 0] [--scales 1,4,16] [--workers 2] \
        [--datatrove-python /tmp/dt-venv/bin/python]

Making datatrove's venv: ``python -m venv /tmp/dt-venv && /tmp/dt-venv/bin/pip install datatrove==0.10.1
tokenizers orjson 'xxhash<4'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import build_corpus, stdlib_sample  # noqa: E402

NGRAM, BANDS, ROWS, THRESHOLD = 5, 16, 8, 0.8
DOCS_PER_FILE = 200

OURS = """
import json, sys
from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
cfg = parse_config(json.loads(sys.argv[1]))
run_pipeline(cfg, sys.argv[2], only=["corpus"])
"""

DATATROVE = """
import glob, sys
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from datatrove.utils.word_tokenizers import WordTokenizer


class SplitTokenizer(WordTokenizer):  # whitespace tokens (str.split): the cheapest datatrove can be given

    def word_tokenize(self, text):
        return text.split()

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(0, len(text))]


if __name__ == "__main__":  # the pool's workers import this file
    data, work, workers, bands, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    language = SplitTokenizer() if sys.argv[6] == "split" else "en"  # "en": spaCy, datatrove's default
    files = len(glob.glob(data + "/*.jsonl"))
    config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows)
    logs = work + "/logs"
    s1 = LocalPipelineExecutor([JsonlReader(data),
                                MinhashDedupSignature(output_folder=work + "/sigs", config=config, language=language)],
                               tasks=files, workers=workers, logging_dir=logs + "/1")
    s2 = LocalPipelineExecutor([MinhashDedupBuckets(input_folder=work + "/sigs", output_folder=work + "/buckets",
                                                    config=config)],
                               tasks=bands, workers=workers, logging_dir=logs + "/2", depends=s1)
    s3 = LocalPipelineExecutor([MinhashDedupCluster(input_folder=work + "/buckets", output_folder=work + "/remove",
                                                    config=config)],
                               tasks=1, logging_dir=logs + "/3", depends=s2)
    s4 = LocalPipelineExecutor([JsonlReader(data),
                                MinhashDedupFilter(input_folder=work + "/remove",
                                                   exclusion_writer=JsonlWriter(work + "/removed")),
                                JsonlWriter(work + "/kept")],
                               tasks=files, workers=workers, logging_dir=logs + "/4", depends=s3)
    s4.run()
"""


# -- the input ---------------------------------------------------------------------------------------
def write_jsonl(corpus: Path, out: Path) -> tuple[list[str], list[str], int]:
    """The corpus folder as JSONL shards of DOCS_PER_FILE documents: (ids, texts, bytes). An id is the
    file's path under the corpus (``copyNNN/IIIII_name.py``); undecodable files are left out for both."""
    out.mkdir(parents=True)
    ids, texts = [], []
    for path in sorted(corpus.rglob("*.py")):
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            ids.append(str(path.relative_to(corpus)))
            texts.append(text)
    for start in range(0, len(ids), DOCS_PER_FILE):
        with open(out / f"{start // DOCS_PER_FILE:05d}.jsonl", "w") as fh:
            for i in range(start, min(start + DOCS_PER_FILE, len(ids))):
                fh.write(json.dumps({"id": ids[i], "text": texts[i]}) + "\n")
    return ids, texts, sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


# -- the planted truth -------------------------------------------------------------------------------
def shingle_set(text: str) -> np.ndarray:
    from textbooklm.minhash import shingle_hashes

    return np.unique(shingle_hashes(text, NGRAM))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


def base_groups(ids: list[str], texts: list[str]) -> dict[str, int]:
    """Stdlib file index -> group: files of copy 0 joined when their exact Jaccard reaches the threshold
    (candidates from a loose 32 x 4 banding, so pairs down to ~0.5 are looked at)."""
    from textbooklm.minhash import MinHasher, candidate_pairs

    base = [(i, t) for i, t in zip(ids, texts, strict=True) if i.startswith("copy000/")]
    names = [i.split("/", 1)[1].split("_", 1)[0] for i, _ in base]
    sigs = MinHasher(128, NGRAM, 7).signatures([t for _, t in base])
    parent = list(range(len(base)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sets = [shingle_set(t) for _, t in base]
    for a, b in candidate_pairs(sigs, 32):
        if jaccard(sets[a], sets[b]) >= THRESHOLD:
            parent[max(find(a), find(b))] = min(find(a), find(b))
    return {names[k]: find(k) for k in range(len(base))}


def true_duplicates(ids: list[str], texts: list[str]) -> set[str]:
    """Documents with exact Jaccard >= threshold to an earlier document of their group."""
    groups = base_groups(ids, texts)
    members: dict[int, list[int]] = {}
    for k, doc in enumerate(ids):
        members.setdefault(groups.get(doc.split("/", 1)[1].split("_", 1)[0], -1 - k), []).append(k)
    dups = set()
    for docs in members.values():
        sets = [shingle_set(texts[k]) for k in docs]
        for j in range(1, len(docs)):
            if any(jaccard(sets[j], sets[i]) >= THRESHOLD for i in range(j)):
                dups.add(ids[docs[j]])
    return dups


# -- running one tool --------------------------------------------------------------------------------
def run_tree(cmd: list[str]) -> dict:
    """Run ``cmd``; sample its process tree every 50 ms: peak RSS of the driver and of its largest
    descendant, and CPU seconds (the last reading of each process, user + system; a process's last
    < 50 ms are missed, alike for both tools)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks, cpu = [0, 0], {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                root = psutil.Process(proc.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                except psutil.Error:
                    continue
                slot = 0 if p.pid == proc.pid else 1
                peaks[slot] = max(peaks[slot], rss)
                # own time only: a parent's children_* times repeat the workers' it has reaped
                cpu[(p.pid, p.create_time())] = times.user + times.system
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return {"wall": wall, "cpu": sum(cpu.values()), "parent_rss": peaks[0], "worker_rss": peaks[1]}


def removed_by(tool: str, work: Path) -> set[str]:
    """The documents a tool removed, read here after its run (so its own memory figures leave this out)."""
    if tool == "textbooklm":
        from textbooklm.store import Dataset

        rejected = Dataset(work / "corpus" / "rejected").iter_records(["path", "reason"])
        return {r["path"] for r in rejected if r["reason"] in ("exact-duplicate", "near-duplicate")}
    import gzip

    out = set()
    for path in sorted((work / "removed").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as fh:
            out.update(json.loads(line)["id"] for line in fh)
    return out


def ours_config(data: Path, workers: int) -> dict:
    off = {k: 0 for k in ("min_lines", "max_lines", "max_line_length", "max_mean_line_length", "min_alnum_fraction")}
    return {"run": {"workers": workers, "seed": 0},
            "corpus": {"files_per_shard": 1,
                       "sources": [{"kind": "jsonl", "path": str(data), "path_column": "id"}],
                       "filters": {**off, "reject_autogenerated": False, "max_bytes": 50_000_000},
                       "dedup": {"ngram": NGRAM, "num_perm": BANDS * ROWS, "bands": BANDS, "threshold": THRESHOLD}}}


def scores(removed: set[str], truth: set[str]) -> tuple[float, float]:
    hit = len(removed & truth)
    return hit / max(len(removed), 1), hit / max(len(truth), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-files", type=int, default=0, help="stdlib files at 1x (0 = all)")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datatrove-python", default=os.environ.get("DATATROVE_PYTHON", "/tmp/dt-venv/bin/python"),
                        help="an interpreter with datatrove installed (its own venv)")
    parser.add_argument("--datatrove-tokenizer", choices=("split", "spacy"), default="split",
                        help="split: whitespace tokens (str.split), the fastest datatrove can be given; spacy: "
                        "its default for English (measured 11.8x slower end to end at 1x)")
    parser.add_argument("--keep", type=Path, help="keep corpora and runs in this folder")
    args = parser.parse_args()
    probe = subprocess.run([args.datatrove_python, "-c", "import datatrove"], capture_output=True) \
        if Path(args.datatrove_python).exists() else None
    if probe is None or probe.returncode != 0:
        print(f"datatrove: skipped: no interpreter with datatrove at {args.datatrove_python} (make one: "
              "python -m venv /tmp/dt-venv && /tmp/dt-venv/bin/pip install datatrove==0.10.1 tokenizers orjson "
              "'xxhash<4'; or pass --datatrove-python)")
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_datatrove_"))
    root.mkdir(parents=True, exist_ok=True)
    base = stdlib_sample(args.base_files)
    rows, ratios = [], []
    for k in [int(s) for s in args.scales.split(",")]:
        folder = root / f"corpus-{k}x"
        shutil.rmtree(folder, ignore_errors=True)
        build_corpus(folder, base, k)
        data = root / f"jsonl-{k}x"
        shutil.rmtree(data, ignore_errors=True)
        ids, texts, n_bytes = write_jsonl(folder, data)
        truth = true_duplicates(ids, texts)
        del texts
        print(f"{k}x: {len(ids)} docs, {n_bytes / 2**20:.1f} MB, {len(truth)} true duplicates; "
              f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        res = {}
        for tool in ("textbooklm", "datatrove"):
            work = root / f"{tool}-{k}x"
            shutil.rmtree(work, ignore_errors=True)
            if tool == "textbooklm":
                cmd = [sys.executable, "-c", OURS, json.dumps(ours_config(data, args.workers)), str(work)]
            else:
                work.mkdir()
                script = work / "datatrove_minhash.py"  # a file, so its workers can import the tokenizer class
                script.write_text(DATATROVE)
                cmd = [args.datatrove_python, str(script), str(data), str(work), str(args.workers),
                       str(BANDS), str(ROWS), args.datatrove_tokenizer]
            r = run_tree(cmd)
            r["removed"] = removed_by(tool, work)
            r["precision"], r["recall"] = scores(r["removed"], truth)
            res[tool] = r
            print(f"  {tool}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, removed {len(r['removed'])}, "
                  f"precision {r['precision']:.3f} recall {r['recall']:.3f}, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr)
        a, b = res["textbooklm"]["removed"], res["datatrove"]["removed"]
        agree = len(a & b) / max(len(a | b), 1)
        for tool, r in res.items():
            rows.append(f"| {tool} | {k}x | {len(ids)} | {n_bytes / 2**20:.1f} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                        f"{len(ids) / r['wall']:.0f} | {n_bytes / 2**20 / r['wall']:.2f} | "
                        f"{r['parent_rss'] / 2**20:.0f} | {r['worker_rss'] / 2**20:.0f} | {len(r['removed'])} | "
                        f"{r['precision']:.3f} | {r['recall']:.3f} | {agree:.3f} |")
        ratios.append((k, res["datatrove"]["wall"] / res["textbooklm"]["wall"], res))
    print(f"datatrove benchmark: {args.workers} workers, {os.cpu_count()} cores, datatrove tokenizer "
          f"{args.datatrove_tokenizer}, "
          f"load (1 min) {os.getloadavg()[0]:.1f}; "
          f"{NGRAM}-grams, {BANDS} bands x {ROWS} rows, threshold {THRESHOLD} (textbooklm; datatrove has none)")
    print("| tool | scale | docs | MB | wall s | CPU s | docs/s | MB/s | parent RSS MB | worker RSS MB | removed | "
          "precision | recall | removed-set agreement |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    last = ratios[-1][2]
    print("datatrove: " + ", ".join(f"{k}x {ratio:.2f}x datatrove" for k, ratio, _ in ratios)
          + f" (precision {last['textbooklm']['precision']:.3f}/{last['datatrove']['precision']:.3f}, "
          f"recall {last['textbooklm']['recall']:.3f}/{last['datatrove']['recall']:.3f} at {ratios[-1][0]}x)")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
