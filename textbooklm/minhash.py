"""MinHash signatures and LSH banding, vectorized with numpy.

Why not datasketch: it hashes every shingle with SHA-1 in a Python loop and applies its
permutations with 64-bit multiplies and a modulo. Here every token of a file is hashed at once
(a polynomial prefix hash over the file's bytes, so a token's hash is a difference of two prefix
sums), shingle hashes are a polynomial roll over token hashes, and
each permutation is ``((x XOR b_k) * a_k) mod 2**32`` with odd ``a_k``: a bijection of the 32-bit
hash space whose high bits (which decide the minimum) depend on every bit of ``x``, computed with
two 32-bit SIMD operations per (shingle, permutation) and no modulo.

Shingles are runs of ``ngram`` whitespace-separated tokens. Estimated Jaccard of two files = the
fraction of signature positions that agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ROLL = np.uint32(0x01000193)  # FNV prime: combines token hashes into a shingle hash
_MIX = np.uint32(0x45D9F3B)
_SHIFT = np.uint32(16)
_CHUNK = 1024  # shingles per block: keeps the (block x permutations) matrix in cache
MAX_HASH = np.uint32(0xFFFFFFFF)


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # exactly the bytes bytes.split() splits on
_BASE = 0x01000193
_powers = np.ones(1, dtype=np.uint32)  # _BASE**k mod 2**32, grown on demand
_inv_powers = np.ones(1, dtype=np.uint32)  # (_BASE**-1)**k mod 2**32


def tokens(text: str) -> list[bytes]:
    """The token sequence shingles are built from: the UTF-8 bytes split on ASCII whitespace.

    :func:`token_hashes` hashes exactly these tokens; the benchmark's datasketch side uses this.
    """
    return text.encode("utf-8", "surrogatepass").split()


def _ensure_powers(n: int) -> None:
    global _powers, _inv_powers
    if len(_powers) > n:
        return
    size = max(n + 1, 2 * len(_powers), 1 << 16)
    inv = 1
    for _ in range(6):  # Newton iteration for the inverse of an odd number mod 2**32
        inv = (inv * (2 - _BASE * inv)) % 2**32
    with np.errstate(over="ignore"):
        _powers = np.cumprod(np.r_[np.uint32(1), np.full(size - 1, _BASE, np.uint32)], dtype=np.uint32)
        _inv_powers = np.cumprod(np.r_[np.uint32(1), np.full(size - 1, inv, np.uint32)], dtype=np.uint32)


def token_hashes(text: str, raw: bytes | None = None) -> np.ndarray:
    """uint32 hash of every whitespace-separated token, computed without a Python loop.

    With prefix sums ``P[i] = sum(b[k] * B**k, k < i)`` (mod 2**32), the token ``b[s:e]`` hashes to
    ``(P[e] - P[s]) * B**-s``, which depends only on its bytes, not on where it stands. ``raw``: the
    text's UTF-8 bytes when the caller already has them (a file as read), so they are not encoded again.
    """
    data = np.frombuffer(raw if raw is not None else text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    n = len(data)
    _ensure_powers(n)
    edges = np.flatnonzero(np.diff(np.r_[False, ~_WHITESPACE[data], False].view(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    prefix = np.zeros(n + 1, dtype=np.uint32)
    with np.errstate(over="ignore"):
        np.cumsum(data.astype(np.uint32) * _powers[:n], dtype=np.uint32, out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * _inv_powers[starts]


def _mix(h: np.ndarray) -> np.ndarray:
    """Avalanche step (xor-shift, multiply, xor-shift): bijective on uint32."""
    h = h ^ (h >> _SHIFT)
    h = h * _MIX
    return h ^ (h >> _SHIFT)


def shingle_hashes(text: str, ngram: int, raw: bytes | None = None) -> np.ndarray:
    """uint32 hash of every run of ``ngram`` tokens; a text shorter than that is one shingle."""
    th = token_hashes(text, raw)
    if not len(th):
        return th
    n = min(ngram, len(th))
    count = len(th) - n + 1
    h = th[:count].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            h = h * _ROLL + th[j : j + count]
        return _mix(h)


class MinHasher:
    """Fixed random permutations (seeded), applied to any number of documents."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.ngram = ngram
        self.a = (rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) << np.uint32(1)) | np.uint32(1)
        self.b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)

    def signature(self, text: str, raw: bytes | None = None) -> np.ndarray:
        """uint32[num_perm]; an empty text gets all-max (it matches only other empty texts). ``raw``: the
        text's UTF-8 bytes, if the caller has them."""
        sh = shingle_hashes(text, self.ngram, raw)
        sig = np.full(self.num_perm, MAX_HASH, dtype=np.uint32)
        with np.errstate(over="ignore"):
            for start in range(0, len(sh), _CHUNK):
                block = sh[start : start + _CHUNK, None] ^ self.b  # in-place ops: no temporaries
                block *= self.a
                np.minimum(sig, block.min(axis=0), out=sig)
        return sig

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.num_perm), np.uint32)
        return np.stack([self.signature(t) for t in texts])


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


def band_keys(signatures: np.ndarray, bands: int) -> np.ndarray:
    """uint64 [n, bands]: each band's rows hashed to one key (equal keys in a band = one LSH bucket).

    One definition for the single-process banding below and the sharded one
    (:mod:`textbooklm.corpus.dedup_shards`), so both put the same records in the same buckets.
    """
    rows = signatures.shape[1] // bands
    rng = np.random.default_rng(12345)
    mult = rng.integers(1, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    sig64 = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    with np.errstate(over="ignore"):
        keys = (sig64 * mult).sum(axis=2, dtype=np.uint64)
        return keys ^ np.arange(bands, dtype=np.uint64)


def candidate_pairs(signatures: np.ndarray, bands: int, max_bucket: int = 2000) -> np.ndarray:
    """Pairs (i < j) that share at least one whole band: LSH banding.

    Each band's rows are hashed to one uint64 per document; equal hashes form a bucket. Inside a
    bucket every pair is a candidate; a bucket larger than ``max_bucket`` is linked as a star to its
    first member (the pair count would otherwise grow quadratically; union-find still joins them).
    """
    n = len(signatures)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    return candidate_pairs_from_keys(band_keys(signatures, bands), max_bucket)


def candidate_pairs_from_keys(all_keys: np.ndarray, max_bucket: int = 2000) -> np.ndarray:
    """:func:`candidate_pairs` from band keys already computed (uint64 [n, bands]), e.g. by a caller that
    streams its texts and keeps only the keys (textbooklm.synth.near_dups)."""
    n = len(all_keys)
    found: list[np.ndarray] = []
    for band in range(all_keys.shape[1] if n else 0):
        keys = all_keys[:, band]
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = np.sort(order[s : s + size])
            if size > max_bucket:
                pairs = np.stack([np.full(size - 1, members[0]), members[1:]], axis=1)
            else:
                ii, jj = np.triu_indices(size, k=1)
                pairs = np.stack([members[ii], members[jj]], axis=1)
            found.append(pairs)
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def duplicate_pairs(signatures: np.ndarray, bands: int, threshold: float) -> np.ndarray:
    """Candidate pairs whose estimated Jaccard reaches ``threshold``."""
    pairs = candidate_pairs(signatures, bands)
    if len(pairs) == 0:
        return pairs
    agree = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    return pairs[agree >= threshold]


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over ``pairs``; returns, per item, the smallest index in its cluster."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for i, j in pairs:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
