"""The sharded dedup decision equals the single-process one, resumes, and bounds its partitions."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbooklm.corpus.config import CorpusConfig
from textbooklm.corpus.dedup_shards import decide_sharded, partitions_for
from textbooklm.corpus.stage import decide, plan_tasks, read_shard
from textbooklm.executor import map_shards

WORDS = [f"name_{i}" for i in range(400)] + ["def", "return", "if", "else", "for", "in", "(", ")", ":", "+", "="]


def make_corpus(folder: Path, seed: int = 0) -> Path:
    """Unique files, exact copies, light mutations, and chains (a~b~c with a, c not alike): all dedup cases."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)

    def text(n: int) -> list[str]:
        return [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(n)]

    def mutate(lines: list[str], k: int) -> list[str]:
        out = list(lines)
        for i in rng.sample(range(len(out)), k):
            out[i] = " ".join(rng.choice(WORDS) for _ in range(8))
        return out

    files: list[list[str]] = []
    for _ in range(120):
        base = text(60)
        files.append(base)
        r = rng.random()
        if r < 0.2:
            files.append(list(base))  # exact
        elif r < 0.45:
            files.append(mutate(base, 1))  # near
        elif r < 0.55:  # a chain: each step a little further away
            step = base
            for _ in range(4):
                step = mutate(step, 1)
                files.append(step)
    order = list(range(len(files)))
    rng.shuffle(order)
    for name, i in enumerate(order):
        (folder / f"f{name:04d}.py").write_text("\n".join(files[i]) + "\n")
    return folder


def read_all(cfg: CorpusConfig, work: Path) -> list[tuple[str, int]]:
    tasks = plan_tasks(cfg, work)
    return [(t["key"], read_shard(t)["kept"]) for t in tasks], tasks


def sharded_table(shards, cfg, work, workers=1, **kw) -> pa.Table:
    fn = functools.partial(map_shards, workers=workers)
    counts = decide_sharded(shards, cfg.dedup, work,
                            lambda f, ts, m, description: fn(f, ts, m, description=description), **kw)
    table = pa.concat_tables([pq.read_table(work / "dedup" / "decisions" / key) for key, _ in shards])
    return table, counts


def config(folder: Path, **dedup) -> CorpusConfig:
    return CorpusConfig.model_validate({
        "sources": [{"kind": "folder", "path": str(folder)}], "files_per_shard": 23,
        "filters": {"min_lines": 1, "max_mean_line_length": 200}, "dedup": dedup,
    })


@pytest.mark.parametrize("dedup", [{}, {"exact": False}, {"near": False}, {"threshold": 0.5, "bands": 32}])
def test_sharded_decisions_equal_single_process(tmp_path, dedup):
    cfg = config(make_corpus(tmp_path / "code"), **dedup)
    work = tmp_path / "work"
    shards, tasks = read_all(cfg, work)
    reference = decide(tasks, cfg.dedup, work)
    got, counts = sharded_table(shards, cfg, work, rows_per_partition=500)
    assert counts["partitions"] > 4  # really sharded
    assert got.to_pylist() == reference.to_pylist()
    decisions = reference.column("decision").to_pylist()
    if cfg.dedup.exact:
        assert decisions.count("exact-duplicate") >= 10 and counts["exact_duplicates"] == decisions.count(
            "exact-duplicate")
    if cfg.dedup.near:
        assert decisions.count("near-duplicate") >= 20
        near = {c for c, d in zip(reference.column("cluster").to_pylist(), decisions, strict=True)
                if d == "near-duplicate"}
        assert counts["near_clusters"] == len(near)


def test_rerun_after_losing_steps_gives_the_same_decisions(tmp_path):
    """Markers make every step resumable: with some markers and the components file gone, the
    re-run redoes only that work and lands on the same decisions."""
    cfg = config(make_corpus(tmp_path / "code", seed=1))
    work = tmp_path / "work"
    shards, _ = read_all(cfg, work)
    first, _ = sharded_table(shards, cfg, work, rows_per_partition=800)
    markers = work / "markers"
    for step in ("dedup-bands", "dedup-pairs", "dedup-decisions"):
        for marker in sorted((markers / step).glob("*.json"))[::2]:
            marker.unlink()
    (work / "dedup" / "components.parquet").unlink()
    again, _ = sharded_table(shards, cfg, work, rows_per_partition=800)
    assert again.to_pylist() == first.to_pylist()


def test_partitions_grow_with_the_corpus():
    assert partitions_for(0, 16) == 1
    assert partitions_for(25_000, 16, 400_000) == 1
    assert partitions_for(20_000_000, 16) == 160  # The Stack: ~2M band rows (~70 MB of keys) per pairs worker


@pytest.mark.slow
def test_stdlib_sharded_equals_single_process(tmp_path):
    cfg = CorpusConfig.model_validate({"sources": [{"kind": "stdlib"}], "files_per_shard": 150})
    work = tmp_path / "work"
    shards, tasks = read_all(cfg, work)
    reference = decide(tasks, cfg.dedup, work)
    got, counts = sharded_table(shards, cfg, work, rows_per_partition=3000)
    assert counts["partitions"] >= 8
    assert got.to_pylist() == reference.to_pylist()
    assert reference.column("decision").to_pylist().count("near-duplicate") > 5


@pytest.mark.slow
@pytest.mark.parametrize("step,after", [("dedup-bands", 3), ("dedup-decisions", 3)])
def test_sigkill_in_a_dedup_step_then_rerun_equals_uninterrupted(tmp_path, step, after):
    """kill -9 of the whole run in the middle of a dedup step; the re-run finishes with the same output."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from textbooklm.store import Dataset

    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nworkers = 2\n[corpus]\nfiles_per_shard = 60\nsources = [{kind = "stdlib"}]\n')
    cmd = [sys.executable, "-m", "textbooklm.cli", "run", str(cfg), "--out"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([*cmd, str(clean)], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = killed / "corpus" / "_work" / "markers" / step
    deadline = time.time() + 180
    while len(list(markers.glob("*.json"))) < after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "corpus" / "_stage.json").exists(), "the run finished before it could be killed"
    subprocess.run([*cmd, str(killed)], check=True, capture_output=True)

    def snap(run_dir):
        return [[(r["id"], r["provenance"]) for r in Dataset(run_dir / name).iter_records(["id", "provenance"])]
                for name in ("corpus", "corpus/rejected")]

    assert snap(clean) == snap(killed)
    assert json.loads((killed / "corpus" / "manifest.json").read_text())["summary"]["near_duplicates"] > 5


def test_component_roots_match_union_find_on_random_graphs():
    """The numpy min-label propagation gives every node its component's smallest node (long chains too)."""
    from textbooklm.corpus.dedup_shards import component_roots
    from textbooklm.minhash import clusters

    rng = np.random.default_rng(0)
    for n, m in ((2, 1), (50, 30), (400, 380), (1000, 3000)):
        i, j = rng.integers(0, n, m), rng.integers(0, n, m)
        keep = i != j
        pairs = np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1)
        nodes = np.unique(pairs)
        expected = clusters(n, pairs)[nodes]
        assert np.array_equal(component_roots(nodes * 7 + 3, pairs[:, 0] * 7 + 3, pairs[:, 1] * 7 + 3),
                              expected * 7 + 3)
    chain = np.arange(5000)  # a path 0-1-2-...: one component, diameter 5,000
    assert set(component_roots(chain, chain[1:][::-1], chain[:-1][::-1]).tolist()) == {0}
