"""Benchmark: the filter's embedders (static vs MiniLM); and the filter stage's batches vs one record at a time.

``--vs-loop`` mode: embed + classify the standard library, batched (the filter stage's path) vs one record at a
time.

Both sides use the same saved classifier and the same embedder weights in the same process on the same texts:

* stage: :func:`textbooklm.quality.filter_stage.score_texts` shard by shard, as a filter worker runs it
  (length-sorted batches, in the precision saved with the classifier: ``auto`` is bf16 on a CPU with
  AVX512-BF16, else float32);
* anchor: the plain float32 per-record loop, ``embed([text])`` then ``score`` for each record, the way a
  naive filter (or an LLM-judge-style loop) would run it;
* also timed, to show where the gain comes from: the stage's batches in float32.

The sides are timed shard by shard in turn (anchor, float32 batches, stage), so a change in the load of a
shared machine hits all of them alike; the load average is printed. The stage's keep/drop decisions are
compared with the anchor's on every record.
Nothing is reused from the classify stage: every record is embedded and scored by every side.

Without ``--run`` it first builds a run in a temp folder: corpus (stdlib) -> heuristic judge -> classify
(MiniLM + random forest, default config). Prints each side's rate, F1 and agreement, then the ratio LAST.

    python benchmarks/bench_filter.py --vs-loop [--run RUN_DIR] [--limit N] [--precision fp32|bf16|auto]

Default mode (``python benchmarks/bench_filter.py [--run RUN_DIR] [--lm PATH]``): the filter's embedders
on the same judged labels. Each embedder embeds every judged record once, at the classify stage's cut
(``--max-chars``, the demo's 300; the static embedder also at 2,000), timed together with the random
forest scoring them (the filter's path: records/s); then 8 seeded stratified 80/20 splits each train the
random forest (demo settings) and give held-out F1 and ROC-AUC (mean +- sd). ``lm:PATH`` (a code LM's
hidden states, the paper's choice) joins the table when ``--lm`` names an exported model folder.
Prints the table, then static vs MiniLM (F1 difference, then the records/s ratio LAST).
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


def build_run(run_dir: Path, classify: bool = True) -> None:
    from textbooklm.config import parse_config
    from textbooklm.pipeline import run_pipeline

    raw = {"corpus": {"sources": [{"kind": "stdlib"}]}, "judge": {"judges": ["heuristic"]}}
    if classify:
        raw["classify"] = {"embedder": "minilm", "heads": ["random_forest"]}
    run_pipeline(parse_config(raw), run_dir)


SEEDS = range(8)


def compare_embedders(run_dir: Path, specs: list[tuple[str, int]], batch_size: int) -> list[dict]:
    """Per (embedder, max_chars): filter-path records/s and held-out F1 / ROC-AUC over 8 seeded splits."""
    import numpy as np

    from textbooklm.quality.classifier import QualityClassifier, metrics, train_head
    from textbooklm.quality.classify_stage import embed_texts, split_indices
    from textbooklm.store import Dataset

    table = Dataset(run_dir / "judge").to_table(columns=["text", "label", "score"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    labels = np.asarray(table.column("label").to_pylist(), dtype=int)
    scores = np.asarray(table.column("score").to_pylist(), dtype=float)
    rows = []
    for spec, max_chars in specs:
        embed_texts(spec, texts[:8], max_chars, 8)  # load the model outside the timing (a worker loads once)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        x = embed_texts(spec, texts, max_chars, batch_size)
        t_embed = time.perf_counter() - t0
        f1s, aucs = [], []
        for seed in SEEDS:
            train, test = split_indices(labels, 0.2, seed)
            forest, _, _, cut = train_head("random_forest", x[train], labels[train], scores[train], label_cut=0.7,
                                           seed=seed)
            clf = QualityClassifier(kind="random_forest", embedder=spec, max_chars=max_chars, cut=cut, forest=forest)
            if seed == 0:  # the filter's other half: scoring every record with the saved forest
                t1 = time.perf_counter()
                clf.score(x)
                t_score = time.perf_counter() - t1
            m = metrics(labels[test], clf.score(x[test]), cut)
            f1s.append(m["f1"])
            aucs.append(m["roc_auc"])
        rows.append({"embedder": spec, "max_chars": max_chars, "dim": int(x.shape[1]), "n": len(texts),
                     "rate": len(texts) / (t_embed + t_score), "embed_s": t_embed, "score_s": t_score,
                     "f1": (float(np.mean(f1s)), float(np.std(f1s))),
                     "auc": (float(np.mean(aucs)), float(np.std(aucs))),
                     "load": (load0, os.getloadavg()[0])})
        r = rows[-1]
        print(f"  {spec} @{max_chars}: {r['rate']:.1f} records/s, F1 {r['f1'][0]:.3f}", file=sys.stderr)
    return rows


def main_compare(args: argparse.Namespace) -> None:
    """Default mode: the table of embedders, then static vs MiniLM with the ratio last."""
    tmp = None
    run_dir = args.run
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_filter_")
        run_dir = Path(tmp.name)
        print("building corpus -> judge (heuristic) in", run_dir, file=sys.stderr)
        build_run(run_dir, classify=False)
    specs = [("minilm", args.max_chars), ("static", args.max_chars), ("static", 2000), ("hashing", args.max_chars)]
    if args.lm:
        specs.append((f"lm:{args.lm}", args.max_chars))
    rows = compare_embedders(run_dir, specs, args.batch_size)
    n = rows[0]["n"]
    print(f"{n} judged stdlib records (heuristic labels, {os.cpu_count()} cores); random forest (100 trees, "
          f"balanced), 8 seeded 80/20 splits; records/s = embed + score every record in one process")
    print("| embedder | chars | dim | records/s | embed + score s | held-out F1 | ROC-AUC | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['embedder']} | {r['max_chars']} | {r['dim']} | {r['rate']:.1f} | {r['embed_s']:.2f} + "
              f"{r['score_s']:.2f} | {r['f1'][0]:.3f} +- "
              f"{r['f1'][1]:.3f} | {r['auc'][0]:.3f} +- {r['auc'][1]:.3f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    if not args.lm:
        print("| lm:PATH | - | - | - | - | not measured: no pretrained model given (--lm RUN/pretrain/hf) | | |")
    mini, static = rows[0], rows[1]
    print(f"filter: static F1 {static['f1'][0] - mini['f1'][0]:+.3f} vs minilm ({static['f1'][0]:.3f} vs "
          f"{mini['f1'][0]:.3f}, ROC-AUC {static['auc'][0]:.3f} vs {mini['auc'][0]:.3f}) at {args.max_chars} chars; "
          f"static {static['rate']:.0f} records/s vs minilm {mini['rate']:.1f}, load {mini['load'][0]:.1f}: "
          f"{static['rate'] / mini['rate']:.0f}x minilm records/s")
    if tmp is not None:
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-loop", action="store_true", help="the stage vs the per-record fp32 MiniLM loop")
    parser.add_argument("--lm", help="an exported LM folder (RUN/pretrain/...) to add as lm:PATH")
    parser.add_argument("--max-chars", type=int, default=300, help="characters embedded (the demo's classify cut)")
    parser.add_argument("--run", type=Path, help="a run folder with finished corpus and classify stages")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N records (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64, help="the filter stage's default")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="the stage side's embedding precision (default: the one saved with the classifier)")
    args = parser.parse_args()
    if not args.vs_loop:
        main_compare(args)
        return

    import numpy as np
    import pyarrow.parquet as pq

    from textbooklm.embeddings import load_embedder, resolve_precision
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
    if args.precision:
        clf.precision = args.precision
    fp32 = QualityClassifier.load(run_dir / "classify" / "model")
    fp32.precision = "fp32"
    corpus = Dataset(run_dir / "corpus")
    shards = []
    for p in corpus.shards():
        table = pq.read_table(p, columns=["id", "text"])
        shards.append((table.column("id").to_pylist(), [t or "" for t in table.column("text").to_pylist()]))
    if args.limit:
        ids = [i for s in shards for i in s[0]][: args.limit]
        texts = [t for s in shards for t in s[1]][: args.limit]
        shards = [(ids[i : i + 200], texts[i : i + 200]) for i in range(0, len(ids), 200)]
    ids = [i for s in shards for i in s[0]]
    texts = [t for s in shards for t in s[1]]
    n = len(texts)

    # Load both models outside the timings (a filter worker loads its model once, see the README).
    for c in (clf, fp32):
        embed_texts(c.embedder, texts[:8], c.max_chars, 8, precision=c.precision)
    embedder = load_embedder(clf.embedder, "fp32")
    tokens = getattr(embedder, "tokenize", None)
    n_tokens = sum(len(x) for x in tokens([t[: clf.max_chars] for t in texts])["input_ids"]) if tokens else 0

    load_before = os.getloadavg()
    times = {"loop": 0.0, "fp32": 0.0, "stage": 0.0}
    looped, batched32, staged = [], [], []
    for _, shard in shards:  # in turn, shard by shard: a load change hits every side alike
        t0 = time.perf_counter()
        looped += [float(fp32.score(embed_texts(fp32.embedder, [t], fp32.max_chars, 1))[0]) for t in shard]
        t1 = time.perf_counter()
        batched32.append(score_texts(fp32, shard, args.batch_size))
        t2 = time.perf_counter()
        staged.append(score_texts(clf, shard, args.batch_size))
        t3 = time.perf_counter()
        times["loop"] += t1 - t0
        times["fp32"] += t2 - t1
        times["stage"] += t3 - t2
    load_after = os.getloadavg()

    anchor = np.asarray(looped)
    stage = np.concatenate(staged)
    agree = float(np.mean((stage >= clf.cut) == (anchor >= clf.cut)))
    agree32 = float(np.mean((np.concatenate(batched32) >= clf.cut) == (anchor >= clf.cut)))
    metrics = json.loads((run_dir / "classify" / "metrics.json").read_text())
    precision = resolve_precision(clf.precision)
    tok = f", {n_tokens / n:.0f} tokens/record embedded" if n_tokens else ""
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min); {os.cpu_count()} cores, "
          f"{n} records{tok}, max_chars {clf.max_chars}")
    print(f"per-record loop (fp32): {n / times['loop']:.1f} records/s ({times['loop']:.1f} s)")
    print(f"batched fp32 (batches of {args.batch_size}): {n / times['fp32']:.1f} records/s ({times['fp32']:.1f} s, "
          f"{times['loop'] / times['fp32']:.2f}x; same decision on {agree32:.1%})")
    print(f"filter stage ({precision}, batches of {args.batch_size}): {n / times['stage']:.1f} records/s "
          f"({times['stage']:.1f} s, {n_tokens / times['stage']:.0f} tokens/s)")
    f1 = metrics["heads"][clf.kind]["test"]["f1"]
    # The saved model trained on every label: its scores of labelled records are in sample, so no F1 is
    # recomputed from them here; classify's out-of-fold F1 is the classifier's figure.
    print(f"out-of-fold F1 ({clf.kind} on {clf.embedder}, {metrics['n_labelled']} labelled records): {f1:.3f} in "
          f"classify; stage and loop take the same keep/drop decision on {agree:.2%} of records "
          f"({int(round((1 - agree) * n))} differ; max |score diff| {np.abs(stage - anchor).max():.3f})")
    print(f"filter: {times['loop'] / times['stage']:.1f}x per-record loop ({n} stdlib records, embed {clf.embedder} "
          f"{precision} + {clf.kind} vs fp32 one at a time, {os.cpu_count()} cores, load {load_before[0]:.1f})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
