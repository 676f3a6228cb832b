"""Constant-memory diversity figures against the exact ones they replace."""

from __future__ import annotations

import random

from textbooklm.synth.distinct import HLL_ERROR, DatasetDiversity, DistinctCounter, TopOpenings, ngram_hashes
from textbooklm.synth.diversity import distinct_n, distinct_ns


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(20, 80))) for _ in range(n)]


def _set_based(texts: list[str], n: int) -> float:
    """The figure as a set of word tuples gives it (what distinct_n computed before hashing)."""
    seen, total = set(), 0
    for t in texts:
        w = t.lower().split()
        grams = [tuple(w[i: i + n]) for i in range(len(w) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def test_hashed_distinct_n_equals_the_set_of_tuples():
    texts = _texts(300, seed=2) + ["Ab\u00a0cd ef\u3000gh", "AB CD ef gh", "", "one", "x\ty\nz x y z"]
    got = distinct_ns(texts, (1, 2, 3, 4))
    for n in (1, 2, 3, 4):
        assert got[n] == _set_based(texts, n) == distinct_n(texts, n)
    assert distinct_ns([], (1,)) == {1: 0.0} and distinct_n(["one"], 2) == 0.0


def test_exact_below_the_limit_equals_the_set_based_figure():
    texts = _texts(200)
    acc = DatasetDiversity()
    acc.add_many(texts)
    report = acc.report(near_duplicates=3, candidates=200)
    for n in (1, 2, 3):
        assert report[f"distinct_{n}"] == round(_set_based(texts, n), 4)
    assert report["distinct_estimated"] is False and report["near_duplicate_rate"] == 0.015


def test_the_sketch_stays_within_a_few_standard_errors_and_is_stable():
    texts = _texts(3000, seed=1)
    exact = _set_based(texts, 3)
    acc = DatasetDiversity(exact_limit=1_000)  # force the HyperLogLog path
    acc.add_many(texts)
    got = acc.report(0, len(texts))
    assert got["distinct_estimated"] and got["distinct_relative_error"] == HLL_ERROR
    assert abs(got["distinct_3"] - exact) / exact < 4 * HLL_ERROR, (got["distinct_3"], exact)
    again = DatasetDiversity(exact_limit=1_000)
    again.add_many(texts)
    assert again.report(0, len(texts)) == got  # stable hashes: a resumed run reports the same


def test_ngram_hashes_are_positional_and_stable():
    a = ngram_hashes(["x", "y", "z"], 2)
    assert len(a) == 2 and a[0] != a[1]
    assert ngram_hashes(["y", "x"], 2)[0] != ngram_hashes(["x", "y"], 2)[0]
    assert list(ngram_hashes(["x", "y", "z"], 2)) == list(a)
    assert len(ngram_hashes(["x"], 2)) == 0


def test_distinct_counter_memory_does_not_grow_past_the_limit():
    c = DistinctCounter(exact_limit=500)
    for i in range(50):
        c.add(ngram_hashes([f"t{i}-{j}" for j in range(200)], 1))
    assert c.estimated and c.exact is None and c.registers.nbytes == 16384
    assert abs(c.distinct() - 10_000) / 10_000 < 4 * HLL_ERROR


def test_misra_gries_finds_the_heavy_opening_within_its_bound():
    top = TopOpenings(capacity=10)
    for i in range(1000):
        top.add("Sure! Here is a" if i % 4 == 0 else f"opening {i}")
    [[name, count]] = top.top(1)
    assert name == "Sure! Here is a" and 250 - top.max_undercount <= count <= 250
    assert top.max_undercount <= 1000 // 10 and len(top.counts) <= 10
