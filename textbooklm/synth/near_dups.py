"""Cross-round exact and near-duplicate decisions for a synthesis stage, without holding its texts.

Why: the finish step used to read every round's rows into memory (~11.8 kB per textbook) and
MinHash them all at once: phi-1.5's 13M textbooks would need ~154 GB for that alone. Here the texts
are read round by round, twice, and only small fixed-size data per sample is kept:

1. per sample: its id (exact duplicates: the first occurrence wins) and its LSH band keys
   (``bands`` x 8 bytes, the corpus stage's :func:`textbooklm.minhash.band_keys`), written to disk
   round by round;
2. candidate pairs from equal band keys (:func:`textbooklm.minhash.candidate_pairs_from_keys`), one
   band's keys in memory at a time;
3. the signatures of candidate members only are recomputed (second read) and pairs whose estimated
   Jaccard reaches ``threshold`` are joined by union-find; each sample's cluster root is its first
   member, the same decision as :func:`textbooklm.synth.diversity.near_duplicate_roots`.

Memory per sample: ~24 bytes for the banding (one band's keys, their sort order and sorted copy) instead of
the text.

:func:`first_occurrences` makes the exact-duplicate decision in 16 bytes a sample (a 64-bit hash of
each id and its index, sorted) instead of a dict of every id (~250 bytes a sample: ~3 GB at phi-1.5's
13M textbooks); ids whose hashes collide are compared in full, so the decision is exact.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from textbooklm.minhash import MinHasher, band_keys, candidate_pairs_from_keys, clusters


def near_duplicate_roots_streaming(texts_by_round: Callable[[], Iterator[list[str]]], ngram: int, num_perm: int,
                                   bands: int, threshold: float, seed: int = 1,
                                   spill_dir: str | Path | None = None) -> np.ndarray:
    """Each sample's cluster root (its own index when unique), reading ``texts_by_round()`` twice.

    Each round's band keys go to a file in a temporary folder (under ``spill_dir``, else the system's),
    band-major, and the candidate pairs are found one band at a time: 8 bytes a sample held (plus the
    sort's index) instead of every band's keys at once (8 x ``bands`` bytes a sample, twice while
    joined: ~6.6 GB at 13M samples and 32 bands). Same pairs as banding all keys at once."""
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    hasher = MinHasher(num_perm, ngram, seed)
    with tempfile.TemporaryDirectory(prefix="near-dups-", dir=spill_dir) as tmp:
        files: list[tuple[Path, int]] = []
        for texts in texts_by_round():
            if texts:
                path = Path(tmp) / f"keys-{len(files):06d}.npy"
                np.save(path, np.ascontiguousarray(band_keys(hasher.signatures(texts), bands).T))
                files.append((path, len(texts)))
        n = sum(m for _, m in files)
        if n < 2:
            return np.arange(n)
        found = []
        for band in range(bands):
            column = np.empty(n, dtype=np.uint64)
            offset = 0
            for path, m in files:
                column[offset: offset + m] = np.load(path, mmap_mode="r")[band]
                offset += m
            pairs = candidate_pairs_from_keys(column[:, None])
            if len(pairs):
                found.append(pairs)
    if not found:
        return np.arange(n)
    candidates = np.unique(np.concatenate(found), axis=0)
    needed = np.unique(candidates)
    sigs: dict[int, np.ndarray] = {}
    offset = 0
    for texts in texts_by_round():
        lo, hi = np.searchsorted(needed, [offset, offset + len(texts)])
        for i in needed[lo:hi].tolist():
            sigs[i] = hasher.signature(texts[i - offset])
        offset += len(texts)
    agree = np.array([float(np.mean(sigs[int(i)] == sigs[int(j)])) for i, j in candidates])
    return clusters(n, candidates[agree >= threshold])


def _id_hash(sample_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def first_occurrences(ids_by_round: Callable[[], Iterator[list[str]]]) -> np.ndarray:
    """Per sample, the index of the first sample with the same id (its own index when it is the first).

    Reads ``ids_by_round()`` once, and a second time only when two samples' 64-bit id hashes are equal
    (then their ids are compared in full: a hash collision never makes a duplicate)."""
    hashes = np.fromiter((_id_hash(i) for ids in ids_by_round() for i in ids), dtype=np.uint64)
    n = len(hashes)
    first = np.arange(n, dtype=np.int64)
    if n < 2:
        return first
    order = np.argsort(hashes, kind="stable")  # equal hashes in index order
    sh = hashes[order]
    same = np.flatnonzero(sh[1:] == sh[:-1])
    if not len(same):
        return first
    members = np.unique(np.concatenate([order[same], order[same + 1]]))  # every sample in a shared-hash group
    full: dict[int, str] = {}
    lo = 0
    for ids in ids_by_round():
        a, b = np.searchsorted(members, [lo, lo + len(ids)])
        for i in members[a:b].tolist():
            full[i] = ids[i - lo]
        lo += len(ids)
    seen: dict[str, int] = {}
    for i in members.tolist():  # ascending index: the first occurrence wins
        first[i] = seen.setdefault(full[i], i)
    return first
