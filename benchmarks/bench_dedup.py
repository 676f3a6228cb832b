"""MinHash + LSH near-duplicate search over the standard library: textbooklm against datasketch.

Same input (every stdlib .py file that decodes as UTF-8), same shingles (runs of 5
whitespace-separated tokens), same number of permutations (128), same banding (16 bands x 8 rows)
and the same verification (estimated Jaccard >= 0.8 from the signatures). Prints docs/s of each,
the Jaccard agreement of the two duplicate-pair sets, and the speed ratio last.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from datasketch import MinHash, MinHashLSH

from textbooklm.corpus.readers import stdlib_root
from textbooklm.minhash import MinHasher, duplicate_pairs, tokens

NGRAM, NUM_PERM, BANDS, THRESHOLD = 5, 128, 16, 0.8


def load_stdlib() -> list[str]:
    texts = []
    for path in sorted(stdlib_root().rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            texts.append(path.read_text("utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


def ours(texts: list[str]) -> set[tuple[int, int]]:
    sigs = MinHasher(NUM_PERM, NGRAM, seed=1).signatures(texts)
    return {(int(i), int(j)) for i, j in duplicate_pairs(sigs, BANDS, THRESHOLD)}


def reference(texts: list[str]) -> set[tuple[int, int]]:
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, NUM_PERM // BANDS))
    hashes = []
    for i, text in enumerate(texts):
        toks = tokens(text)
        n = min(NGRAM, len(toks))
        shingles = [b" ".join(toks[k : k + n]) for k in range(len(toks) - n + 1)] if toks else []
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch(shingles)
        lsh.insert(i, m)
        hashes.append(m)
    pairs = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and m.jaccard(hashes[j]) >= THRESHOLD:
                pairs.add((i, j))
    return pairs


def main() -> None:
    texts = load_stdlib()
    mb = sum(map(len, texts)) / 1e6
    print(f"input: {len(texts)} stdlib files, {mb:.1f} MB; ngram={NGRAM} perms={NUM_PERM} "
          f"bands={BANDS} threshold={THRESHOLD}")
    t0 = time.perf_counter()
    ref_pairs = reference(texts)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    our_pairs = ours(texts)
    t_ours = time.perf_counter() - t0
    union = ref_pairs | our_pairs
    agreement = len(ref_pairs & our_pairs) / len(union) if union else 1.0
    print(f"datasketch: {len(texts) / t_ref:,.0f} docs/s ({t_ref:.2f} s), {len(ref_pairs)} duplicate pairs")
    print(f"textbooklm: {len(texts) / t_ours:,.0f} docs/s ({t_ours:.2f} s), {len(our_pairs)} duplicate pairs")
    print(f"agreement (Jaccard of pair sets): {agreement:.3f}")
    ratio = t_ref / t_ours
    print(f"dedup: {ratio:.1f}x datasketch ({len(texts)} docs, agreement {agreement:.3f})")
    if agreement < 0.9:
        sys.exit(f"agreement {agreement:.3f} below 0.9")


if __name__ == "__main__":
    np.seterr(over="ignore")
    main()
