"""Seeded sample of records, stratified by source.

Every record gets a rank: the SHA-256 of (seed, id). Sorting by rank is a uniformly random order that
does not depend on shard order or worker count, so the same seed picks the same records on a laptop
and on a cluster, and growing N keeps the smaller sample as a prefix (the LLM judge's sample is a
subset of any larger sample drawn with the same seed).

Stratification: each source gets a share of N proportional to its size (largest remainders; every
source that has records gets at least one when N allows), so a small source is never crowded out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence


def rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{record_id}".encode()).hexdigest()


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over sources proportionally to ``sizes`` (largest remainder, >= 1 each when possible)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    quota = {s: n * c / total for s, c in sizes.items()}
    alloc = {s: int(q) for s, q in quota.items()}
    if n >= len(sizes):
        for s in alloc:
            if alloc[s] == 0 and sizes[s] > 0:
                alloc[s] = 1
    while sum(alloc.values()) > n:  # the >= 1 floor may overshoot: take back from the largest
        big = max(alloc, key=lambda s: (alloc[s], s))
        alloc[big] -= 1
    for s in sorted(quota, key=lambda s: (-(quota[s] - int(quota[s])), s)):
        if sum(alloc.values()) >= n:
            break
        if alloc[s] < sizes[s]:
            alloc[s] += 1
    return alloc


def stratified_sample(ids: Sequence[str], sources: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` records (all when ``n`` is 0 or too large), in input order."""
    if n <= 0 or n >= len(ids):
        return list(range(len(ids)))
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sources):
        by_source[s].append(i)
    alloc = allocate({s: len(v) for s, v in by_source.items()}, n)
    chosen: list[int] = []
    for s, members in by_source.items():
        members = sorted(members, key=lambda i: rank(seed, ids[i]))
        chosen.extend(members[: alloc[s]])
    return sorted(chosen)
