import random

import numpy as np

from textbooklm.minhash import MinHasher, candidate_pairs, clusters, duplicate_pairs, token_hashes, tokens


def shingle_set(text, n=5):
    t = tokens(text)
    return {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}


def test_token_hashes_follow_whitespace_split():
    text = "def  f(x):\n\treturn x+1  # é\x0b\x0cend"
    th = token_hashes(text)
    toks = tokens(text)
    assert len(th) == len(toks)
    same = {}
    for h, t in zip(token_hashes("a b a c b a").tolist(), tokens("a b a c b a"), strict=True):
        assert same.setdefault(t, h) == h  # equal tokens hash equally wherever they stand


def test_estimate_tracks_true_jaccard():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    base = [rng.choice(words) for _ in range(600)]
    hasher = MinHasher(num_perm=256, ngram=3, seed=7)
    errors = []
    for keep in (1.0, 0.95, 0.8, 0.6, 0.3):
        other = [w if rng.random() < keep else rng.choice(words) for w in base]
        a, b = " ".join(base), " ".join(other)
        sa, sb = shingle_set(a, 3), shingle_set(b, 3)
        true = len(sa & sb) / len(sa | sb)
        est = float(np.mean(hasher.signature(a) == hasher.signature(b)))
        errors.append(abs(est - true))
    assert max(errors) < 0.08, errors


def test_signatures_are_deterministic_and_seeded():
    text = "for i in range(10):\n    print(i)\n" * 3
    assert np.array_equal(MinHasher(seed=1).signature(text), MinHasher(seed=1).signature(text))
    assert not np.array_equal(MinHasher(seed=1).signature(text), MinHasher(seed=2).signature(text))
    empty = MinHasher().signature("")
    assert (empty == 0xFFFFFFFF).all()


def test_lsh_finds_near_duplicates_not_unrelated():
    rng = random.Random(1)
    docs = [" ".join(f"t{rng.randrange(10_000)}" for _ in range(400)) for _ in range(20)]
    docs.append(docs[3].replace(docs[3].split()[10], "CHANGED", 1))  # near copy of 3
    docs.append(docs[7])  # exact copy of 7
    sigs = MinHasher(128, 5, 1).signatures(docs)
    pairs = {tuple(p) for p in duplicate_pairs(sigs, bands=16, threshold=0.8).tolist()}
    assert pairs == {(3, 20), (7, 21)}
    assert {tuple(p) for p in candidate_pairs(sigs, 16).tolist()} >= pairs


def test_clusters_union_find():
    roots = clusters(6, np.array([[1, 4], [4, 5], [2, 3]]))
    assert roots.tolist() == [0, 1, 2, 2, 1, 1]
