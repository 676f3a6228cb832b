"""The streaming finish: the same decisions as the all-in-memory dedup, round by round."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq

from textbooklm.synth.config import DiversityConfig
from textbooklm.synth.diversity import diversity_report, near_duplicate_roots
from textbooklm.synth.rounds import RoundStore, sample_id
from textbooklm.synth.textbooks_stage import REJECTED_SCHEMA, SCHEMA


def _doc(rng: random.Random, i: int) -> str:
    return f"Lesson {i}. " + " ".join(rng.choice(["loop", "list", "dict", "set", "map", "key", "sum", "max",
                                                   "sort", "heap", "tree", "node"]) + str(rng.randint(0, 50))
                                       for _ in range(120))


def test_streaming_finish_matches_in_memory_near_duplicates_and_diversity(tmp_path):
    rng = random.Random(3)
    texts = [_doc(rng, i) for i in range(30)]
    texts += [texts[2]]  # an exact duplicate
    texts += [texts[5].replace("Lesson 5.", "Lesson five.")]  # a near duplicate
    texts += [texts[7] + " extra words at the end"]
    rounds = [texts[i: i + 8] for i in range(0, len(texts), 8)]
    store = RoundStore(tmp_path, SCHEMA, REJECTED_SCHEMA)
    for k, chunk in enumerate(rounds):
        rows = [{"id": sample_id(t), "text": t, "seed": "{}", "provenance": json.dumps({"synth": {}})} for t in chunk]
        store.write(k, rows, [], {"kept": len(rows)})
    d = DiversityConfig()
    final = store.finish(len(rounds), d)
    kept = [t for k in range(len(rounds))
            for t in pq.read_table(tmp_path / f"part-{k:05d}.parquet")["text"].to_pylist()]
    roots = near_duplicate_roots(texts, d.ngram, d.num_perm, d.bands, d.threshold)
    seen, expected = set(), []
    for i, t in enumerate(texts):  # the in-memory rule: exact first, then near
        if sample_id(t) in seen or roots[i] != i:
            seen.add(sample_id(t))
            continue
        seen.add(sample_id(t))
        expected.append(t)
    assert kept == expected and final["kept"] == len(expected)
    assert final["rejected_by_reason"]["duplicate"] == 1 and final["rejected_by_reason"]["near-duplicate"] >= 2
    overall = final["diversity"]
    reference = diversity_report(expected)
    for key in ("samples", "words", "distinct_1", "distinct_2", "distinct_3", "top_openings"):
        assert overall[key] == reference[key], key
    assert overall["near_duplicates_among"] == len(texts)
    assert overall["near_duplicates"] == final["rejected_by_reason"]["near-duplicate"]


def test_first_occurrences_is_exact_even_when_id_hashes_collide(monkeypatch):
    from textbooklm.synth import near_dups

    ids = [["a", "b", "c"], ["b", "d"], [], ["a", "e", "b"]]
    flat = [i for r in ids for i in r]
    expected = [flat.index(i) for i in flat]
    reads = []

    def by_round():
        reads.append(1)
        yield from ids

    assert near_dups.first_occurrences(by_round).tolist() == expected
    assert len(reads) == 2  # equal hashes of equal ids: their ids are read again and compared
    reads.clear()
    monkeypatch.setattr(near_dups, "_id_hash", lambda i: 7 if i in ("c", "d", "e") else ord(i))  # c, d, e collide
    assert near_dups.first_occurrences(by_round).tolist() == expected
    reads.clear()
    assert near_dups.first_occurrences(lambda: iter([["x", "y"], ["z"]])).tolist() == [0, 1, 2]
    assert near_dups.first_occurrences(lambda: iter([["x", "y"]])).tolist() == [0, 1]
    assert near_dups.first_occurrences(lambda: iter([])).tolist() == []


def test_streaming_roots_band_by_band_equal_the_in_memory_banding(tmp_path):
    from textbooklm.synth.near_dups import near_duplicate_roots_streaming

    rng = random.Random(5)
    texts = [_doc(rng, i) for i in range(40)]
    texts[13] = texts[4].replace("Lesson 4.", "Lesson four.")
    texts[31] = texts[4] + " and a tail"
    texts[22] = texts[9]
    rounds = [texts[:10], [], texts[10:25], texts[25:]]
    spill = tmp_path / "spill"
    spill.mkdir()
    got = near_duplicate_roots_streaming(lambda: iter(rounds), 5, 128, 32, 0.7, spill_dir=spill)
    want = near_duplicate_roots(texts, 5, 128, 32, 0.7)
    assert got.tolist() == want.tolist() and (got != range(len(texts))).sum() >= 3
    assert list(spill.iterdir()) == []  # the band keys' files are removed
    assert near_duplicate_roots_streaming(lambda: iter([[], ["one text"]]), 5, 128, 32, 0.7).tolist() == [0]
