"""Benchmark: embed + classify the standard library, batched (the filter stage's path) vs one record at a time.

Both sides use the same saved classifier and the same embedder in the same process on the same texts:

* stage: :func:`textbooklm.quality.filter_stage.score_texts` shard by shard (batches of 64);
* anchor: a per-record loop, ``embed([text])`` then ``score`` for each record, the way a naive filter
  (or an LLM-judge-style loop) would run it.

Without ``--run`` it first builds a run in a temp folder: corpus (stdlib) -> heuristic judge -> classify
(MiniLM + random forest). Prints each side's rate, the held-out F1, then the ratio LAST.

    python benchmarks/bench_filter.py [--run RUN_DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_run(run_dir: Path) -> None:
    from textbooklm.config import parse_config
    from textbooklm.pipeline import run_pipeline

    raw = {"corpus": {"sources": [{"kind": "stdlib"}]}, "judge": {"judges": ["heuristic"]},
           "classify": {"embedder": "minilm", "heads": ["random_forest"]}}
    run_pipeline(parse_config(raw), run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder with finished corpus and classify stages")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N records (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from textbooklm.quality.classifier import QualityClassifier
    from textbooklm.quality.classify_stage import embed_texts
    from textbooklm.quality.filter_stage import score_texts
    from textbooklm.store import Dataset

    tmp = None
    run_dir = args.run
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_filter_")
        run_dir = Path(tmp.name)
        print("building corpus -> judge -> classify in", run_dir, file=sys.stderr)
        build_run(run_dir)
    clf = QualityClassifier.load(run_dir / "classify" / "model")
    corpus = Dataset(run_dir / "corpus")
    shards = [[t or "" for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]
              for p in corpus.shards()]
    texts = [t for s in shards for t in s]
    if args.limit:
        texts, shards = texts[: args.limit], [texts[: args.limit]]
    n = len(texts)

    embed_texts(clf.embedder, texts[:8], clf.max_chars, 8)  # load the model outside the timings

    t0 = time.perf_counter()
    batched = [score_texts(clf, s, args.batch_size) for s in shards]
    stage_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    looped = [float(clf.score(embed_texts(clf.embedder, [t], clf.max_chars, 1))[0]) for t in texts]
    loop_s = time.perf_counter() - t0

    import numpy as np

    batched_all = np.concatenate(batched)
    agree = float(np.mean((batched_all >= clf.cut) == (np.asarray(looped) >= clf.cut)))
    metrics = json.loads((run_dir / "classify" / "metrics.json").read_text())
    f1 = metrics["heads"][clf.kind]["test"]["f1"]
    print(f"per-record loop: {n / loop_s:.1f} records/s ({n} records, {loop_s:.1f} s)")
    print(f"filter stage (batches of {args.batch_size}): {n / stage_s:.1f} records/s ({stage_s:.1f} s)")
    print(f"held-out F1 ({clf.kind} on {clf.embedder}, {metrics['n_test']} records): {f1:.3f}; "
          f"same keep/drop decision on {agree:.1%} of records")
    print(f"filter: {loop_s / stage_s:.1f}x per-record loop ({n} stdlib records, embed {clf.embedder} + "
          f"{clf.kind}, {os.cpu_count()} cores)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
