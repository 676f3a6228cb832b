"""Diversity accounting for synthetic data: the papers' hard part, measured rather than hoped for.

TinyStories found that without tricks a teacher's outputs are very repetitive; these numbers say how
repetitive a batch is:

- distinct-n: unique word n-grams / all word n-grams (1.0: nothing repeats across the batch);
- near-duplicate rate: share of samples in a MinHash near-duplicate cluster that are not its first
  member (the corpus stage's MinHash + LSH, so "near duplicate" means the same thing everywhere);
- coverage: how many of the available topics / audiences / styles / words / names were used, and how
  evenly (the least and most used value);
- most repeated openings: the first few words that start the most samples ("Sure! Here is a...").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from textbooklm.minhash import MinHasher, clusters, duplicate_pairs
from textbooklm.synth.distinct import ngram_hashes, word_hashes


def words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams of the batch (0.0 for a batch with none)."""
    return distinct_ns(texts, (n,))[n]


def distinct_ns(texts: Sequence[str], ns: Sequence[int]) -> dict[int, float]:
    """:func:`distinct_n` for several n at once, counted on the stable 64-bit n-gram hashes of distinct.py
    (8 bytes an n-gram in one sorted array, each text's words hashed once) rather than a set of word
    tuples (~100 bytes an n-gram: ~170 MB for a round of 1,024 textbooks, in the driver's process).
    Exact but for 64-bit collisions (~k^2 / 2^65 for k n-grams: none expected below ~10^8)."""
    per_text = [word_hashes(t) for t in texts]
    out = {}
    for n in ns:
        hashes = np.concatenate([ngram_hashes(w, n) for w in per_text] or [np.zeros(0, dtype=np.uint64)])
        hashes.sort()
        out[n] = (1 + int(np.count_nonzero(hashes[1:] != hashes[:-1]))) / len(hashes) if len(hashes) else 0.0
    return out


def near_duplicate_roots(texts: Sequence[str], ngram: int = 5, num_perm: int = 128, bands: int = 32,
                         threshold: float = 0.7, seed: int = 1) -> np.ndarray:
    """Per text, the index of the first text of its near-duplicate cluster (itself when unique)."""
    if len(texts) < 2:
        return np.arange(len(texts))
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    sigs = MinHasher(num_perm, ngram, seed).signatures(list(texts))
    return clusters(len(texts), duplicate_pairs(sigs, bands, threshold))


def opening(text: str, n_words: int) -> str:
    return " ".join(text.split()[:n_words])


def coverage(used: Sequence[str], available: Sequence[str] | None = None) -> dict[str, Any]:
    """How many distinct values were used (of how many), and the least / most used counts."""
    return coverage_from_counts(Counter(used), available)


def coverage_from_counts(counts: Counter[str], available: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`coverage` from counts accumulated elsewhere (a stage streaming its kept seeds)."""
    out: dict[str, Any] = {"used": len(counts), "samples": sum(counts.values())}
    if available is not None:
        avail = list(dict.fromkeys(available))
        out["available"] = len(avail)
        out["fraction"] = round(len(counts) / len(avail), 4) if avail else 0.0
        out["least_used"] = min((counts[v] for v in avail), default=0)
    out["most_used"] = counts.most_common(3)
    return out


def diversity_report(texts: Sequence[str], *, ngram: int = 5, num_perm: int = 128, bands: int = 32,
                     threshold: float = 0.7, openings_words: int = 6, top: int = 5) -> dict[str, Any]:
    """The text-side numbers for one batch (coverage is added by the stage, which knows the seeds)."""
    roots = near_duplicate_roots(texts, ngram, num_perm, bands, threshold)
    dup = int(np.sum(roots != np.arange(len(texts))))
    opens = Counter(opening(t, openings_words) for t in texts if t.strip())
    return {
        "samples": len(texts),
        "words": sum(len(t.split()) for t in texts),
        **{f"distinct_{n}": round(v, 4) for n, v in distinct_ns(texts, (1, 2, 3)).items()},
        "near_duplicates": dup,
        "near_duplicate_rate": round(dup / len(texts), 4) if texts else 0.0,
        "top_openings": [[o, c] for o, c in opens.most_common(top)],
    }
